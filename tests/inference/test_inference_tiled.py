"""Tiled inference: tile geometry, lazy sources, the three merges against references, and
objects inside one tile, across tile borders and at the image edges."""

import _reference
import _reference_inference as ref
import numpy as np
import pytest

from pydetect import Detections
from pydetect.inference import greedy_nmm, merge_detections, predict_tiled, tile_grid, weighted_boxes_fusion

cv2 = pytest.importorskip("cv2")


class BrightSquares:
    """A deterministic detector: each 8-connected blob of pixels > 127 (first channel) is a
    detection, its box the blob's bounding box, its score the blob's brightest value / 255.
    It records the tiles it is given."""

    def __init__(self):
        self.tiles = []

    def __call__(self, image):
        self.tiles.append(image.copy())
        grey = image[..., 0] if image.ndim == 3 else image
        n, blobs, stats, _ = cv2.connectedComponentsWithStats((grey > 127).astype(np.uint8), connectivity=8)
        x, y, w, h = (stats[1:, k].astype(np.float32) for k in range(4))
        scores = [grey[blobs == k].max() / 255.0 for k in range(1, n)]
        return Detections(np.stack([x, y, x + w, y + h], axis=1), scores=np.float32(scores))


def squares_image(size, squares, channels=3):
    """A dark image with bright squares ``(x, y, side, value)``; their true boxes."""
    image = np.full(size + ((channels,) if channels > 1 else ()), 20, np.uint8)
    for x, y, side, value in squares:
        image[y:y + side, x:x + side] = value
    return image, np.array([[x, y, x + s, y + s] for x, y, s, _ in squares], np.float32)


def covered(tiles, size):
    count = np.zeros(size, np.int32)
    for x0, y0, x1, y1 in tiles:
        count[y0:y1, x0:x1] += 1
    return count


# Tile geometry ------------------------------------------------------------------------------
@pytest.mark.parametrize("size, tile, overlap", [
    ((1000, 1250), (400, 400), 0.25), ((300, 1250), (400, 400), 0.25), ((100, 80), (128, 128), 0.2),
    ((512, 512), (512, 512), 0.2), ((513, 2000), (256, 300), 0.0), ((777, 999), (100, 37), 0.5)])
def test_tile_grid_covers_the_image_with_full_size_tiles(size, tile, overlap):
    tiles = tile_grid(size, tile, overlap)
    height, width = size
    # Every pixel is covered, no tile leaves the image, every tile has the tile's size (or the
    # image's, where the image is smaller).
    assert (covered(tiles, size) >= 1).all()
    assert (tiles[:, :2] >= 0).all() and (tiles[:, 2] <= width).all() and (tiles[:, 3] <= height).all()
    assert set((tiles[:, 3] - tiles[:, 1]).tolist()) == {min(tile[0], height)}
    assert set((tiles[:, 2] - tiles[:, 0]).tolist()) == {min(tile[1], width)}
    # Neighbours overlap by at least round(overlap * tile) pixels: columns along x, rows along y.
    for axis, (lo, hi), t, length in ((0, (0, 2), tile[1], width), (1, (1, 3), tile[0], height)):
        starts = np.unique(tiles[:, lo])
        ends = np.unique(tiles[:, hi])
        if length > t:
            assert (ends[:-1] - starts[1:] >= round(overlap * t)).all()
            assert starts[0] == 0 and ends[-1] == length


def test_tile_grid_worked_example():
    # stride 80; the third tile would end at 260 > 250, so it is shifted to start at 150.
    assert tile_grid((100, 250), 100, 0.2).tolist() == [[0, 0, 100, 100], [80, 0, 180, 100], [150, 0, 250, 100]]


# Tiles given to the detector -------------------------------------------------------------------
@pytest.mark.parametrize("size", [(1000, 1250), (300, 1250), (90, 70)])
def test_detector_gets_unpadded_tiles_of_the_tile_size(size, rng):
    image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
    recorder = BrightSquares()
    predict_tiled(recorder, image, tile=(400, 400), overlap=0.25)
    tiles = tile_grid(size, 400, 0.25)
    assert len(recorder.tiles) == len(tiles)
    for seen, (x0, y0, x1, y1) in zip(recorder.tiles, tiles):
        assert seen.shape == (min(400, size[0]), min(400, size[1]), 3)
        np.testing.assert_array_equal(seen, image[y0:y1, x0:x1])


