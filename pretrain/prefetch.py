"""Background preparation of the next steps' crops while the network computes.

Decoding JPEGs and warping ~1000 crops per step is pure OpenCV/numpy work that releases the GIL,
so threads are enough: `workers` threads keep up to `depth` future steps in flight. A job is a
pure function of its step (its generator is seeded from (seed, rank, step) by the caller), so the
result does not depend on which thread ran it or in what order: a resumed run prepares exactly
the batches the uninterrupted one did.

`wait_s` is the time the main loop spent blocked waiting for a batch: the data cost that was NOT
hidden behind the network (the benchmark's `data_fraction`).
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


class Prefetcher:
    def __init__(self, job: Callable[[int], object], start: int, stop: int, workers: int, depth: int):
        """`job(step)` makes the batch of `step`; steps are consumed in order start..stop-1."""
        self._job = job
        self._next_submit = start
        self._stop = stop
        self._depth = max(1, depth)
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="prefetch")
        self._futures: dict[int, Future] = {}
        self.wait_s = 0.0
        self._fill()

    def _fill(self) -> None:
        while self._next_submit < self._stop and len(self._futures) < self._depth:
            step = self._next_submit
            self._futures[step] = self._pool.submit(self._job, step)
            self._next_submit += 1

    def get(self, step: int):
        """The batch of `step` (blocks until it is ready; a worker's exception is raised here)."""
        if step not in self._futures:
            raise KeyError(f"step {step} was not scheduled (next to submit: {self._next_submit})")
        fut = self._futures.pop(step)
        # Top up first, so the workers start on the step after next while we wait.
        self._fill()
        t0 = time.perf_counter()
        result = fut.result()
        self.wait_s += time.perf_counter() - t0
        return result

    def close(self) -> None:
        for fut in self._futures.values():
            fut.cancel()
        self._futures.clear()
        self._pool.shutdown(wait=True)
