"""References for the evaluation tests: pycocotools driven quietly, and random COCO problems."""

import contextlib
import copy
import io

import numpy as np


def random_coco_problem(rng, n_images=20, n_cats=4, max_gt=8, crowd_p=0.1, tie_decimals=2, many_dets=False):
    """A random COCO ground-truth dict and results list exercising COCOeval's corner cases.

    Crowd regions, empty images, images without detections, categories without ground truth
    (and with or without detections), tied scores, areas that differ from the box area,
    and (many_dets) more than 100 detections in an image/category.
    """
    cat_ids = sorted(rng.choice(np.arange(1, 50), size=n_cats, replace=False).tolist())
    images = [{"id": int(i), "width": 640, "height": 480, "file_name": f"{i}.png"}
              for i in rng.choice(np.arange(0, 1000), size=n_images, replace=False)]
    cats = [{"id": c, "name": f"c{c}"} for c in cat_ids]
    gt_cats = cat_ids[:-1] if n_cats > 1 else cat_ids  # the last category has no ground truth
    anns, results = [], []
    ann_id = 1
    for im in images:
        n_gt = int(rng.integers(0, max_gt + 1)) if rng.random() > 0.15 else 0
        gts = []
        for _ in range(n_gt):
            w, h = np.exp(rng.uniform(np.log(4), np.log(250), size=2))
            x, y = rng.uniform(0, 600), rng.uniform(0, 450)
            bb = [float(x), float(y), float(w), float(h)]
            area = float(w * h) * (float(rng.uniform(0.5, 1.0)) if rng.random() < 0.3 else 1.0)
            c = int(rng.choice(gt_cats))
            anns.append({"id": ann_id, "image_id": im["id"], "category_id": c, "bbox": bb, "area": area,
                         "iscrowd": int(rng.random() < crowd_p)})
            ann_id += 1
            gts.append((bb, c))
        if rng.random() < 0.15:
            continue  # image without detections
        for bb, c in gts:
            for _ in range(int(rng.integers(0, 4))):
                j = rng.normal(0, 0.12, size=4) * np.array([bb[2], bb[3], bb[2], bb[3]])
                box = [bb[0] + j[0], bb[1] + j[1], max(bb[2] + j[2], 0.5), max(bb[3] + j[3], 0.5)]
                if rng.random() < 0.1:
                    box = list(bb)  # exact duplicate (IoU 1)
                cc = c if rng.random() < 0.9 else int(rng.choice(cat_ids))
                results.append({"image_id": im["id"], "category_id": cc, "bbox": [float(v) for v in box],
                                "score": round(float(rng.random()), tie_decimals)})
        n_rand = int(rng.integers(0, 6)) + (int(rng.integers(90, 130)) if many_dets and rng.random() < 0.3 else 0)
        c_rand = int(rng.choice(cat_ids))
        for _ in range(n_rand):
            w, h = np.exp(rng.uniform(np.log(4), np.log(250), size=2))
            results.append({"image_id": im["id"], "category_id": c_rand if many_dets else int(rng.choice(cat_ids)),
                            "bbox": [float(rng.uniform(0, 600)), float(rng.uniform(0, 450)), float(w), float(h)],
                            "score": round(float(rng.random()), tie_decimals)})
    order = rng.permutation(len(results))
    results = [results[i] for i in order]
    return {"images": images, "annotations": anns, "categories": cats}, results


def pycocotools_eval(gt: dict, results: list):
    """Runs COCOeval (bbox) quietly; returns (stats, precision, recall)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results)) if results else COCO()
        if not results:
            coco_dt.dataset = {"images": [], "annotations": [], "categories": copy.deepcopy(gt["categories"])}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.array(ev.stats), ev.eval["precision"], ev.eval["recall"]
