"""Extreme and malformed input to the cascade family (XML files, Cascade builders, Haar banks,
grouping, AdaBoost, the detector): a clear ValueError/TypeError naming what is wrong, never a
crash, a hang, an OverflowError or a silently wrong result.

Every check runs in a child interpreter (run_isolated), so a segfault fails one test instead
of killing the suite. Crafted XML files are written to tmp_path by the parent.
"""

import json
import re

from _isolated import run_isolated

INT_MAX, INT_MIN = 2**31 - 1, -(2**31)


# ------------------------------------------------------------------------------ XML files
def new_haar(rect="0 0 4 2 -1.", rect2="0 2 4 2 2.", nodes="0 -1 0 0.5", leaves="-1. 1.",
             thr="-0.5", width="24", height="24", tilted=""):
    """A one-stump cascade in OpenCV's current format (HAAR)."""
    return f"""<?xml version="1.0"?>
<opencv_storage><cascade type_id="opencv-cascade-classifier">
<stageType>BOOST</stageType><featureType>HAAR</featureType>
<height>{height}</height><width>{width}</width>
<featureParams><maxCatCount>0</maxCatCount></featureParams><stageNum>1</stageNum>
<stages><_><maxWeakCount>1</maxWeakCount><stageThreshold>{thr}</stageThreshold>
<weakClassifiers><_><internalNodes>{nodes}</internalNodes><leafValues>{leaves}</leafValues>
</_></weakClassifiers></_></stages>
<features><_><rects><_>{rect}</_><_>{rect2}</_></rects>{tilted}</_></features>
</cascade></opencv_storage>"""


def new_lbp(rect="0 0 2 2", nodes="0 -1 0 -1 -1 -1 -1 -1 -1 -1 -1"):
    """A one-stump cascade in OpenCV's current format (LBP)."""
    return f"""<?xml version="1.0"?>
<opencv_storage><cascade type_id="opencv-cascade-classifier">
<stageType>BOOST</stageType><featureType>LBP</featureType><height>24</height><width>24</width>
<featureParams><maxCatCount>256</maxCatCount></featureParams><stageNum>1</stageNum>
<stages><_><maxWeakCount>1</maxWeakCount><stageThreshold>-0.5</stageThreshold>
<weakClassifiers><_><internalNodes>{nodes}</internalNodes><leafValues>-1. 1.</leafValues>
</_></weakClassifiers></_></stages>
<features><_><rect>{rect}</rect></_></features></cascade></opencv_storage>"""


def old_node(rect="0 0 4 2 -1.", thr="0.5", left="<left_val>-1.</left_val>",
             right="<right_val>1.</right_val>", tilted="0"):
    return (f"<_><feature><rects><_>{rect}</_><_>0 2 4 2 2.</_></rects><tilted>{tilted}</tilted>"
            f"</feature><threshold>{thr}</threshold>{left}{right}</_>")


def old_haar(nodes=None, size="24 24", sthr="-0.5"):
    """A one-tree cascade in the old opencv-haar-classifier format."""
    nodes = old_node() if nodes is None else nodes
    return f"""<?xml version="1.0"?>
<opencv_storage><haar type_id="opencv-haar-classifier"><size>{size}</size>
<stages><_><trees><_>{nodes}</_></trees><stage_threshold>{sthr}</stage_threshold>
<parent>-1</parent><next>-1</next></_></stages></haar></opencv_storage>"""


def assert_load_fails(tmp_path, cases):
    """Writes each {name: (xml, pattern)} file; a child interpreter checks that Cascade.load
    raises ValueError matching the pattern and naming the file, and that nothing crashes."""
    checks = []
    for name, (text, pattern) in cases.items():
        path = tmp_path / f"{name}.xml"
        path.write_text(text)
        checks.append((str(path), pattern))
    run_isolated(f"""
        import json
        import pytest
        from pydetect.cascade import Cascade

        for path, pattern in json.loads({json.dumps(checks)!r}):
            with pytest.raises(ValueError, match=pattern) as info:
                Cascade.load(path)
            assert path in str(info.value), info.value
    """)


