"""train_loop's evaluation during training (the best state kept, across resumes) and its
frozen-then-trained parameters (frozen before the switch, trained after, across resumes)."""

import pytest

torch = pytest.importorskip("torch")

from pydetect import engine  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TwoLayers(torch.nn.Module):
    """A loss-dict model: a "body" and a "head" fitted by least squares, a random draw per step."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(3, 3)
        self.head = torch.nn.Linear(3, 1)

    def forward(self, x, y):
        noise = torch.randn(len(x)) * 0.01
        return {"loss_mse": ((self.head(self.body(x)).squeeze(1) + noise - y) ** 2).mean()}


def batches(fail_at=None):
    def sample(it, rank, world, rng):
        if it == fail_at:
            raise KeyboardInterrupt("simulated kill")
        x = torch.from_numpy(rng.normal(size=(8, 3))).float()
        return x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    return sample


class Scripted:
    """An ``evaluate`` whose scores follow a script (by call, from ``offset``), keeping a copy of
    the state it was shown each time."""

    def __init__(self, scores, offset=0):
        self.scores, self.calls, self.seen = scores, offset, []

    def __call__(self, model):
        assert not model.training and not torch.is_grad_enabled()
        torch.randn(5)  # a draw here must not change training (torch's random state is restored)
        self.seen.append({k: v.clone() for k, v in model.state_dict().items()})
        score = self.scores[self.calls]
        self.calls += 1
        return {"AP": score, "AP50": 1.0 - score}


def run(path, fail_at=None, **kw):
    torch.manual_seed(0)
    model = TwoLayers()
    params = dict(max_iter=10, seconds=1e9, lr=0.05, seed=1, checkpoint_path=path, checkpoint_every=3)
    params.update(kw)
    return model, engine.train_loop(model, batches(fail_at), **params)


def same_state(a, b):
    return len(a) == len(b) and all(torch.equal(a[k], b[k]) for k in a)


SCRIPT = [0.1, 0.5, 0.3, 0.2, 0.4]  # at iterations 2, 4, 6, 8, 10: the best is the second


@pytest.mark.parametrize("ema_decay", [None, 0.8])
def test_the_best_evaluated_state_is_kept_and_survives_a_kill(tmp_path, ema_decay):
    plain, _ = run(tmp_path / "plain.ckpt", ema_decay=ema_decay)
    evaluate = Scripted(SCRIPT)
    model, hist = run(tmp_path / "a.ckpt", evaluate=evaluate, eval_every=2, ema_decay=ema_decay)
    assert [v["iteration"] for v in hist["val"]] == [2, 4, 6, 8, 10]
    assert [v["AP"] for v in hist["val"]] == SCRIPT
    assert hist["best"] == {"iteration": 4, "AP": 0.5, "AP50": 0.5}
    assert same_state(model.state_dict(), evaluate.seen[1])  # the state scored at iteration 4, not the last
    assert not same_state(model.state_dict(), evaluate.seen[-1])
    # Evaluating changed nothing in training: the last state scored is the plain run's end.
    assert same_state(evaluate.seen[-1], plain.state_dict())
    # Another metric picks another state.
    model50, hist50 = run(tmp_path / "b.ckpt", evaluate=Scripted(SCRIPT), eval_every=2, best_metric="AP50",
                          ema_decay=ema_decay)
    assert hist50["best"]["iteration"] == 2
    # Killed at iteration 7: the checkpoint written after the evaluation at 6 holds the scores
    # and the best state; the resumed run ends with the uninterrupted run's model and history.
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "c.ckpt", fail_at=7, evaluate=Scripted(SCRIPT), eval_every=2, ema_decay=ema_decay)
    saved = engine.load_checkpoint(tmp_path / "c.ckpt")
    assert saved["iteration"] == 6 and [v["iteration"] for v in saved["val"]] == [2, 4, 6]
    assert saved["best"]["entry"]["iteration"] == 4
    resumed, rhist = run(tmp_path / "c.ckpt", evaluate=Scripted(SCRIPT, offset=3), eval_every=2,
                         ema_decay=ema_decay)
    assert rhist["resumed_from"] == 6
    assert rhist["val"] == hist["val"] and rhist["best"] == hist["best"]
    assert same_state(resumed.state_dict(), model.state_dict())


def test_an_evaluation_at_the_end_only_and_a_finished_run_rerun(tmp_path):
    evaluate = Scripted([0.2])
    _, hist = run(tmp_path / "a.ckpt", evaluate=evaluate, max_iter=5)
    assert hist["val"] == [{"iteration": 5, "AP": 0.2, "AP50": 0.8}] and hist["best"]["iteration"] == 5
    again = Scripted([])  # resuming a finished run evaluates nothing more
    model, hist2 = run(tmp_path / "a.ckpt", evaluate=again, max_iter=5)
    assert again.calls == 0 and hist2["val"] == hist["val"]
    assert same_state(model.state_dict(), evaluate.seen[0])
    with pytest.raises(KeyError, match="best_metric"):
        run(tmp_path / "b.ckpt", evaluate=Scripted([0.2]), max_iter=2, best_metric="AR100")


def test_frozen_parameters_train_from_the_switch_and_a_resume_after_it_continues_exactly(tmp_path):
    torch.manual_seed(0)
    initial = TwoLayers().body.state_dict()
    seen = {}

    def run_frozen(path, fail_at=None, **kw):
        torch.manual_seed(0)
        model = TwoLayers()
        grads = {}  # per step: whether the body required gradients
        kw = dict(max_iter=10, seconds=1e9, lr=0.05, seed=1, checkpoint_path=path, checkpoint_every=2,
                  frozen=list(model.body.parameters()), frozen_until=0.5, prefetch=0, **kw)

        def record(module, inputs, output):
            grads[len(grads)] = model.body.weight.requires_grad

        hook = model.head.register_forward_hook(record)
        try:
            hist = engine.train_loop(model, batches(fail_at), **kw)
        finally:
            hook.remove()
            seen[str(path)] = grads
        return model, hist

    straight, hist = run_frozen(tmp_path / "a.ckpt")
    assert hist["unfrozen_at"] == 5
    assert list(seen[str(tmp_path / "a.ckpt")].values()) == [False] * 5 + [True] * 5
    assert not torch.equal(straight.body.weight, initial["weight"])  # it trained after the switch
    assert all(p.requires_grad for p in straight.parameters())  # left as given
    # Killed at 5 (checkpoint at 4, before the switch): the body is the initial one there.
    with pytest.raises(KeyboardInterrupt):
        run_frozen(tmp_path / "b.ckpt", fail_at=5)
    saved = engine.load_checkpoint(tmp_path / "b.ckpt")
    assert saved["iteration"] == 4 and saved["unfrozen_at"] is None
    assert torch.equal(saved["model"]["body.weight"], initial["weight"])
    assert sorted(saved["optimizer"]["state"]) == [2, 3]  # moments of the head only, none of the frozen body
    # Killed at 7 (checkpoint at 6, after the switch): the resumed run trains the body at once.
    with pytest.raises(KeyboardInterrupt):
        run_frozen(tmp_path / "c.ckpt", fail_at=7)
    assert engine.load_checkpoint(tmp_path / "c.ckpt")["unfrozen_at"] == 5
    for path, start in (("b.ckpt", 4), ("c.ckpt", 6)):
        resumed, rhist = run_frozen(tmp_path / path)
        assert rhist["resumed_from"] == start and rhist["unfrozen_at"] == 5
        assert all(seen[str(tmp_path / path)].values()) == (start >= 5)
        assert same_state(resumed.state_dict(), straight.state_dict())


def test_frozen_parameters_must_be_trainable(tmp_path):
    model = TwoLayers()
    model.body.weight.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        engine.train_loop(model, batches(), max_iter=2, seconds=1e9, lr=0.1, frozen=[model.body.weight],
                          frozen_until=0.5)
