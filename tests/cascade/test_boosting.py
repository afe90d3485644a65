"""AdaBoost (discrete / real / gentle, stumps and depth-2 trees) vs a brute-force reference."""

import numpy as np
import pytest

import _reference_training as ref
from pydetect.cascade.boosting import AdaBoost


def _problem(seed, n=40, f=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    y = np.where(X[:, 0] + 0.5 * X[:, 1] ** 2 + 0.5 * rng.normal(size=n) > 0.3, 1, -1)
    X[:, 4] = np.round(X[:, 4])  # a feature with many tied values
    return X, y


@pytest.mark.parametrize("algorithm", ["gentle", "discrete", "real"])
@pytest.mark.parametrize("max_depth", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(algorithm, max_depth, seed):
    X, y = _problem(seed)
    expected = ref.adaboost(X, y, 10, algorithm, max_depth, trim_rate=0.95)
    model = AdaBoost(10, algorithm=algorithm, max_depth=max_depth)
    for k, _ in enumerate(model.iter_fit(X, y)):
        np.testing.assert_allclose(model.train_scores_, expected[k], rtol=0, atol=1e-9)
    # the exported trees reproduce the training scores
    np.testing.assert_array_equal(model.decision_function(X), model.train_scores_)


def test_no_trimming_matches_reference():
    X, y = _problem(5, n=30)
    expected = ref.adaboost(X, y, 6, "gentle", 2, trim_rate=1.0)
    model = AdaBoost(6, max_depth=2, weight_trim_rate=1.0).fit(X, y)
    np.testing.assert_allclose(model.train_scores_, expected[-1], atol=1e-9)


def test_hand_worked_stump():
    # one feature, separable at 2.5: the gentle stump outputs the class means -1 / +1
    X = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)
    y = np.array([0, 0, 1, 1])
    model = AdaBoost(1, weight_trim_rate=0).fit(X, y)
    tree = model.trees_[0]
    assert list(tree.left) == [0] and list(tree.right) == [-1] and list(tree.feature) == [0]
    assert tree.threshold[0] == np.float32(2.5)
    np.testing.assert_allclose(tree.leaves, [-1.0, 1.0])
    np.testing.assert_array_equal(model.predict(X), y)
    # threshold semantics: x < thr goes left, as in OpenCV
    assert model.decision_function(np.array([[2.5]], np.float32))[0] == 1.0
    assert model.decision_function(np.array([[np.nextafter(np.float32(2.5), 0)]], np.float32))[0] == -1.0


def _walk(tree, x):
    """A tree's value on one sample, walked in plain Python (the reference)."""
    k = 0
    while True:
        k = tree.left[k] if x[tree.feature[k]] < tree.threshold[k] else tree.right[k]
        if k <= 0:
            return float(tree.leaves[-k])


@pytest.mark.parametrize("max_depth", [1, 2])
def test_decision_function_on_new_samples_matches_a_plain_walk(max_depth):
    X, y = _problem(7, n=60)
    model = AdaBoost(12, max_depth=max_depth).fit(X, y)
    X_new = np.random.default_rng(8).normal(size=(50, X.shape[1])).astype(np.float32)
    X_new[:5] = X[:5]  # samples on the trained thresholds' sides exactly
    expected = [sum(_walk(t, x) for t in model.trees_) for x in X_new]
    np.testing.assert_array_equal(model.decision_function(X_new), expected)


def test_depth2_solves_xor():
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(200, 2)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    # an additive model of stumps cannot represent XOR; depth-2 trees can
    for algorithm in ["gentle", "discrete", "real"]:
        stumps = AdaBoost(30, algorithm=algorithm, max_depth=1).fit(X, y)
        trees = AdaBoost(30, algorithm=algorithm, max_depth=2).fit(X, y)
        assert stumps.score(X, y) < 0.8 and trees.score(X, y) > stumps.score(X, y) + 0.15


def test_accuracy_vs_sklearn():
    sk = pytest.importorskip("sklearn.ensemble", reason="scikit-learn's AdaBoost is the peer")
    tree = pytest.importorskip("sklearn.tree")
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.make_classification(n_samples=600, n_features=20, n_informative=6,
                                        random_state=0)
    Xtr, ytr, Xte, yte = X[:400], y[:400], X[400:], y[400:]
    peer = sk.AdaBoostClassifier(tree.DecisionTreeClassifier(max_depth=1), n_estimators=50,
                                 random_state=0).fit(Xtr, ytr)
    peer_acc = peer.score(Xte, yte)
    # 200 held-out samples: one standard error of an accuracy near 0.78 is ~0.03
    for algorithm in ["gentle", "discrete", "real"]:
        for rate in [0.95, 1.0]:
            ours = AdaBoost(50, algorithm=algorithm, weight_trim_rate=rate).fit(Xtr, ytr)
            assert ours.score(Xte, yte) >= peer_acc - 0.04, (algorithm, rate)


def test_deterministic_across_threads():
    import pydetect

    X, y = _problem(7, n=300, f=700)
    before = pydetect.get_num_threads()
    try:
        pydetect.set_num_threads(1)
        a = AdaBoost(5, max_depth=2).fit(X, y)
        pydetect.set_num_threads(2)
        b = AdaBoost(5, max_depth=2).fit(X, y)
    finally:
        pydetect.set_num_threads(before)
    for ta, tb in zip(a.trees_, b.trees_):
        for name in ("left", "right", "feature", "threshold", "leaves"):
            np.testing.assert_array_equal(getattr(ta, name), getattr(tb, name))


def test_sample_weight_and_labels():
    X, y = _problem(2)
    labels = np.where(y > 0, "face", "clutter")
    a = AdaBoost(4).fit(X, labels)
    assert list(a.classes_) == ["clutter", "face"]
    assert set(a.predict(X)) <= {"clutter", "face"}
    b = AdaBoost(4).fit(X, y, sample_weight=np.full(len(y), 3.0))
    np.testing.assert_allclose(a.train_scores_, b.train_scores_, atol=1e-12)


def test_constant_features_give_constant_tree():
    X = np.ones((6, 3), np.float32)
    y = np.array([1, 1, 1, -1, -1, 1])
    model = AdaBoost(2).fit(X, y)
    assert np.ptp(model.decision_function(X)) == 0


def test_bad_input():
    X, y = _problem(0)
    with pytest.raises(ValueError, match="two classes"):
        AdaBoost(2).fit(X, np.ones(len(y)))
    with pytest.raises(ValueError, match="one label per row"):
        AdaBoost(2).fit(X, y[:-1])
    with pytest.raises(ValueError, match="finite"):
        bad = X.copy()
        bad[0, 0] = np.nan
        AdaBoost(2).fit(bad, y)
    with pytest.raises(ValueError, match="algorithm"):
        AdaBoost(2, algorithm="logit").fit(X, y)
    with pytest.raises(ValueError, match="max_depth"):
        AdaBoost(2, max_depth=3).fit(X, y)
    with pytest.raises(ValueError, match="weight_trim_rate"):
        AdaBoost(2, weight_trim_rate=1.5).fit(X, y)
    with pytest.raises(ValueError, match="sample_weight"):
        AdaBoost(2).fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="not fitted"):
        AdaBoost(2).predict(X)
    with pytest.raises(ValueError, match="shape"):
        AdaBoost(2).fit(X[:, 0], y)
    model = AdaBoost(2).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :3])