def does_not_fit(x, y, w, h):
    return re.escape(f"rectangle 0 ({x} {y} {w} {h}") + r".*does not fit"


def test_xml_rectangles_near_int_max_are_rejected(tmp_path):
    # x + w wraps in int32 for these: the bounds check must not pass them
    cases = {
        "x_int_max": (new_haar(rect=f"{INT_MAX} 0 1 1 -1."), does_not_fit(INT_MAX, 0, 1, 1)),
        "w_int_max": (new_haar(rect=f"1 0 {INT_MAX} 1 -1."), does_not_fit(1, 0, INT_MAX, 1)),
        "h_int_max": (new_haar(rect=f"0 1 1 {INT_MAX} -1."), does_not_fit(0, 1, 1, INT_MAX)),
        "w_int_min": (new_haar(rect=f"4 0 {INT_MIN} 1 -1."), does_not_fit(4, 0, INT_MIN, 1)),
        "tilted_x": (new_haar(rect=f"{INT_MAX} 0 1 1 -1.", tilted="<tilted>1</tilted>"),
                     does_not_fit(INT_MAX, 0, 1, 1)),
        "tilted_h": (new_haar(rect=f"3 0 1 {INT_MIN} -1.", tilted="<tilted>1</tilted>"),
                     does_not_fit(3, 0, 1, INT_MIN)),
        # a weight-0 rectangle is still read by the scan (times 0): its corners must fit too
        "zero_weight": (new_haar(rect2=f"{INT_MAX} {INT_MAX} 0 0 0."),
                        "rectangle 1 .*does not fit"),
        "lbp_x": (new_lbp(rect=f"{INT_MAX} 0 1 1"), re.escape(f"({INT_MAX} 0 1 1)")),
        "lbp_w": (new_lbp(rect="0 0 1000000000 1"), "LBP feature 0 .*does not fit"),
        "old_x": (old_haar(old_node(rect=f"{INT_MAX} 0 1 1 -1.")), does_not_fit(INT_MAX, 0, 1, 1)),
        "old_tilted": (old_haar(old_node(rect=f"{INT_MAX} 0 1 1 -1.", tilted="1")),
                       does_not_fit(INT_MAX, 0, 1, 1)),
    }
    for v in ("2147483648", "9223372036854775808", "1e308", "-2147483649"):
        cases[f"new_{v}"] = (new_haar(rect=f"{v} 0 1 1 -1."),
                             "feature 0, rectangle 0: a coordinate must be an int32")
        cases[f"old_{v}"] = (old_haar(old_node(rect=f"0 {v} 1 1 -1.")),
                             "rectangle coordinate must be an int32")
        cases[f"lbp_{v}"] = (new_lbp(rect=f"0 0 {v} 1"), "<rect> value must be an int32")
    assert_load_fails(tmp_path, cases)