def test_npy_path_memmap_and_array_give_the_same_tiles_and_detections(tmp_path, rng):
    image, _ = squares_image((700, 900), [(100, 100, 60, 200), (380, 280, 150, 230), (850, 650, 40, 250)])
    path = tmp_path / "big.npy"
    np.save(path, image)
    runs = {}
    for name, source in [("array", image), ("path", str(path)), ("memmap", np.load(path, mmap_mode="r"))]:
        recorder = BrightSquares()
        dets = predict_tiled(recorder, source, tile=(256, 320), overlap=0.2, full_image_pass=True)
        runs[name] = (recorder.tiles, dets)
    for name in ("path", "memmap"):
        assert all(np.array_equal(a, b) for a, b in zip(runs["array"][0], runs[name][0]))
        assert len(runs["array"][0]) == len(runs[name][0])
        np.testing.assert_array_equal(runs[name][1].boxes, runs["array"][1].boxes)
        np.testing.assert_array_equal(runs[name][1].scores, runs["array"][1].scores)


def test_memmaps_are_read_from_their_file_unless_copy_on_write_or_views(tmp_path):
    from pydetect.inference.sources import ArraySource, FileSource, open_image

    image, _ = squares_image((300, 400), [(10, 10, 30, 200)])
    path = tmp_path / "image.npy"
    np.save(path, image)
    assert isinstance(open_image(np.load(path, mmap_mode="r")), FileSource)  # pages never mapped in
    assert isinstance(open_image(np.load(path, mmap_mode="r")[50:]), ArraySource)  # a view: its own offset
    # Copy-on-write: the changes live in memory only, and the tiles must show them.
    changed = np.load(path, mmap_mode="c")
    changed[200:260, 300:360] = 255
    assert isinstance(open_image(changed), ArraySource)
    dets = predict_tiled(BrightSquares(), changed, tile=128, overlap=0.25)
    np.testing.assert_array_equal(dets.boxes[np.argsort(dets.boxes[:, 0])], [[10, 10, 40, 40], [300, 200, 360, 260]])
    view = predict_tiled(BrightSquares(), np.load(path, mmap_mode="r")[5:], tile=128, overlap=0.25)
    np.testing.assert_array_equal(view.boxes, [[10, 5, 40, 35]])


def test_grey_and_float_images_are_tiled_like_uint8(rng):
    grey, _ = squares_image((500, 600), [(50, 60, 40, 200)], channels=1)
    as_float = grey.astype(np.float64) / 255.0
    a, b = BrightSquares(), BrightSquares()
    da, db = predict_tiled(a, grey, tile=256), predict_tiled(b, as_float, tile=256)
    assert all(t.shape[:2] == (256, 256) and t.ndim == 2 for t in a.tiles)
    assert all(np.array_equal(x, y) for x, y in zip(a.tiles, b.tiles))
    np.testing.assert_array_equal(da.boxes, db.boxes)


# Objects and tile borders ------------------------------------------------------------------
# 1000 x 1250 image, tiles of 400 with overlap 0.25 (100 px): x starts 0, 300, 600, 850;
# y starts 0, 300, 600.
SIZE, TILE, OVERLAP = (1000, 1250), 400, 0.25


