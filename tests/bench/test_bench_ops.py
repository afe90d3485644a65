"""pydetect.bench.ops: the op benchmarks against installed peers (quick mode, one repeat).

No timing is asserted: the tests check the rows' contents (agreement with the installed
peers, ratio = ours / peer), that a peer that cannot be imported is named in ``missing``
with its pip package and families, and that one failing family does not stop the run.
"""

from __future__ import annotations

import json
import sys

import pytest

import pydetect
from pydetect.bench import ops as bench_ops
from pydetect.bench.ops import FAMILIES, OpReport, OpRow, run_op_benchmarks

pytest.importorskip("skimage", reason="the benchmark inputs come from scikit-image's data")


def _run(families, **kw):
    lines = []
    report = run_op_benchmarks(families, quick=True, threads=1, repeats=1, progress=lines.append, **kw)
    return report, lines


def _check_rows(report: OpReport, families):
    assert report.rows, "no rows"
    for row in report.rows:
        assert row.family in families
        assert row.threads == 1
        assert row.ours_ms > 0 and row.repeats >= 1
        if row.peer is not None:
            assert row.peer_ms > 0
            assert row.ratio == pytest.approx(row.ours_ms / row.peer_ms)
        else:
            assert row.ratio is None and row.agree is None


def test_boxes_integral_eval_agree_with_installed_peers():
    pytest.importorskip("cv2", reason="OpenCV is the NMS and integral-image peer here")
    pytest.importorskip("pycocotools", reason="pycocotools is the COCO evaluation peer")
    report, lines = _run(["boxes", "integral", "eval"])
    _check_rows(report, {"boxes", "integral", "eval"})
    assert not report.errors
    peers = {r.peer for r in report.rows}
    assert {"OpenCV dnn.NMSBoxes", "OpenCV integral", "OpenCV integral2", "OpenCV integral3",
            "scikit-image integral_image", "pycocotools COCOeval"} <= peers
    # Same computation: every compared row must agree (NMS keep lists, the integral tables
    # bit for bit, the 12 COCO stats); the copies of as many bytes are a bandwidth reference.
    copies = [r for r in report.rows if r.peer is not None and r.peer.startswith("numpy copy")]
    assert copies and all(r.agree is None and "GB/s" in r.note for r in copies)
    compared = [r for r in report.rows if r.peer is not None and r not in copies]
    assert compared and all(r.agree is True for r in compared), [
        (r.case, r.peer) for r in compared if r.agree is not True]
    try:
        import torchvision  # noqa: F401
    except ImportError:
        assert "torchvision" in report.missing
        assert report.missing["torchvision"]["package"] == "torchvision"
        assert report.missing["torchvision"]["families"] == ["boxes"]
        # Without a peer, pydetect is still timed and the row says so.
        assert any(r.case.startswith("batched_nms") and r.peer is None for r in report.rows)
    else:
        assert any(r.peer == "torchvision" and r.agree for r in report.rows)
    assert any("OpenCV integral" in line for line in lines)


def test_report_renders_markdown_and_json(tmp_path):
    report, _ = _run(["integral"])
    md = report.markdown()
    assert "| family | case | threads | pydetect ms | peer | peer ms | ratio | agree |" in md
    for row in report.rows:
        assert row.case in md
    data = json.loads(report.to_json())
    assert data["quick"] is True and data["threads"] == [1] and data["families"] == ["integral"]
    assert len(data["rows"]) == len(report.rows)
    for d, row in zip(data["rows"], report.rows):
        assert d["case"] == row.case and d["ratio"] == row.ratio and d["agree"] == row.agree
    report.write_json(tmp_path / "sub" / "ops.json")
    assert json.loads((tmp_path / "sub" / "ops.json").read_text()) == data


def test_missing_peer_is_named_not_skipped(monkeypatch):
    # An import of cv2 now raises ImportError, as if OpenCV were not installed.
    monkeypatch.setitem(sys.modules, "cv2", None)
    report, lines = _run(["integral"])
    assert "OpenCV" in report.missing
    miss = report.missing["OpenCV"]
    assert miss["package"] == "opencv-python-headless"
    assert miss["families"] == ["integral"]
    assert "ImportError" in miss["error"] or "ModuleNotFoundError" in miss["error"]
    assert not any(r.peer and r.peer.startswith("OpenCV") for r in report.rows)
    # The peers that are installed still run, and so do the copies of as many bytes (numpy).
    peers = [r.peer for r in report.rows]
    assert peers[0] == "scikit-image integral_image" and report.rows[0].agree is True
    assert set(peers[1:]) == {"numpy copyto (same bytes, preallocated)", "numpy copy (same bytes, new array)"}
    assert "opencv-python-headless" in report.markdown()
    assert any("OpenCV not installed" in line for line in lines)


def test_missing_torchvision_names_both_families(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.ops", None)
    report, _ = _run(["roi"])
    assert report.missing["torchvision"]["families"] == ["roi"]
    assert report.rows == [] and not report.errors
    assert "roi" in report.markdown()


def test_roi_agrees_with_torchvision():
    pytest.importorskip("torchvision", reason="torchvision is the RoI peer")
    report, _ = _run(["roi"])
    _check_rows(report, {"roi"})
    # Forward and backward of roi_align on each input class and of roi_pool on each box class.
    n_box_classes = len({kind for kind, *_ in bench_ops.ROI_CASES.values()})
    assert len(report.rows) == 2 * (len(bench_ops.ROI_CASES) + n_box_classes)
    assert all(r.peer == "torchvision" and r.agree for r in report.rows)


def test_failing_family_is_reported_and_others_run(monkeypatch):
    def broken(run):
        raise RuntimeError("kernel exploded")

    monkeypatch.setitem(bench_ops._FAMILY_FNS, "boxes", broken)
    before = pydetect.get_num_threads()
    report, lines = _run(["boxes", "integral"])
    assert report.errors == {"boxes": "RuntimeError: kernel exploded"}
    assert report.rows and all(r.family == "integral" for r in report.rows)
    assert "kernel exploded" in report.markdown()
    assert pydetect.get_num_threads() == before  # thread counts are restored


def test_ratio_and_row_dict():
    row = OpRow("boxes", "nms", 2, 1.5, "peer", 3.0, True, 7)
    assert row.ratio == 0.5
    assert row.as_dict()["ratio"] == 0.5
    assert OpRow("boxes", "nms", 2, 1.5).ratio is None


@pytest.mark.parametrize("kwargs, exc", [
    ({"families": ["nope"]}, ValueError),
    ({"threads": 0}, ValueError),
    ({"threads": "two"}, TypeError),
    ({"repeats": 0}, ValueError),
])
def test_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        run_op_benchmarks(progress=None, **kwargs)


def test_families_listed():
    assert set(FAMILIES) == {"boxes", "integral", "cascade", "haar", "boosting", "proposals",
                             "roi", "eval", "ism"}


def test_same_keep_accepts_only_tie_reordering():
    import numpy as np

    from pydetect.bench.ops import same_keep

    scores = np.array([0.9, 0.5, 0.5, 0.2], np.float32)
    assert same_keep([0, 1, 2], [0, 2, 1], scores)  # equal scores: either order
    assert not same_keep([0, 1, 3], [0, 3, 1], scores)  # different scores swapped
    assert not same_keep([0, 1], [0, 2], scores)  # a different box kept
    assert not same_keep([0, 1, 2], [0, 1], scores)