def test_xml_tree_children_and_indices_out_of_range(tmp_path):
    # -INT_MIN overflows int32: the child check must not pass it
    two_nodes = (old_node(left=f"<left_node>{INT_MIN}</left_node>") +
                 old_node(left="<left_val>0.5</left_val>"))
    cases = {
        "child_int_min": (new_haar(nodes=f"0 {INT_MIN} 0 0.5"),
                          f"child index {INT_MIN} out of range"),
        "child_int_max": (new_haar(nodes=f"{INT_MAX} -1 0 0.5"),
                          f"child index {INT_MAX} out of range"),
        "child_2_31": (new_haar(nodes="0 -2147483649 0 0.5"),
                       "node 0: an index .* must be an int32"),
        "feature_2_63": (new_haar(nodes="0 -1 9223372036854775807 0.5"), "must be an int32"),
        "feature_int_max": (new_haar(nodes=f"0 -1 {INT_MAX} 0.5"),
                            f"feature index {INT_MAX} out of"),
        "lbp_child": (new_lbp(nodes=f"0 {INT_MIN} 0 -1 -1 -1 -1 -1 -1 -1 -1"),
                      f"child index {INT_MIN} out of range"),
        "lbp_subset": (new_lbp(nodes="0 -1 0 4294967295 -1 -1 -1 -1 -1 -1 -1"),
                       "subset word must be an int32"),
        "old_child_int_min": (old_haar(two_nodes), f"child index {INT_MIN} out of range"),
        "old_child_2_31": (old_haar(old_node(left="<left_node>2147483648</left_node>")),
                           "<left_node> in stage 0, tree 0, node 0 must be an int32"),
        # counts that do not match
        "node_groups": (new_haar(nodes="0 -1 0"), "internalNodes must hold groups of 4"),
        "leaf_count": (new_haar(leaves="1."), "1 nodes need 2 leaf values"),
        "old_leaf_count": (old_haar(old_node(right="<right_node>-1</right_node>")),
                           "expected 2 leaves"),
        "old_rect_count": (old_haar(old_node(rect="0 0 4 2")), "a rectangle is 'x y w h weight'"),
    }
    assert_load_fails(tmp_path, cases)


def test_xml_non_numeric_and_non_finite_fields_name_the_field(tmp_path):
    cases = {
        "threshold_text": (new_haar(thr="abc"), "<stageThreshold> in stage 0 must be a number"),
        "threshold_nan": (new_haar(thr="nan"), "<stageThreshold> in stage 0 must be finite"),
        "threshold_1e39": (new_haar(thr="1e39"), "stage_threshold must be finite"),
        "leaf_inf": (new_haar(leaves="inf 1."), "stage 0, weak classifier 0 must be finite"),
        "leaf_text": (new_haar(leaves="-1. one"), "stage 0, weak classifier 0 must be a number"),
        "node_threshold_nan": (new_haar(nodes="0 -1 0 nan"), "weak classifier 0 must be finite"),
        "weight_nan": (new_haar(rect="0 0 4 2 nan"), "in feature 0 must be finite"),
        "weight_neg_inf": (new_haar(rect="0 0 4 2 -inf"), "in feature 0 must be finite"),
        "weight_1e308": (new_haar(rect="0 0 4 2 1e308"), "weights must be finite"),
        "tilted_text": (new_haar(tilted="<tilted>yes</tilted>"),
                        "<tilted> in feature 0 must be a number"),
        "width_text": (new_haar(width="wide"), "<width> in the cascade must be a number"),
        "old_threshold": (old_haar(old_node(thr="x")),
                          "<threshold> in stage 0, tree 0, node 0 must be a number"),
        "old_threshold_inf": (old_haar(old_node(thr="-inf")), "<threshold> .* must be finite"),
        "old_stage_threshold": (old_haar(sthr="NaN"),
                                "<stage_threshold> in stage 0 must be finite"),
        "old_leaf": (old_haar(old_node(right="<right_val>inf</right_val>")),
                     "node 0 must be finite"),
    }
    assert_load_fails(tmp_path, cases)


def test_xml_window_sizes(tmp_path):
    cases = {
        "width_0": (new_haar(width="0"), re.escape("window_size[0] (width) must be >= 1")),
        "height_neg": (new_haar(height="-24"), re.escape("window_size[1] (height) must be >= 1")),
        "width_2_31": (new_haar(width="2147483648"), "<width> in the cascade must be an int32"),
        "width_2_63": (new_haar(width="9223372036854775808"), "must be an int32"),
        "width_inf": (new_haar(width="inf"), "<width> in the cascade must be finite"),
        "old_size_1e308": (old_haar(size="1e308 24"), "<size> must be an int32"),
        "old_size_0": (old_haar(size="24 0"), re.escape("window_size[1] (height) must be >= 1")),
    }
    assert_load_fails(tmp_path, cases)
    # the largest int32 window is valid: it never fits an image, so nothing is detected
    path = tmp_path / "window_int_max.xml"
    path.write_text(new_haar(width=str(INT_MAX), height=str(INT_MAX)))
    run_isolated(f"""
        import numpy as np
        from pydetect.cascade import Cascade, CascadeDetector
        c = Cascade.load({str(path)!r})
        assert c.window_size == ({INT_MAX}, {INT_MAX})
        img = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
        assert len(CascadeDetector(c).detect(img, min_neighbors=0)) == 0
    """)


