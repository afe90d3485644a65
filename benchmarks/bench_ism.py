"""ISM Hough voting + mean-shift: pydetect (C++) vs scikit-learn's MeanShift and numpy.

Same votes, same thread count (2), same modes (checked), median of >= 7 runs after warm-up.

1. Fixed bandwidth (the case scikit-learn implements): votes cast by numpy + sklearn
   MeanShift(bandwidth, seeds=votes, n_jobs=threads) vs pydetect accumulate_votes +
   mean_shift(adaptive=False) seeded with every vote.
2. Scale-adaptive (balloon) kernel, which scikit-learn lacks: a vectorised numpy mean-shift
   (all seeds advance together, every vote tested per step) vs pydetect.

Usage: python benchmarks/bench_ism.py [--votes 8000] [--repeats 7]
"""

import argparse

import numpy as np

import pydetect
from pydetect.bench.ops import hough_problem
from pydetect.bench.timing import median_time
from pydetect.ism import accumulate_votes, mean_shift


def numpy_votes(feats, match_ptr, match_entry, match_weight, occ_ptr, occ, occ_weight):
    nmatch = np.diff(match_ptr)
    f_of_match = np.repeat(np.arange(len(feats)), nmatch)
    nocc = np.diff(occ_ptr)[match_entry]
    m_of_vote = np.repeat(np.arange(len(match_entry)), nocc)
    o_of_vote = (np.arange(nocc.sum()) - np.repeat(np.cumsum(nocc) - nocc, nocc)
                 + np.repeat(occ_ptr[match_entry], nocc))
    f = feats[f_of_match[m_of_vote]]
    o = occ[o_of_vote]
    votes = np.column_stack([f[:, 0] + f[:, 2] * o[:, 0], f[:, 1] + f[:, 2] * o[:, 1], f[:, 2] * o[:, 2]])
    return votes, match_weight[m_of_vote] * occ_weight[o_of_vote]


def numpy_balloon_mean_shift(votes, weights, bxy, bs, max_iter=300, tol=1e-3, min_score=0.0):
    """Straightforward vectorised numpy balloon mean-shift + the same merging rule."""
    m = votes.copy()
    active = np.ones(len(m), bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        for lo in range(0, len(idx), 256):
            sel = idx[lo:lo + 256]
            mm = m[sel]
            hxy, hs = bxy * mm[:, 2:3], bs * mm[:, 2:3]
            d2 = (((votes[None, :, 0] - mm[:, 0:1]) ** 2 + (votes[None, :, 1] - mm[:, 1:2]) ** 2) / hxy**2
                  + ((votes[None, :, 2] - mm[:, 2:3]) / hs) ** 2)
            k = (d2 <= 1) * weights[None]
            new = k @ votes / k.sum(1, keepdims=True)
            shift = np.sqrt((((new[:, :2] - mm[:, :2]) ** 2).sum(1, keepdims=True) / hxy**2
                             + ((new[:, 2:3] - mm[:, 2:3]) / hs) ** 2))[:, 0]
            m[sel] = new
            active[sel[shift <= tol]] = False
    hxy, hs = bxy * m[:, 2], bs * m[:, 2]
    score = np.empty(len(m))
    for lo in range(0, len(m), 256):
        mm = m[lo:lo + 256]
        d2 = (((votes[None, :, 0] - mm[:, 0:1]) ** 2 + (votes[None, :, 1] - mm[:, 1:2]) ** 2)
              / (bxy * mm[:, 2:3]) ** 2 + ((votes[None, :, 2] - mm[:, 2:3]) / (bs * mm[:, 2:3])) ** 2)
        score[lo:lo + 256] = ((d2 <= 1) * weights[None]).sum(1)
    order = np.lexsort((-m[:, 2], -m[:, 1], -m[:, 0], -score))
    order = order[score[order] >= min_score]
    kept = []
    for i in order:
        if any(((m[i, 0] - m[j, 0]) ** 2 + (m[i, 1] - m[j, 1]) ** 2) / hxy[j] ** 2
               + ((m[i, 2] - m[j, 2]) / hs[j]) ** 2 <= 1 for j in kept):
            continue
        kept.append(i)
    return m[kept], score[kept]



def same_modes(a, b, atol):
    if a.shape != b.shape:
        return False
    if not len(a):
        return True
    d = np.abs(a[:, None, :] - b[None, :, :]).max(2)
    return bool(d.min(1).max() <= atol and d.min(0).max() <= atol)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=1500)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from sklearn.cluster import MeanShift

    pydetect.set_num_threads(args.threads)
    problem = hough_problem(args.features, args.objects, seed=0)
    votes, weights = numpy_votes(*problem)
    print(f"{len(problem[0])} features -> {len(votes)} votes, {args.threads} threads")

    # 1. fixed bandwidth vs sklearn
    bw = 12.0
    def ours_fixed():
        v, w, _, _ = accumulate_votes(*problem)
        return mean_shift(v, np.ones_like(w), bandwidth_xy=bw, bandwidth_scale=bw, adaptive=False)[0]

    def peer_fixed():
        v, _ = numpy_votes(*problem)
        return MeanShift(bandwidth=bw, seeds=v, n_jobs=args.threads).fit(v).cluster_centers_

    def peer_fixed_1job():
        v, _ = numpy_votes(*problem)
        return MeanShift(bandwidth=bw, seeds=v, n_jobs=1).fit(v).cluster_centers_

    ok1 = same_modes(ours_fixed(), peer_fixed(), 1e-6)
    t_ours = median_time(ours_fixed, args.repeats)
    t_peer = median_time(peer_fixed, args.repeats)
    print(f"fixed bandwidth: sklearn MeanShift(n_jobs={args.threads}) {t_peer * 1e3:.1f} ms, pydetect "
          f"{t_ours * 1e3:.2f} ms, ratio {t_peer / t_ours:.1f}x, same modes: {ok1} ({len(ours_fixed())} modes)")
    t_peer1 = median_time(peer_fixed_1job, args.repeats)
    print(f"  (sklearn n_jobs=1: {t_peer1 * 1e3:.1f} ms, ratio {t_peer1 / t_ours:.1f}x)")

    # 2. balloon kernel vs numpy
    # Hypotheses need the mass of >= 3 votes (each weighs 1/6): below that, modes of
    # equal mass merge in an order that float rounding decides.
    bxy, bs, min_score = 0.15, 0.25, 0.5
    def ours_adaptive():
        v, w, _, _ = accumulate_votes(*problem)
        return mean_shift(v, w, bandwidth_xy=bxy, bandwidth_scale=bs, min_score=min_score)[0]

    def peer_adaptive():
        v, w = numpy_votes(*problem)
        return numpy_balloon_mean_shift(v, w, bxy, bs, min_score=min_score)[0]

    ok2 = same_modes(ours_adaptive(), peer_adaptive(), 1e-6)
    t_ours2 = median_time(ours_adaptive, args.repeats)
    t_peer2 = median_time(peer_adaptive, args.repeats)
    print(f"balloon kernel: numpy {t_peer2 * 1e3:.1f} ms, pydetect {t_ours2 * 1e3:.2f} ms, "
          f"ratio {t_peer2 / t_ours2:.1f}x, same modes: {ok2} ({len(ours_adaptive())} modes)")


if __name__ == "__main__":
    main()