@pytest.mark.parametrize("merge", ["greedy", "nms", "wbf"])
def test_object_inside_one_tile_found_once_with_the_tile_alone_box_and_score(merge):
    # (30, 30, 50): only in tile (0, 0); (320, 320, 60): wholly in four tiles' overlap;
    # (1190, 940, 50): in the bottom-right corner tile only.
    squares = [(30, 30, 50, 201), (320, 320, 60, 222), (1190, 940, 50, 243)]
    image, truth = squares_image(SIZE, squares)
    dets = predict_tiled(BrightSquares(), image, tile=TILE, overlap=OVERLAP, merge=merge)
    assert len(dets) == 3
    for (x, y, side, value), box in zip(squares, truth):
        (k,) = np.flatnonzero(np.abs(dets.boxes - box).max(1) < 1)
        # The tile that holds the square, run alone, gives the same box (shifted) and score.
        x0 = next(s for s in (0, 300, 600, 850) if s <= x and x + side <= s + TILE)
        y0 = next(s for s in (0, 300, 600) if s <= y and y + side <= s + TILE)
        alone = BrightSquares()(image[y0:y0 + TILE, x0:x0 + TILE])
        shifted = alone.boxes + np.float32([x0, y0, x0, y0])
        (j,) = np.flatnonzero(np.abs(shifted - box).max(1) < 1)
        np.testing.assert_array_equal(dets.boxes[k], shifted[j])
        assert dets.scores[k] == pytest.approx(alone.scores[j], rel=1e-6) and dets.scores[k] == pytest.approx(value / 255)


def test_object_across_a_tile_border_is_merged_into_its_true_box():
    # Squares wider than the 100 px overlap: no tile holds them whole.
    squares = [(250, 50, 220, 200), (560, 250, 160, 240), (1000, 560, 160, 220)]
    image, truth = squares_image(SIZE, squares)
    dets = predict_tiled(BrightSquares(), image, tile=TILE, overlap=OVERLAP, merge="greedy")
    assert len(dets) == 3
    order = np.argsort(dets.boxes[:, 0])
    np.testing.assert_allclose(dets.boxes[order], truth, atol=0.5)
    # The first square's two pieces have IoU 100 / 220 < 0.5: NMS keeps both, a reason for
    # merging by IOS.
    assert len(predict_tiled(BrightSquares(), image, tile=TILE, overlap=OVERLAP, merge="nms")) > 3


def test_full_image_pass_recovers_an_object_larger_than_a_tile():
    image, truth = squares_image(SIZE, [(200, 150, 700, 180)])
    tiled = predict_tiled(BrightSquares(), image, tile=TILE, overlap=OVERLAP, merge="greedy",
                          full_image_pass=True, full_image_size=500)
    assert len(tiled) == 1
    # The low-resolution box (scale 2.5; at equal scores it comes first) absorbs the tiles'
    # pieces: the union is the true box to within a downscaled pixel.
    np.testing.assert_allclose(tiled.boxes[0], truth[0], atol=2.5)


def test_small_faces_recall_tiled_vs_downscaled_whole_image():
    """A 1200 x 1500 mosaic of faces_in_clutter images: tiles keep the faces the detector finds
    in normal images; the image shrunk to the detector's working size loses most of them."""
    from pydetect import data, ops
    from pydetect.bench.ops import dataset_mosaic
    from pydetect.detectors import ViolaJonesDetector

    detector = ViolaJonesDetector.from_cascade(cv2.data.haarcascades + "haarcascade_frontalface_default.xml",
                                               class_name="face")
    dataset = data.faces_in_clutter("test", n_images=30)

    def recall(truth, boxes):
        return float((ops.box_iou(truth, boxes).max(1) >= 0.5).mean()) if len(boxes) else 0.0

    own = np.mean([recall(t["boxes"], detector.predict(img).boxes) for img, t in dataset])
    image, truth, _ = dataset_mosaic(dataset, (1200, 1500), seed=1)
    tiled = predict_tiled(detector, image, tile=512, overlap=0.25)
    # Shrunk as much as the benchmark's 10000 px image to 1024: longer side 1500 -> 160.
    small = cv2.resize(image, (160, 128), interpolation=cv2.INTER_AREA)
    whole = detector.predict(small).boxes * np.float32(1500 / 160)
    assert recall(truth, tiled.boxes) >= own - 0.1
    assert recall(truth, whole) < 0.5 * own