def test_xml_deep_nesting_and_entity_expansion(tmp_path):
    deep = tmp_path / "deep.xml"
    n = 200_000  # far beyond Python's recursion limit
    deep.write_text("<opencv_storage><cascade><stageType>BOOST</stageType><featureType>HAAR"
                    "</featureType><stages>" + "<_>" * n + "</_>" * n + "</stages></cascade>"
                    "</opencv_storage>")
    entities = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10))
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(f'<?xml version="1.0"?><!DOCTYPE b [<!ENTITY e0 "lollollol">{entities}]>'
                    "<opencv_storage><cascade><stageType>&e9;</stageType></cascade>"
                    "</opencv_storage>")
    run_isolated(f"""
        import pytest
        from pydetect.cascade import Cascade
        with pytest.raises(ValueError, match="width"):
            Cascade.load({str(deep)!r})
        with pytest.raises(ValueError, match="not a readable XML file"):
            Cascade.load({str(bomb)!r})
    """, timeout=60)


# ------------------------------------------------------------------------------ builders
def test_cascade_builders_reject_wrapped_and_non_finite_values():
    run_isolated(f"""
        import numpy as np
        import pytest
        from dataclasses import replace
        from pydetect.cascade import Cascade, HaarFeature, Stage, WeakTree

        def flat(**over):
            kw = dict(feature_type="HAAR", window_size=(24, 24), stage_threshold=[-0.5],
                      stage_num_weak=[1], weak_num_nodes=[1], node_left=[0], node_right=[-1],
                      node_feature=[0], node_threshold=[0.5], node_subset=None,
                      leaves=[-1.0, 1.0], rects=[[[0, 0, 4, 2], [0, 2, 4, 2], [0, 0, 0, 0]]],
                      weights=[[-1.0, 2.0, 0.0]], tilted=[False])
            kw.update(over)
            return Cascade(**kw)

        flat()  # the base case is valid
        big = np.array([[[2**32, 0, 4, 2], [0, 2, 4, 2], [0, 0, 0, 0]]], np.int64)  # wraps to 0
        for kw, err, pattern in [
                (dict(rects=big), ValueError, "rects must hold values in"),
                (dict(rects=[[[{INT_MAX}, 0, 1, 1], [0, 2, 4, 2], [0, 0, 0, 0]]]), ValueError,
                 "does not fit"),
                (dict(rects=[[[0.5, 0, 4, 2], [0, 2, 4, 2], [0, 0, 0, 0]]]), ValueError,
                 "rects must hold integers"),
                (dict(rects=[[0, 0, 4, 2, 0]]), ValueError, "rects must have shape"),
                (dict(weights=[[np.nan, 2.0, 0.0]]), ValueError, "weights must be finite"),
                (dict(weights=[[-1.0, np.inf, 0.0]]), ValueError, "weights must be finite"),
                (dict(stage_threshold=[1e308]), ValueError, "stage_threshold must be finite"),
                (dict(stage_threshold=[np.nan]), ValueError, "stage_threshold must be finite"),
                (dict(leaves=[-np.inf, 1.0]), ValueError, "leaves must be finite"),
                (dict(node_threshold=[np.nan]), ValueError, "node_threshold must be finite"),
                (dict(node_left=[{INT_MIN}]), ValueError, "child index {INT_MIN}"),
                (dict(node_left=np.array([2**32], np.int64)), ValueError, "node_left must hold"),
                (dict(node_feature=[2**63]), ValueError, "node_feature must hold"),
                (dict(stage_num_weak=[np.nan]), ValueError, "stage_num_weak must hold integers"),
                (dict(weak_num_nodes=[2**31]), ValueError, "weak_num_nodes must hold"),
                (dict(window_size=(2**31, 24)), ValueError, "width.* <= {INT_MAX}"),
                (dict(window_size=(24, 0)), ValueError, "height.* >= 1"),
                (dict(window_size=(24.5, 24)), TypeError, "width"),
                (dict(window_size=24), TypeError, "window_size"),
        ]:
            with pytest.raises(err, match=pattern):
                flat(**kw)

        tree = WeakTree(np.array([0]), np.array([-1]), np.array([0]), np.array([0.5], np.float32),
                        np.zeros((0, 8), np.int32), np.array([-1.0, 1.0], np.float32))
        def lists(rects, weights, threshold=0.5, leaves=(-1.0, 1.0)):
            t = replace(tree, leaves=np.array(leaves))
            return Cascade.from_lists("HAAR", (24, 24), [Stage(threshold, [t])],
                                      [HaarFeature(np.array(rects), np.array(weights))])

        lists([[0, 0, 4, 2], [0, 2, 4, 2]], [-1.0, 2.0])
        with pytest.raises(ValueError, match="feature 0 rects must hold values in"):
            lists(np.array([[2**32 + 1, 0, 4, 2], [0, 2, 4, 2]], np.int64), [-1.0, 2.0])
        with pytest.raises(ValueError, match="does not fit"):
            lists([[1, 0, {INT_MAX}, 2], [0, 2, 4, 2]], [-1.0, 2.0])
        with pytest.raises(ValueError, match="feature 0 weights must be finite"):
            lists([[0, 0, 4, 2], [0, 2, 4, 2]], [np.nan, 2.0])
        with pytest.raises(ValueError, match="2 rectangles but 3 weights"):
            lists([[0, 0, 4, 2], [0, 2, 4, 2]], [-1.0, 2.0, 1.0])
        with pytest.raises(ValueError, match="stage_threshold must be finite"):
            lists([[0, 0, 4, 2], [0, 2, 4, 2]], [-1.0, 2.0], threshold=float("inf"))
        with pytest.raises(ValueError, match="leaves must be finite"):
            lists([[0, 0, 4, 2], [0, 2, 4, 2]], [-1.0, 2.0], leaves=(1e308, 1.0))
    """)


