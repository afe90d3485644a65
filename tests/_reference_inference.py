"""Slow, obviously-correct references for the merges of tiled inference (plain Python loops
over box tuples, float64), written from the descriptions of SAHI's GreedyNMMPostprocess and
of Solovyev et al.'s weighted boxes fusion, not from pydetect's code."""


def overlap(a, b, metric):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    denominator = area_a + area_b - inter if metric == "iou" else min(area_a, area_b)
    return inter / denominator if area_a > 0 and area_b > 0 and denominator > 0 else 0.0


def _order(scores):
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def _finish(found):
    """found: (box, score, label, rank of the first box) -> boxes, scores, labels by score."""
    found.sort(key=lambda f: (-f[1], f[3]))
    return [f[0] for f in found], [f[1] for f in found], [f[2] for f in found]


def _prepare(boxes, scores):
    """Plain-float boxes and scores, the score order and each box's rank in it."""
    scores = [float(s) for s in scores]
    order = _order(scores)
    return [[float(v) for v in b] for b in boxes], scores, order, {i: r for r, i in enumerate(order)}


def greedy_nmm(boxes, scores, labels, thr, metric):
    boxes, scores, order, rank = _prepare(boxes, scores)
    found = []
    for label in sorted(set(labels)):
        pool = [i for i in order if labels[i] == label]
        while pool:
            lead = pool.pop(0)
            group = [j for j in pool if overlap(boxes[lead], boxes[j], metric) >= thr]
            pool = [j for j in pool if j not in group]
            box = list(boxes[lead])
            for j in group:  # in decreasing score order
                if overlap(box, boxes[j], metric) > thr:
                    box = [min(box[0], boxes[j][0]), min(box[1], boxes[j][1]),
                           max(box[2], boxes[j][2]), max(box[3], boxes[j][3])]
            found.append((box, scores[lead], label, rank[lead]))
    return _finish(found)


def weighted_boxes_fusion(boxes, scores, labels, thr, metric, views=()):
    boxes, scores, order, rank = _prepare(boxes, scores)
    found = []
    for label in sorted(set(labels)):
        clusters, fused = [], []
        for i in (i for i in order if labels[i] == label):
            best, best_overlap = None, thr
            for c in range(len(clusters)):
                o = overlap(fused[c], boxes[i], metric)
                if o > best_overlap:
                    best, best_overlap = c, o
            if best is None:
                clusters.append([i])
                fused.append(list(boxes[i]))
                continue
            clusters[best].append(i)
            weight = sum(scores[j] for j in clusters[best])
            fused[best] = [sum(scores[j] * boxes[j][k] for j in clusters[best]) / weight for k in range(4)]
        for members, box in zip(clusters, fused):
            t = max(1, sum(1 for v in views if v[0] <= box[0] and v[1] <= box[1] and v[2] >= box[2] and v[3] >= box[3]))
            n = len(members)
            found.append((box, sum(scores[j] for j in members) / n * min(t, n) / t, label, rank[members[0]]))
    return _finish(found)
