"""Which rank owns which domains, and which domain each rank trains at each step.

Sharding: domains are dealt greedily, largest first (by usable training frames), each to the rank
with the fewest frames so far (ties: the lower rank). This is the classic LPT rule: the heaviest
shard is within 4/3 of the optimum, and it is a pure function of the domain list and the world
size, so every rank computes the same assignment without talking to the others.

Steps: a cycle (one epoch in the logs) visits every domain once, like MDNet's. Horovod needs every
rank to issue the same number of allreduces, so every rank runs `steps_per_cycle` = the largest
shard's domain count each cycle; a rank with fewer domains visits some of its own domains twice
(chosen at random per cycle). Within a cycle each rank visits its domains in a random order drawn
from (seed, rank, cycle), so a step's domain is a pure function of (seed, rank, step) too: nothing
to carry across a restart.
"""
from __future__ import annotations

import heapq
import threading

import numpy as np


def shard_domains(sizes, world_size: int) -> list[list[int]]:
    """Domain indices per rank (each list sorted); `sizes` are the domains' training-frame counts."""
    sizes = [int(s) for s in sizes]
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    if len(sizes) < world_size:
        raise ValueError(f"{len(sizes)} domain(s) cannot be shared by {world_size} ranks: every rank "
                         f"needs at least one domain; use fewer ranks or more sequences")
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    shards: list[list[int]] = [[] for _ in range(world_size)]
    # Least frames first; among equals the rank with fewer domains, then the lower rank, so
    # equal-size domains spread evenly. A heap of (frames, domains, rank) gives that rank in
    # O(log W) per domain. The scan of every rank per domain it replaces (same assignment) took
    # 0.67 s for 10,000 domains on 256 ranks and 6.6 s for 100,000, on every rank at every start;
    # the heap 0.05 s and 0.46 s (docs/pretraining.md, Scale).
    heap = [(0, 0, r) for r in range(world_size)]
    for i in order:
        load, count, r = heap[0]
        shards[r].append(i)
        heapq.heapreplace(heap, (load + sizes[i], count + 1, r))
    return [sorted(s) for s in shards]


def steps_per_cycle(shards) -> int:
    return max(len(s) for s in shards)


def cycle_schedule(shard, steps: int, seed: int, rank: int, cycle: int) -> list[int]:
    """The domain (index) this rank trains at each of the `steps` steps of `cycle`."""
    rng = np.random.default_rng([seed, rank, cycle, 0x5EED])
    order = list(rng.permutation(np.asarray(shard)))
    extra = steps - len(order)
    if extra > 0:
        # Fill with distinct domains where possible so no domain gets three visits before all
        # got two.
        fill = []
        while len(fill) < extra:
            fill.extend(rng.permutation(np.asarray(shard)))
        order.extend(fill[:extra])
        # Mix the repeats in, so a short shard's extra visits are not all at the end of a cycle.
        order = list(rng.permutation(np.asarray(order)))
    return [int(d) for d in order]


class StepPlanner:
    """Maps a global step to (cycle, domain index) for one rank; caches one cycle at a time."""

    def __init__(self, shard, steps: int, seed: int, rank: int):
        self.shard, self.steps, self.seed, self.rank = list(shard), steps, seed, rank
        self._cycle, self._order = None, None
        self._lock = threading.Lock()  # prefetch workers ask concurrently, maybe across a cycle boundary

    def domain(self, step: int) -> int:
        cycle = step // self.steps
        with self._lock:
            if cycle != self._cycle:
                self._cycle = cycle
                self._order = cycle_schedule(self.shard, self.steps, self.seed, self.rank, cycle)
            return self._order[step % self.steps]


def describe_shards(shards, names, sizes) -> list[str]:
    lines = []
    for r, shard in enumerate(shards):
        frames = sum(int(sizes[i]) for i in shard)
        shown = ", ".join(names[i] for i in shard[:12]) + (f", ... (+{len(shard) - 12})" if len(shard) > 12 else "")
        lines.append(f"rank {r}: {len(shard)} domains, {frames} training frames: {shown}")
    return lines