def test_haar_features_from_arrays_and_window_extremes():
    run_isolated(f"""
        import numpy as np
        import pytest
        from pydetect.cascade import HaarFeatures

        rects = np.array([[[0, 0, 4, 2], [0, 2, 4, 2], [0, 0, 0, 0]]], np.int32)
        weights = np.array([[-1.0, 2.0, 0.0]], np.float32)
        ok = HaarFeatures.from_arrays((24, 24), rects, weights, [False])
        assert ok.compute(np.zeros((1, 24, 24), np.uint8), normalize=False).shape == (1, 1)

        def bad(r=rects, w=weights, t=(False,), window=(24, 24)):
            return HaarFeatures.from_arrays(window, r, w, t)

        for x, y, w, h, tilted in [({INT_MAX}, 0, 1, 1, False), (1, 0, {INT_MAX}, 1, False),
                                   (0, 1, 1, {INT_MAX}, False), ({INT_MAX}, 0, 1, 1, True),
                                   (3, 0, 1, {INT_MIN}, True), (0, 0, {INT_MIN}, 2, False)]:
            r = rects.copy()
            r[0, 0] = (x, y, w, h)
            with pytest.raises(ValueError, match="rects and weights: feature 0 .*rectangle 0"):
                bad(r, t=(tilted,))
        for v in (2**31, 2**63, -(2**31) - 1):
            r = rects.astype(object)
            r[0, 0, 0] = v
            with pytest.raises(ValueError, match="rects must hold values in"):
                bad(r)
        wrapped = rects.astype(np.int64)
        wrapped[0, 0, 2] = 2**32 + 4  # int32 would wrap it to 4
        with pytest.raises(ValueError, match="rects must hold values in"):
            bad(wrapped)
        with pytest.raises(ValueError, match="rects must hold integers"):
            bad(rects + 0.5)
        for v in (np.nan, np.inf, -np.inf, 1e308):
            w = weights.astype(np.float64)
            w[0, 1] = v
            with pytest.raises(ValueError, match="weights must be finite"):
                bad(w=w)
        with pytest.raises(ValueError, match="weights must have shape"):
            bad(w=weights[:, :2])
        with pytest.raises(ValueError, match="tilted must have shape"):
            bad(t=(False, True))
        for window, err in [((2**31, 24), ValueError), ((24, 2**63), ValueError),
                            ((0, 24), ValueError), ((24.0, 24), TypeError)]:
            with pytest.raises(err, match="window"):
                bad(window=window)
        # enumeration: huge windows and huge banks are refused before allocating them
        for window, pattern in [((2**31 - 1, 1), "at most 16384 pixels"),
                                ((100_000, 100_000), "at most 16384 pixels"),
                                ((2**31, 2**31), "window height must be <="),
                                ((128, 128), "more than 16777216 features")]:
            for mode in ("basic", "skimage"):
                with pytest.raises(ValueError, match=pattern):
                    HaarFeatures(window, mode=mode)
    """)