# Merges against the references -------------------------------------------------------------
def _clustered(rng, n, n_labels=3):
    boxes, scores = _reference.clustered_boxes(rng, n, np.float32, image=600.0)
    return Detections(boxes, scores=scores, labels=rng.integers(0, n_labels, n))


def _check_against(got, expected):
    boxes, scores, labels = expected
    assert len(got) == len(boxes)
    np.testing.assert_allclose(got.boxes, np.float32(boxes).reshape(-1, 4), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(got.scores, np.float32(scores), rtol=1e-6)
    np.testing.assert_array_equal(got.labels, labels)


@pytest.mark.parametrize("metric", ["iou", "ios"])
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.8])
def test_greedy_nmm_matches_the_reference(rng, metric, thr):
    for n in (0, 1, 7, 120):
        dets = _clustered(rng, n)
        got = greedy_nmm(dets, thr, metric)
        _check_against(got, ref.greedy_nmm(dets.boxes, dets.scores, dets.labels.tolist(), thr, metric))


@pytest.mark.parametrize("metric", ["iou", "ios"])
@pytest.mark.parametrize("thr", [0.3, 0.55, 0.8])
def test_wbf_matches_the_reference(rng, metric, thr):
    views = [[0, 0, 350, 350], [250, 0, 600, 350], [0, 250, 350, 600], [250, 250, 600, 600]]
    for n in (0, 1, 7, 120):
        dets = _clustered(rng, n)
        for v in (None, views):
            got = weighted_boxes_fusion(dets, thr, metric, views=v)
            _check_against(got, ref.weighted_boxes_fusion(dets.boxes, dets.scores, dets.labels.tolist(), thr,
                                                          metric, views=v or ()))


def test_nms_merge_is_batched_nms(rng):
    dets = _clustered(rng, 150)
    got = merge_detections(dets, "nms", 0.5)
    keep = _reference.batched_nms(dets.boxes, dets.scores, dets.labels, 0.5)
    np.testing.assert_array_equal(got.boxes, dets.boxes[keep])
    np.testing.assert_array_equal(got.labels, dets.labels[keep])


def test_wbf_by_hand():
    # A and B match (IoU 81/119 = 0.68), C stands alone; label 1 never merges with label 0.
    dets = Detections([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]],
                      scores=[0.9, 0.6, 0.3, 0.8], labels=[0, 0, 0, 1])
    got = weighted_boxes_fusion(dets, 0.55, "iou")
    # Fused A+B: coordinates (0.9 * A + 0.6 * B) / 1.5 = A + 0.4; score (0.9 + 0.6) / 2 = 0.75.
    np.testing.assert_allclose(got.boxes, [[0, 0, 10, 10], [0.4, 0.4, 10.4, 10.4], [50, 50, 60, 60]], atol=1e-6)
    np.testing.assert_allclose(got.scores, [0.8, 0.75, 0.3], rtol=1e-6)
    np.testing.assert_array_equal(got.labels, [1, 0, 0])
    # Views: the fused A+B box lies in the first two and has 2 boxes: 0.75 * min(2, 2) / 2;
    # label 1's box lies in two views with 1 box: 0.8 * 1 / 2; C lies in all three: 0.3 * 1 / 3.
    views = [[0, 0, 70, 70], [-5, -5, 65, 65], [40, 40, 100, 100]]
    got = weighted_boxes_fusion(dets, 0.55, "iou", views=views)
    np.testing.assert_allclose(got.scores, [0.75, 0.4, 0.1], rtol=1e-6)
    np.testing.assert_array_equal(got.labels, [0, 1, 0])


