"""Batches drawn ahead on a thread are the batches the loop would draw itself, in order, with
the generator state a checkpoint needs; errors and the end of training are handled."""

import threading

import numpy as np
import pytest
import torch

from pydetect.engine import train_loop
from pydetect.engine.checkpoint import load_checkpoint
from pydetect.engine.prefetch import BatchPrefetcher


def _sample(it, rank, world, rng):
    return it, int(rng.integers(1 << 30)), rng.normal(size=3)


def _consume(depth, count, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    with BatchPrefetcher(_sample, 5, 0, 1, rng, depth=depth) as batches:
        for _ in range(count):
            batch = batches.next()
            out.append((batch, batches.rng_state))
    return out


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_same_batches_and_generator_states_as_drawing_in_the_loop(depth):
    reference = _consume(0, 12)
    ahead = _consume(depth, 12)
    for (b0, s0), (b1, s1) in zip(reference, ahead):
        assert b0[:2] == b1[:2]
        np.testing.assert_array_equal(b0[2], b1[2])
        assert s0 == s1  # the state after the batch consumed, not after the ones drawn ahead
    assert [b[0] for b, _ in ahead] == list(range(5, 17))
    # the state after batch k is the state a fresh generator reaches after drawing k batches
    rng = np.random.default_rng(0)
    for _ in range(3):
        _sample(0, 0, 1, rng)
    assert ahead[2][1] == rng.bit_generator.state


def test_an_error_in_sample_batch_reaches_the_loop_after_the_good_batches():
    def sample(it, rank, world, rng):
        if it == 3:
            raise KeyError("bad image 3")
        return it

    with BatchPrefetcher(sample, 0, 0, 1, np.random.default_rng(0), depth=2) as batches:
        assert [batches.next() for _ in range(3)] == [0, 1, 2]
        with pytest.raises(KeyError, match="bad image 3"):
            batches.next()


def test_the_thread_stops_when_training_ends():
    before = {t.ident for t in threading.enumerate()}
    with BatchPrefetcher(_sample, 0, 0, 1, np.random.default_rng(0), depth=3) as batches:
        batches.next()
        started = [t for t in threading.enumerate() if t.ident not in before]
        assert any(t.name == "pydetect-batches" for t in started)
    assert not any(t.is_alive() for t in started if t.name == "pydetect-batches")


def _train(prefetch, tmp_path, max_iter=30, seconds=1e6):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)

    class Loss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x, y):
            return {"loss_mse": ((self.net(x) - y) ** 2).mean()}

    def sample(it, rank, world, rng):
        x = torch.from_numpy(rng.normal(size=(8, 3)).astype(np.float32))
        return x, x.sum(1, keepdim=True) * 0.5

    path = tmp_path / f"p{prefetch}.ckpt"
    train_loop(Loss(), sample, max_iter=max_iter, seconds=seconds, lr=0.05, checkpoint_path=path, checkpoint_every=7,
               prefetch=prefetch)
    return model.weight.detach().clone(), load_checkpoint(path)["numpy_rng"]


def test_train_loop_with_and_without_prefetching_trains_identically(tmp_path):
    w0, rng0 = _train(0, tmp_path)
    w2, rng2 = _train(2, tmp_path)
    torch.testing.assert_close(w0, w2, rtol=0, atol=0)
    assert rng0 == rng2
    with pytest.raises(ValueError, match="prefetch"):
        _train(-1, tmp_path)


def test_schedule_follows_iterations_unless_time_leads_by_an_iteration():
    from pydetect.engine.loop import schedule_fraction

    # A run its iteration count ends: the fraction is exactly it / max_iter, whatever the clock.
    for elapsed in (0.0, 1e-6, 0.3, 5.0):
        assert schedule_fraction(0, 100, elapsed, 1e6) == 0.0
        assert schedule_fraction(40, 100, elapsed, 1e6) == 0.4
    # Time ahead by less than one iteration's share: still the count.
    assert schedule_fraction(10, 100, 10.5, 100.0) == 0.1
    # Time ahead by more: the time (a wall-clock budget ends the run).
    assert schedule_fraction(10, 100, 50.0, 100.0) == 0.5
    assert schedule_fraction(10, 10_000, 100.0, 100.0) == 1.0


def test_a_run_bounded_by_its_iterations_is_reproducible(tmp_path):
    """Two runs of the same counted budget give bit-identical weights (the learning rate of the
    first steps must not depend on how long the setup took)."""
    import time

    # 50 s: far more than the 30 iterations take, but close enough that the time's fraction
    # (milliseconds / 50 s) would move the first steps' warm-up rate if it counted.
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    w_a, _ = _train(0, tmp_path / "a", seconds=50.0)
    time.sleep(0.2)
    w_b, _ = _train(0, tmp_path / "b", seconds=50.0)
    torch.testing.assert_close(w_a, w_b, rtol=0, atol=0)
