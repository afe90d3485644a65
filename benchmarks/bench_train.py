"""Viola-Jones training pieces vs their peers, same process, same input.

1. Haar feature matrix of the 200 LFW-subset windows (25 x 25, scikit-image's five feature
   types, 190,736 features): pydetect's HaarFeatures(mode="skimage").compute(normalize=False)
   vs skimage.feature.haar_like_feature on each window's integral image (its documented use).
   The values must be equal.
2. 50 boosted stumps on that matrix (150 training windows, 50 held out, as scikit-image's
   "Face classification using Haar-like feature descriptor" example splits them):
   pydetect's AdaBoost (gentle, OpenCV's default, and discrete) vs scikit-learn's
   AdaBoostClassifier(DecisionTreeClassifier(max_depth=1), n_estimators=50).

Both peers are single-threaded; pydetect is timed at 1 thread (same thread count) and at all
cores. Median of --repeats runs after a warm-up (boosting: --boost-repeats at 1 thread, one run
at all cores; scikit-learn: --sk-repeats, no warm-up, each run takes minutes). scikit-image's 200 windows take about a
minute, so each of its runs times a disjoint slice of the windows (all slices together cover
the 200 windows, and their values are all compared) and the figure is per window.

3. (--detection) ViolaJonesDetector trained with default parameters on faces_in_clutter("train")
   and on one digit class of digits_in_clutter("train"): training time and VOC AP50 on the
   test split, next to OpenCV's pretrained haarcascade_frontalface_default.xml (boxes ranked by
   their neighbour count, detectMultiScale2) on the same faces.

Usage: PYTHONPATH=. python benchmarks/bench_train.py [--repeats 7] [--sk-repeats 3]
       [--boosting | --detection]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import pydetect
from pydetect.cascade.boosting import AdaBoost
from pydetect.cascade.haar_features import HaarFeatures


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--boost-repeats", type=int, default=3,
                        help="runs of pydetect's AdaBoost at 1 thread")
    parser.add_argument("--sk-repeats", type=int, default=3,
                        help="runs of scikit-learn's AdaBoost (~1 minute each)")
    parser.add_argument("--skimage-slices", type=int, default=8,
                        help="scikit-image runs, each on 200/slices windows")
    parser.add_argument("--detection", action="store_true", help="only part 3")
    parser.add_argument("--boosting", action="store_true", help="only part 2")
    parser.add_argument("--digit", default="3")
    args = parser.parse_args()
    if args.detection:
        return detection(args)

    from skimage.data import lfw_subset
    from sklearn.ensemble import AdaBoostClassifier
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    cores = os.cpu_count()
    load = os.getloadavg()[0]
    print(f"cores: {cores}, load average at start: {load:.1f}")
    windows = np.rint(lfw_subset() * 255).astype(np.uint8)  # (200, 25, 25): 100 faces, 100 not
    labels = np.array([1] * 100 + [0] * 100)
    bank = HaarFeatures((25, 25), mode="skimage")
    print(f"windows {windows.shape}, {len(bank)} features")

    # 1. Feature matrix -----------------------------------------------------------------
    if args.boosting:
        ours = bank.compute(windows, normalize=False)
    else:
        ours = features_part(args, windows, bank, cores)

    # 2. Boosting -------------------------------------------------------------------------
    Xtr, Xte, ytr, yte = train_test_split(ours, labels, train_size=150, random_state=0,
                                          stratify=labels)
    boost = {}
    for algorithm in ("gentle", "discrete"):
        for threads in (1, cores):
            pydetect.set_num_threads(threads)
            reps = args.boost_repeats if threads == 1 else 1
            med, _ = timed(lambda: AdaBoost(50, algorithm=algorithm).fit(Xtr, ytr), reps)
            boost[algorithm, threads] = med
            print(f"pydetect AdaBoost {algorithm}, 50 stumps, {threads} thread(s): {med:.2f} s "
                  f"(median of {reps})")
        pydetect.set_num_threads(cores)
        acc = AdaBoost(50, algorithm=algorithm).fit(Xtr, ytr).score(Xte, yte)
        boost[algorithm, "acc"] = acc
        print(f"  held-out accuracy {acc:.3f}")

    def sk_fit():
        return AdaBoostClassifier(DecisionTreeClassifier(max_depth=1), n_estimators=50,
                                  random_state=0).fit(Xtr, ytr)

    times = []
    for _ in range(args.sk_repeats):
        t0 = time.perf_counter()
        model = sk_fit()
        times.append(time.perf_counter() - t0)
    sk_time = statistics.median(times)
    sk_acc = model.score(Xte, yte)
    print(f"sklearn AdaBoostClassifier 50 stumps: {sk_time:.1f} s (median of {len(times)}, "
          f"runs {', '.join(f'{t:.1f}' for t in times)}), held-out accuracy {sk_acc:.3f}")
    for algorithm in ("gentle", "discrete"):
        print(f"ratio boosting ({algorithm}): {sk_time / boost[algorithm, 1]:.0f}x (1 thread), "
              f"{sk_time / boost[algorithm, cores]:.0f}x ({cores} threads); accuracy "
              f"{boost[algorithm, 'acc']:.3f} vs {sk_acc:.3f}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


def features_part(args, windows, bank, cores):
    from skimage.feature import haar_like_feature
    from skimage.transform import integral_image

    results = {}
    for threads in (1, cores):
        pydetect.set_num_threads(threads)
        med, _ = timed(lambda: bank.compute(windows, normalize=False), args.repeats)
        results[threads] = med / len(windows)
        print(f"pydetect features, {threads} thread(s): {med * 1e3:.1f} ms for 200 windows "
              f"({results[threads] * 1e3:.3f} ms/window)")
    pydetect.set_num_threads(cores)
    ours = bank.compute(windows, normalize=False)

    haar_like_feature(integral_image(windows[0]), 0, 0, 25, 25)  # warm-up
    per_window = []
    equal = True
    for part in np.array_split(np.arange(len(windows)), args.skimage_slices):
        t0 = time.perf_counter()
        values = [haar_like_feature(integral_image(windows[i]), 0, 0, 25, 25) for i in part]
        per_window.append((time.perf_counter() - t0) / len(part))
        equal &= bool(np.array_equal(np.asarray(values, dtype=np.float32), ours[part]))
    sk = statistics.median(per_window)
    print(f"skimage haar_like_feature: {sk * 1e3:.1f} ms/window (median of {len(per_window)} runs)")
    print(f"values equal on all 200 windows: {equal}")
    print(f"ratio features: {sk / results[1]:.0f}x (1 thread), {sk / results[cores]:.0f}x ({cores} threads)")

    return ours


def detection(args):
    import cv2

    from pydetect import Detections
    from pydetect import eval as pdeval
    from pydetect.data import digits_in_clutter, faces_in_clutter
    from pydetect.detectors.viola_jones import ViolaJonesDetector

    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}")
    train, test = faces_in_clutter("train"), faces_in_clutter("test")
    t0 = time.perf_counter()
    det = ViolaJonesDetector().fit(train)
    fit_s = time.perf_counter() - t0
    log = det.training_log_
    print(f"faces: trained {det.cascade_.num_stages} stages, {int(det.cascade_.stage_num_weak.sum())} "
          f"weak trees in {fit_s:.0f} s ({det.stop_reason_})")
    t0 = time.perf_counter()
    ours = [det.predict(img) for img, _ in test]
    pred_s = (time.perf_counter() - t0) / len(test)
    ap = pdeval.voc_evaluate(test, ours, iou_threshold=0.5)["mAP"]
    print(f"faces: pydetect AP50 {ap:.3f} ({pred_s * 1e3:.0f} ms/image); last acceptance ratio "
          f"{log[-1]['acceptance_ratio']:.2g}")
    cv = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    theirs = []
    for img, _ in test:
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        rects, counts = cv.detectMultiScale2(g, scaleFactor=1.1, minNeighbors=1)
        b = np.asarray(rects, np.float32).reshape(-1, 4)
        b[:, 2:] += b[:, :2]
        theirs.append(Detections(b, scores=np.asarray(counts, np.float32).reshape(-1),
                                 labels=np.zeros(len(b), np.int64)))
    ap_cv = pdeval.voc_evaluate(test, theirs, iou_threshold=0.5)["mAP"]
    print(f"faces: OpenCV haarcascade_frontalface_default AP50 {ap_cv:.3f} (minNeighbors 1, "
          "ranked by neighbours)")

    dtrain, dtest = digits_in_clutter("train"), digits_in_clutter("test")
    t0 = time.perf_counter()
    ddet = ViolaJonesDetector(window=(24, 16)).fit(dtrain, class_name=args.digit)
    fit_s = time.perf_counter() - t0
    dets = [ddet.predict(img) for img, _ in dtest]
    res = pdeval.voc_evaluate(dtest, dets, iou_threshold=0.5)
    print(f"digit {args.digit}: trained {ddet.cascade_.num_stages} stages in {fit_s:.0f} s "
          f"({ddet.stop_reason_}); AP50 {res['AP'][args.digit]:.3f}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