def test_wbf_three_boxes_by_hand_with_a_sequential_update():
    # A (0.8) and B (0.4): IoU 8/12 = 0.67 -> fused (0.8 A + 0.4 B) / 1.2 = [2/3, 0, 32/3, 10].
    # C overlaps the fused box with IoU 7.47/12.53 = 0.60 > 0.55 (A alone: 6.8/13.2 = 0.52):
    # it joins; the fused box becomes (0.8 A + 0.4 B + 0.2 C) / 1.4, score (0.8 + 0.4 + 0.2) / 3.
    a, b, c = [0, 0, 10, 10], [2, 0, 12, 10], [3.2, 0, 13.2, 10]
    dets = Detections([a, b, c], scores=[0.8, 0.4, 0.2])
    got = weighted_boxes_fusion(dets, 0.55, "iou")
    expected = (0.8 * np.array(a) + 0.4 * np.array(b) + 0.2 * np.array(c)) / 1.4
    assert len(got) == 1
    np.testing.assert_allclose(got.boxes[0], expected, rtol=1e-6)
    assert got.scores[0] == pytest.approx(1.4 / 3, rel=1e-6)


def test_greedy_by_hand_union_and_ios():
    # A half box inside the full box: IOS 1, IoU 0.5. With IOS the union is the full box.
    full, half, other = [0, 0, 20, 10], [10, 0, 20, 10], [100, 0, 110, 10]
    dets = Detections([half, full, other], scores=[0.9, 0.7, 0.5])
    got = greedy_nmm(dets, 0.5, "ios")
    np.testing.assert_array_equal(got.boxes, [full, other])
    np.testing.assert_allclose(got.scores, [0.9, 0.5])  # the kept box's (the best) score
    # With IoU 0.5 the group forms (>= 0.5) but the merge needs > 0.5: the half box stays
    # alone, the full box is dropped (SAHI's semantics).
    got = greedy_nmm(dets, 0.5, "iou")
    np.testing.assert_array_equal(got.boxes, [half, other])


# Argument checks -----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"tile": 0}, ValueError, "tile"), ({"tile": (64, 0)}, ValueError, "tile width"),
    ({"tile": "big"}, TypeError, "tile"), ({"overlap": 1.0}, ValueError, "overlap"),
    ({"overlap": -0.1}, ValueError, "overlap"), ({"overlap": float("nan")}, ValueError, "overlap"),
    ({"merge": "soft"}, ValueError, "merge"), ({"iou": 1.5}, ValueError, "iou"),
    ({"match": "giou"}, ValueError, "match"), ({"merge": "nms", "match": "ios"}, ValueError, "match"),
    ({"full_image_pass": 1}, TypeError, "full_image_pass"), ({"full_image_size": 0}, ValueError, "full_image_size"),
    ({"batch_size": 0}, ValueError, "batch_size"), ({"batch_size": 2.5}, TypeError, "batch_size"),
])
def test_bad_arguments_name_the_argument(kwargs, error, fragment):
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(error, match=fragment):
        predict_tiled(BrightSquares(), image, **{"tile": 32, **kwargs})


def test_bad_detector_and_image(tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(TypeError, match="detector"):
        predict_tiled(42, image, tile=32)
    with pytest.raises(TypeError, match="Detections"):
        predict_tiled(lambda tile: [[0, 0, 1, 1]], image, tile=32)
    with pytest.raises(ValueError, match="image"):
        predict_tiled(BrightSquares(), np.zeros((64, 64, 4), np.uint8), tile=32)
    with pytest.raises(TypeError, match="image"):
        predict_tiled(BrightSquares(), np.zeros((64, 64), object), tile=32)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        predict_tiled(BrightSquares(), str(tmp_path / "missing.png"), tile=32)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        predict_tiled(BrightSquares(), str(tmp_path / "empty.png"), tile=32)
    fortran = tmp_path / "f.npy"
    np.save(fortran, np.asfortranarray(np.zeros((64, 64), np.uint8)))
    with pytest.raises(ValueError, match="Fortran"):
        predict_tiled(BrightSquares(), str(fortran), tile=32)
    truncated = tmp_path / "t.npy"
    np.save(truncated, np.zeros((64, 64), np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        predict_tiled(BrightSquares(), str(truncated), tile=32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        predict_tiled(BrightSquares(), np.full((64, 64), 2.0), tile=32)


def test_wbf_refuses_negative_scores():
    with pytest.raises(ValueError, match="scores"):
        weighted_boxes_fusion(Detections([[0, 0, 1, 1]], scores=[-1.0]))
