"""Training batches drawn ahead of the training loop, on a background thread.

A detector's ``sample_batch`` (draw images, augment them, convert them to tensors) runs on the
CPU between two optimiser steps; here it runs while the previous step computes, so that no step
waits for its data. The batches and their order are exactly those of drawing them in the loop:
one thread draws them one after another with the loop's own generator, and each batch comes
with the generator's state after it was drawn, which is what a checkpoint stores (so a resumed
run draws the same batches as an uninterrupted one).
"""

from __future__ import annotations

import queue
import threading

__all__ = ["BatchPrefetcher"]


class BatchPrefetcher:
    """Calls ``sample_batch(iteration, rank, world, rng)`` for iterations ``start``,
    ``start + 1``, ... on a daemon thread, at most ``depth`` batches ahead of :meth:`next`.

    Use as a context manager (the thread stops on exit). ``depth=0`` draws each batch in
    :meth:`next` itself, on the calling thread.

    Parameters
    ----------
    sample_batch : callable
        As :func:`pydetect.engine.train_loop`'s; it must draw its randomness from ``rng``
        only (torch's global generator is shared by threads).
    start, rank, world : int
    rng : numpy.random.Generator
        Used by the drawing thread only, from construction on.
    depth : int, default 2
    """

    def __init__(self, sample_batch, start, rank, world, rng, depth=2):
        self._sample = sample_batch
        self._next_iteration = int(start)
        self._rank, self._world, self._rng = rank, world, rng
        self._depth = int(depth)
        self._queue = queue.Queue(maxsize=max(self._depth, 1))
        self._stop = threading.Event()
        self._thread = None
        #: The generator's state after the last batch :meth:`next` returned (a checkpoint's).
        self.rng_state = rng.bit_generator.state

    def __enter__(self):
        if self._depth > 0:
            self._thread = threading.Thread(target=self._run, name="pydetect-batches", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():  # unblock a put waiting for room
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)
        return False

    def _draw(self):
        batch = self._sample(self._next_iteration, self._rank, self._world, self._rng)
        self._next_iteration += 1
        return batch, self._rng.bit_generator.state

    def _run(self):
        while not self._stop.is_set():
            try:
                item = (self._draw(), None)
            except BaseException as exc:  # handed to the training thread, which raises it
                item = (None, exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[1] is not None:
                return

    def next(self):
        """The next batch (in iteration order); re-raises an error of ``sample_batch``."""
        if self._thread is None:
            batch, self.rng_state = self._draw()
            return batch
        drawn, error = self._queue.get()
        if error is not None:
            raise error
        batch, self.rng_state = drawn
        return batch