# ------------------------------------------------------------------------------ grouping
def test_group_rectangles_extreme_coordinates():
    run_isolated(f"""
        import numpy as np
        import pytest
        from pydetect.cascade import group_rectangles

        # x differences that wrap in int32 (2**32 - 11 -> -11) must not make these similar
        far = np.array([[{INT_MIN}, 0, 10, 10], [{INT_MAX} - 10, 0, 10, 10]])
        rects, counts, _, _ = group_rectangles(far, 1, eps=2.0)
        assert rects.shape == (0, 4), rects
        rects, counts, _, _ = group_rectangles(far, 0, eps=2.0)
        np.testing.assert_array_equal(rects, far)

        # averages near INT_MAX: within float32 rounding (256 there) of the exact mean, never
        # wrapped to negative values
        near = np.array([[{INT_MAX} - 200, {INT_MAX} - 200, 100, 100]] * 3
                        + [[{INT_MAX} - 190, {INT_MAX} - 190, 100, 100]] * 3)
        rects, counts, _, _ = group_rectangles(near, 2)
        assert counts.tolist() == [6]
        assert (np.abs(rects[0, :2].astype(np.int64) - ({INT_MAX} - 195)) <= 256).all(), rects
        np.testing.assert_array_equal(rects[0, 2:], [100, 100])
        # sizes near INT_MAX: sums of x + width and width + height no longer wrap
        huge = np.array([[0, 0, {INT_MAX}, {INT_MAX}]] * 3
                        + [[5, 5, {INT_MAX} - 5, {INT_MAX} - 5]] * 2)
        rects, counts, _, _ = group_rectangles(huge, 1)
        assert counts.tolist() == [5]
        assert rects[0, 2] > 2**31 - 2**8
        # a huge eps makes everything one cluster (width * eps overflows int)
        rects, counts, _, _ = group_rectangles(near, 1, eps=1e308)
        assert counts.tolist() == [6]
    """)


