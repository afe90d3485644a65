"""The training loop every CNN detector uses: AdamW, warm-up + cosine schedule bounded by
iterations and wall time, gradient clipping, weight averaging, checkpoints and resume, DDP."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import torch

from pydetect._validation import check_fraction, check_int
from pydetect.engine.checkpoint import cuda_rng_state, load_checkpoint, restore_cuda_rng, restoring, save_checkpoint
from pydetect.engine.devices import distributed_info
from pydetect.engine.prefetch import BatchPrefetcher
from pydetect.engine.progress import progress_bar

__all__ = ["lr_factor", "schedule_fraction", "check_ema_decay", "WeightAverage", "train_loop"]


def lr_factor(frac: float, warmup: float = 0.02) -> float:
    """Linear warm-up over the first ``warmup`` of training, then cosine decay to 2%."""
    if frac < warmup:
        return 0.1 + 0.9 * frac / warmup
    t = min((frac - warmup) / max(1 - warmup, 1e-9), 1.0)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t))


def schedule_fraction(it: int, max_iter: int, elapsed: float, seconds: float) -> float:
    """How far training is, in [0, 1]: the iteration count's fraction, unless the time budget is
    ahead of it by more than one iteration's share (then the time's).

    The time counts only once it leads by a whole iteration, so that a run its iteration count
    ends (a budget of seconds it never reaches) gets exactly the same learning rates on every
    machine and every run: with ``max(it / max_iter, elapsed / seconds)`` the first iteration's
    rate would depend on the microseconds before it, and that difference grows through training.
    """
    by_time = elapsed / seconds
    return by_time if by_time > (it + 1) / max_iter else it / max_iter


def check_ema_decay(value):
    """``None`` or a decay strictly between 0 and 1 (what :class:`WeightAverage` accepts)."""
    if value is not None and not 0.0 < check_fraction(value, "ema_decay") < 1.0:
        raise ValueError(f"ema_decay must be None or in (0, 1), got {value!r}")
    return value


class WeightAverage:
    """Exponential moving average of a model's floating-point state (parameters and batch-norm
    statistics), updated after each optimiser step (Polyak averaging).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates so that the
    first iterations, whose weights are far from the final ones, fade out quickly.
    """

    def __init__(self, model, decay):
        self.decay = float(decay)
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model):
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        live = model.state_dict()
        keys = list(self.state)
        torch._foreach_lerp_([self.state[k] for k in keys], [live[k].detach() for k in keys], 1.0 - d)

    def copy_to(self, model):
        """Loads the averaged state into ``model`` (integer buffers are left as they are)."""
        model.load_state_dict(self.state, strict=False)

    def state_dict(self):
        return {"decay": self.decay, "updates": self.updates, "state": self.state}

    def load_state_dict(self, saved):
        """Restores :meth:`state_dict`'s values onto the model's device (checkpoints load on
        the CPU); a key the model lacks is a KeyError."""
        self.decay, self.updates = float(saved["decay"]), int(saved["updates"])
        self.state = {k: v.to(self.state[k].device, copy=True) for k, v in saved["state"].items()}


def _evaluated_state(model) -> dict:
    """A CPU copy of ``model``'s whole state (what :func:`train_loop` keeps of its best evaluation)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train_loop(model, sample_batch, *, max_iter, seconds, lr, weight_decay=1e-4, warmup=0.02,
               seed=0, checkpoint_path=None, checkpoint_every=100, resume=True, progress=False,
               clip_grad=10.0, ema_decay=None, desc="train", prefetch=2, evaluate=None, eval_every=None,
               best_metric="AP", frozen=(), frozen_until=0.0):
    """Trains ``model`` (a loss-dict module) with AdamW on minibatches from ``sample_batch``.

    Parameters
    ----------
    model : torch.nn.Module
        ``model(*batch) -> dict of losses``, on the device to train on (its parameters'; under
        torchrun a CUDA model trains with NCCL, a CPU one with gloo).
    sample_batch : callable (iteration, rank, world_size, numpy Generator) -> tuple of args
        on the model's device; its randomness comes from the Generator only, and it must not
        read the model (with ``prefetch``, it runs on a background thread, ahead of the steps)
    max_iter : int
        Iterations (the schedule's length); ``seconds`` caps the wall time too, and the
        schedule follows the iteration count, or the time once it leads
        (:func:`schedule_fraction`).
    checkpoint_path : path, optional
        Written atomically every ``checkpoint_every`` iterations and at the end (model,
        optimiser, iteration, elapsed time, random states, the model's GPU's too when it
        trains on one, the iteration ``frozen`` began training at, and with ``evaluate`` the
        scores so far and the best state: tensors and plain values only, read back by
        :func:`load_checkpoint`).
        With ``resume``, an existing checkpoint is loaded and training continues from it, its
        elapsed time counting towards ``seconds``.
    ema_decay : float in (0, 1), optional
        Keep a :class:`WeightAverage` of the weights and load it into ``model`` when
        training ends (the checkpoint keeps the live weights and the average, so a resumed
        run continues both).
    prefetch : int, default 2
        Batches drawn ahead on a background thread while the model computes
        (:class:`~pydetect.engine.prefetch.BatchPrefetcher`; the same batches in the same
        order as without); 0 draws each batch on the training thread.
    evaluate : callable (model) -> dict of floats, optional
        Scores the model (in eval mode, without gradients, torch's random state restored
        afterwards so that training continues as without it) every ``eval_every`` iterations
        and when training ends, e.g. COCO AP on a validation set. With ``ema_decay`` the
        averaged weights are scored (they are what training returns). Each result goes into
        ``history["val"]`` with its iteration; the state of the best by ``best_metric``
        (higher is better, the earlier on a tie) is kept and loaded into ``model`` at the end.
        The checkpoint, written after each evaluation, holds the scores and the best state, so
        that a resumed run ends with the same model. Its time counts towards ``seconds``.
    eval_every : int, optional
        Iterations between evaluations (None: only when training ends).
    best_metric : str, default "AP"
        The key of ``evaluate``'s dict that picks the best state.
    frozen : sequence of parameters, optional
        Parameters of ``model`` (requiring gradients) that stay frozen until the schedule
        (:func:`schedule_fraction`) reaches ``frozen_until``, then train, e.g. a backbone
        fine-tuned after the new heads have settled. The optimiser holds them from the start
        (AdamW skips a parameter without a gradient, so its moments start at the switch) and
        the checkpoint records the switch: a run resumed after it trains them.
    frozen_until : float in [0, 1), default 0
        The schedule fraction from which ``frozen`` trains (0: from the start).

    Returns
    -------
    history : dict
        {"iterations", "max_iter" (fewer iterations than it: ``seconds`` ended the run), "seconds",
        "losses" (last 50 totals), "resumed_from", "unfrozen_at"
        (the iteration ``frozen`` began training at, None if it never did or there was none)},
        and with ``evaluate``: "val" (a list of ``{"iteration": i, **scores}``) and "best"
        (the entry whose state ``model`` holds at the end).

    Raises
    ------
    FloatingPointError
        On a NaN or infinite loss; the last checkpoint (if any) is left intact.
    """
    prefetch = check_int(prefetch, "prefetch", minimum=0)
    if eval_every is not None:
        eval_every = check_int(eval_every, "eval_every", minimum=1)
    frozen = list(frozen)
    frozen_until = check_fraction(frozen_until, "frozen_until")
    if any(not p.requires_grad for p in frozen):
        raise ValueError("frozen lists the parameters to train after frozen_until: each must require gradients")
    device = next(model.parameters()).device
    rank, world = distributed_info(device)
    # The optimiser holds the frozen parameters too: their state starts when they first get a gradient.
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                            weight_decay=weight_decay)
    rng = np.random.default_rng([seed, rank])
    torch.manual_seed(seed)
    check_ema_decay(ema_decay)
    it, elapsed_before, resumed_from, saved_average = 0, 0.0, None, None
    val_history, best, unfrozen_at = [], None, None
    if checkpoint_path is not None and resume and os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path)
        with restoring(checkpoint_path):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            it, elapsed_before = int(state["iteration"]), float(state["seconds"])
            if rank < len(state["numpy_rng"]):
                rng.bit_generator.state = state["numpy_rng"][rank]
            torch.set_rng_state(state["torch_rng"])
            restore_cuda_rng(state, device)
            saved_average = state.get("ema")
            unfrozen_at = state.get("unfrozen_at")
            if evaluate is not None:
                val_history = [dict(v) for v in state.get("val", [])]
                best = state.get("best")
                if best is not None:
                    best = {"entry": dict(best["entry"]), "state": best["state"]}
        resumed_from = it
    if frozen and unfrozen_at is None:
        for p in frozen:
            p.requires_grad_(False)
    else:
        unfrozen_at = unfrozen_at if frozen else None

    def wrap():
        if world == 1:
            return model
        # On GPUs, one device per process (NCCL); on CPUs, device_ids must be None (gloo). Built
        # again when frozen parameters start training: DDP reduces those that require gradients.
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    train_model = wrap()
    # Built after a resume so that, without a saved average, it starts from the loaded weights.
    average = WeightAverage(model, ema_decay) if ema_decay is not None else None
    if average is not None and saved_average is not None:
        with restoring(checkpoint_path):
            average.load_state_dict(saved_average)

    batches = BatchPrefetcher(sample_batch, it, rank, world, rng, depth=prefetch)

    def checkpoint(elapsed):
        if checkpoint_path is None or rank != 0:
            return
        rng_states = [batches.rng_state]  # after the last batch trained on, not the ones drawn ahead
        save_checkpoint(checkpoint_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                           "iteration": it, "seconds": elapsed,
                                           "numpy_rng": rng_states, "torch_rng": torch.get_rng_state(),
                                           "ema": average.state_dict() if average is not None else None,
                                           "unfrozen_at": unfrozen_at, "val": val_history, "best": best,
                                           **cuda_rng_state(device)})

    def run_evaluation():
        nonlocal best
        live = None
        if average is not None:  # score the averaged weights: they are what training returns
            live = {k: v.detach().clone() for k, v in model.state_dict().items()}
            average.copy_to(model)
        fork = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork), torch.no_grad():
            model.eval()
            scores = evaluate(model)
        entry = {"iteration": it, **{k: float(v) for k, v in scores.items()}}
        if best_metric not in entry:
            raise KeyError(f"evaluate returned no {best_metric!r} (best_metric) score: got {sorted(scores)}")
        val_history.append(entry)
        if best is None or entry[best_metric] > best["entry"][best_metric]:
            best = {"entry": dict(entry), "state": _evaluated_state(model)}
        if live is not None:
            model.load_state_dict(live)
        train_model.train()
        if bar is not None:
            bar.write(f"{desc} iteration {it}: val {best_metric} {entry[best_metric]:.4f} (best "
                      f"{best['entry'][best_metric]:.4f}, iteration {best['entry']['iteration']})")

    start = time.perf_counter()
    losses_hist = []
    bar = progress_bar(max_iter, desc, progress and rank == 0)
    if bar is not None and it:
        bar.update(it)
    train_model.train()
    with batches:
        while it < max_iter:
            elapsed = elapsed_before + time.perf_counter() - start
            frac = schedule_fraction(it, max_iter, elapsed, seconds)
            if frac >= 1:
                break
            if frozen and unfrozen_at is None and frac >= frozen_until:
                for p in frozen:
                    p.requires_grad_(True)
                unfrozen_at = it
                train_model = wrap()
                train_model.train()
            for group in opt.param_groups:
                group["lr"] = lr * lr_factor(frac, warmup)
            batch = batches.next()
            losses = train_model(*batch)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
                where = (f"the last checkpoint {checkpoint_path!s} is intact" if checkpoint_path
                         else "no checkpoint was written (pass checkpoint_dir to keep one)")
                raise FloatingPointError(f"non-finite training loss at iteration {it} ({detail}); "
                                         f"lower the learning rate; {where}")
            opt.zero_grad()
            loss.backward()
            if clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            opt.step()
            if average is not None:
                average.update(model)
            it += 1
            losses_hist.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k[5:]: f"{float(v.detach()):.3f}" for k, v in losses.items()})
            evaluated = evaluate is not None and eval_every is not None and it % eval_every == 0
            if evaluated:
                run_evaluation()
            # After an evaluation (its scores are kept), unless the end's checkpoint follows at once.
            if (evaluated and it < max_iter) or (checkpoint_every and it % checkpoint_every == 0):
                checkpoint(elapsed_before + time.perf_counter() - start)
    if evaluate is not None and (not val_history or val_history[-1]["iteration"] != it):
        run_evaluation()
    total = elapsed_before + time.perf_counter() - start
    checkpoint(total)
    if bar is not None:
        bar.close()
    for p in frozen:  # trainable as the model was given, whether or not training reached the switch
        p.requires_grad_(True)
    if average is not None:
        average.copy_to(model)
    history = {"iterations": it, "max_iter": max_iter, "seconds": total, "losses": losses_hist[-50:],
               "resumed_from": resumed_from, "unfrozen_at": unfrozen_at}
    if evaluate is not None:
        model.load_state_dict(best["state"])
        history.update(val=val_history, best=dict(best["entry"]))
    model.eval()
    return history
