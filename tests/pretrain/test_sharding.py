"""Domain sharding and per-step schedules (pretrain/sharding.py)."""
import numpy as np
import pytest

from pretrain.sharding import StepPlanner, cycle_schedule, shard_domains, steps_per_cycle


def test_greedy_largest_first_balances_frames():
    sizes = [100, 90, 50, 40, 30, 20, 10, 5]
    shards = shard_domains(sizes, 2)
    loads = [sum(sizes[i] for i in s) for s in shards]
    assert sorted(i for s in shards for i in s) == list(range(8))
    assert abs(loads[0] - loads[1]) <= max(sizes[-3:])  # LPT: within the smallest items
    assert shard_domains(sizes, 2) == shards  # deterministic


def test_every_rank_gets_a_domain_or_a_clear_error():
    assert [len(s) for s in shard_domains([5, 5, 5], 3)] == [1, 1, 1]
    with pytest.raises(ValueError, match="at least one domain"):
        shard_domains([5, 5], 3)


def test_same_steps_per_cycle_for_unequal_shards():
    sizes = [1000, 10, 10, 10, 10]  # rank 0 gets the big one, rank 1 the four small ones
    shards = shard_domains(sizes, 2)
    assert sorted(len(s) for s in shards) == [1, 4]
    steps = steps_per_cycle(shards)
    assert steps == 4
    for r, shard in enumerate(shards):
        order = cycle_schedule(shard, steps, seed=0, rank=r, cycle=3)
        assert len(order) == steps and set(order) == set(shard)


def test_schedule_visits_each_domain_once_per_cycle_when_possible():
    shard = [2, 5, 7, 9]
    order = cycle_schedule(shard, 4, 0, 0, 0)
    assert sorted(order) == shard
    order = cycle_schedule(shard, 10, 0, 0, 0)
    counts = np.bincount(order)
    assert counts[shard].min() >= 2 and counts[shard].max() <= 3


def test_planner_is_a_function_of_seed_rank_step():
    a, b = StepPlanner([1, 2, 3], 3, 7, 1), StepPlanner([1, 2, 3], 3, 7, 1)
    assert [a.domain(s) for s in range(12)] == [b.domain(s) for s in range(12)]
    # Random access (a resumed run starts mid-cycle) gives the same answer as sequential access.
    c = StepPlanner([1, 2, 3], 3, 7, 1)
    assert c.domain(10) == a.domain(10)