def test_group_rectangles_rejects_bad_values():
    run_isolated(f"""
        import numpy as np
        import pytest
        from pydetect.cascade import group_rectangles

        good = np.array([[10, 10, 20, 20]] * 3)
        for rects, pattern in [(good + 0.5, "rects must hold integers"),
                               (np.where(good == 10, 2**31, good), "rects must hold values in"),
                               (np.where(good == 10, 2**32 + 10, good),
                                "rects must hold values in"),
                               (np.where(good == 10, -2**63, good), "rects must hold values in"),
                               (np.where(good == 10, np.nan, good), "rects must hold integers"),
                               (np.where(good == 10, np.inf, good), "rects must hold integers"),
                               (good[:, :3], "rects must have shape")]:
            with pytest.raises(ValueError, match=pattern):
                group_rectangles(rects)
        with pytest.raises(TypeError, match="rects"):
            group_rectangles(good.astype(str))
        with pytest.raises(ValueError, match="levels must hold values in"):
            group_rectangles(good, levels=[2**40, 0, 0])
        with pytest.raises(ValueError, match="levels must have shape"):
            group_rectangles(good, levels=[0, 0])
        with pytest.raises(ValueError, match="weights must be finite"):
            group_rectangles(good, weights=[np.nan, 0, 0])
        for v in (2**31, 2**63, -(2**63)):
            with pytest.raises(ValueError, match="min_neighbors"):
                group_rectangles(good, v)
        for v in (float("nan"), float("inf"), 10**400, 0.0, -1.0):
            with pytest.raises(ValueError, match="eps"):
                group_rectangles(good, 1, eps=v)
        rects, counts, _, _ = group_rectangles(good, {INT_MAX})
        assert rects.shape == (0, 4)
        rects, counts, _, _ = group_rectangles(good, {INT_MIN})
        assert counts.tolist() == [1, 1, 1]
    """)


# ------------------------------------------------------------------------------ AdaBoost
def test_adaboost_labels_weights_and_trees():
    run_isolated(f"""
        import numpy as np
        import pytest
        import dataclasses

        from pydetect.cascade import AdaBoost, WeakTree

        rng = np.random.default_rng(0)
        X = rng.normal(size=(20, 3))
        y = np.where(X[:, 0] > 0, 1.0, -1.0)
        AdaBoost(2).fit(X, y)
        for bad in (np.nan, np.inf, -np.inf):
            yb = y.copy()
            yb[3] = bad
            with pytest.raises(ValueError, match="y must hold finite labels"):
                AdaBoost(2).fit(X, yb)
        yb = np.where(y > 0, 1.0, np.nan)  # two "classes", one of them NaN
        with pytest.raises(ValueError, match="y must hold finite labels"):
            AdaBoost(2).fit(X, yb)
        with pytest.raises(ValueError, match="y must have one label per row"):
            AdaBoost(2).fit(X, y.reshape(10, 2))
        with pytest.raises(TypeError, match="y must hold"):
            AdaBoost(2).fit(X, np.array([None] * 20))
        model = AdaBoost(2).fit(X, y)
        with pytest.raises(ValueError, match="y must hold finite labels"):
            model.score(X, np.full(20, np.nan))
        for w, pattern in [(np.full(20, 1e308), "finite sum"),
                           (np.where(y > 0, np.nan, 1.0), "sample_weight must be finite"),
                           (np.where(y > 0, np.inf, 1.0), "sample_weight must be finite"),
                           (np.zeros(20), "not all 0"),
                           (np.ones(21), "sample_weight must have shape")]:
            with pytest.raises(ValueError, match=pattern):
                AdaBoost(2).fit(X, y, sample_weight=w)
        Xb = X.copy()
        Xb[0, 0] = 1e308  # float32 inf
        with pytest.raises(ValueError, match="X must be finite"):
            AdaBoost(2).fit(Xb, y)
        # a hand-made tree whose node 1 points to itself looped for ever
        cyclic = WeakTree(np.array([1, 1]), np.array([-1, 1]), np.array([0, 0]),
                          np.zeros(2, np.float32), np.zeros((0, 8), np.int32), np.zeros(3))
        first = model.trees_[0]
        for tree, pattern in [(cyclic, "points back to node 1"),
                              (dataclasses.replace(cyclic, left=np.array([{INT_MIN}, -2])),
                               "child index {INT_MIN} out of range"),
                              (dataclasses.replace(cyclic, left=np.array([0, 0]), right=np.array([-1, 2])),
                               "child index 2 out of range"),
                              (dataclasses.replace(first, feature=np.array([-1])), "feature index -1"),
                              (dataclasses.replace(first, feature=np.array([3])), "feature index 3"),
                              (dataclasses.replace(first, leaves=np.zeros(1)), "needs 2 leaves")]:
            model.trees_ = [first, tree]
            with pytest.raises(ValueError, match=pattern):
                model.decision_function(X)
    """, timeout=60)


# ------------------------------------------------------------------------------ detector
def test_detect_scale_factor_and_sizes_extremes():
    run_isolated(f"""
        import os
        import numpy as np
        import pytest
        import cv2
        from pydetect.cascade import CascadeDetector, pyramid_scales, train_cascade

        det = CascadeDetector(os.path.join(cv2.data.haarcascades,
                                           "haarcascade_frontalface_default.xml"))
        img = np.random.default_rng(0).integers(0, 256, (120, 160), dtype=np.uint8)
        # cv2 loops for ever at 1 + 1e-12: the level count is refused up front
        for sf in (1 + 1e-12, 1 + 2**-52, 1.0001):
            with pytest.raises(ValueError, match=r"scale_factor=.* levels"):
                det.detect(img, scale_factor=sf)
            with pytest.raises(ValueError, match=r"scale_factor=.* levels"):
                pyramid_scales((24, 24), (160, 120), sf)
        for sf in (1.0, 0.5, -1.0, float("nan"), float("inf"), -float("inf"), 10**400):
            with pytest.raises(ValueError, match="scale_factor"):
                det.detect(img, scale_factor=sf)
        for sf in ("1.1", True, None):
            with pytest.raises(TypeError, match="scale_factor"):
                det.detect(img, scale_factor=sf)
        assert len(pyramid_scales((24, 24), (160, 120), 1e308)) == 1
        det.detect(img, scale_factor=1e308)
        # window sizes up to int64's range: plain comparisons, no OverflowError; beyond it, a
        # ValueError naming the argument (every integer parameter stops at int64)
        largest = det.detect(img, 1.1, 0, min_size=(161, 121)).boxes
        for size in ({INT_MAX}, 2**63 - 1, (2**63 - 1, 1), (1, 2**63 - 1)):
            np.testing.assert_array_equal(det.detect(img, 1.1, 0, min_size=size).boxes, largest)
        everything = det.detect(img, 1.1, 0).boxes
        for size in ({INT_MAX}, 2**63 - 1, (2**63 - 1, 2**63 - 1)):
            np.testing.assert_array_equal(det.detect(img, 1.1, 0, max_size=size).boxes, everything)
        for name in ("min_size", "max_size"):
            for size in (2**63, (2**63, 1), 10**30):
                with pytest.raises(ValueError, match=name):
                    det.detect(img, **{{name: size}})
        for size in (-1, -(2**63), (24, -1)):
            with pytest.raises(ValueError, match="min_size"):
                det.detect(img, min_size=size)
        with pytest.raises(TypeError, match="max_size"):
            det.detect(img, max_size=1e308)
        for mn in (2**31, 2**63, -(2**63)):
            with pytest.raises(ValueError, match="min_neighbors"):
                det.detect(img, min_neighbors=mn)
        assert len(det.detect(img, min_neighbors={INT_MAX})) == 0
        for args, err in [(((2**63 - 1, 24), (160, 120)), None), (((2**63, 24), (160, 120)), ValueError),
                          (((0, 24), (160, 120)), ValueError),
                          (((24, 24), (160, -1)), ValueError), ((24, (160, 120)), TypeError)]:
            if err is None:
                assert pyramid_scales(*args) == []
            else:
                with pytest.raises(err):
                    pyramid_scales(*args)
        # training scans with the same pyramid rule and checks it before training anything
        pos = np.random.default_rng(1).integers(0, 256, (4, 24, 24), dtype=np.uint8)
        for sf in (float("nan"), 1 + 1e-12):
            with pytest.raises(ValueError, match="scale_factor"):
                train_cascade(pos, [img], scale_factor=sf, progress=False)
    """, timeout=120)
