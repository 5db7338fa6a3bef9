"""lbbench.rng: `streams`, the fast construction of many generators, gives exactly the
generators `stream` gives (numpy's SeedSequence hash, computed for many keys at once)."""
from __future__ import annotations

import numpy as np
import pytest

from lbbench import rng


@pytest.mark.parametrize("seed", [0, 1, 7, 2**31, 2**32 - 1, 2**32, 2**40 + 3, 2**64 + 17, 12345678901234567890])
def test_streams_are_the_streams(seed):
    keys = ([(rng.USER, u, rng.THINK, 0) for u in range(40)] + [(rng.USER, u, rng.THINK, 1) for u in (0, 9)])
    keys5 = [(rng.USER, u, rng.DEMAND, s, 0) for u in range(5) for s in range(3)] + [(rng.USER, 2**32 - 1, 3, 0, 1)]
    for ks in (keys, keys5, [(rng.USER,)], [(rng.USER, 0, 0, 0, 0, 0, 0, 0)]):
        fast = rng.streams(seed, ks)
        assert len(fast) == len(ks)
        for key, g in zip(ks, fast):
            want = rng.stream(seed, *key)
            assert g.bit_generator.state == want.bit_generator.state, key
            np.testing.assert_array_equal(g.standard_exponential(8), want.standard_exponential(8))


def test_streams_fall_back_for_wide_key_parts():
    # a key part of 2**32 or more is two words in numpy's hash: `streams` leaves it to `stream`
    keys = [(rng.USER, 2**32, rng.THINK), (rng.USER, 2**40, rng.THINK)]
    for key, g in zip(keys, rng.streams(5, keys)):
        assert g.bit_generator.state == rng.stream(5, *key).bit_generator.state
    assert rng.streams(5, []) == []


def test_streams_refuse_a_negative_seed_as_numpy_does():
    with pytest.raises(ValueError):
        rng.stream(-1, rng.USER, 0)
    with pytest.raises(ValueError):
        rng.streams(-1, [(rng.USER, 0)])


def _walks_by_numpy(seed, keys, scales, horizon):
    """exponential_walks' definition, with numpy's generators made one by one."""
    rows, times, phases = [], [], []
    for k, key in enumerate(keys):
        g = rng.stream(seed, *key)
        t, i = 0.0, 0
        while True:
            t += g.exponential(scales[i % len(scales)])
            if t > horizon:
                break
            rows.append(k)
            times.append(t)
            phases.append(i % len(scales))
            i += 1
    return np.asarray(rows, dtype=np.int64), np.asarray(times, dtype=np.float64), np.asarray(phases, dtype=np.int64)


@pytest.mark.parametrize("seed", [0, 7, 2**32 + 5, 12345678901234567890])
@pytest.mark.parametrize("scales,horizon", [((2000.0,), 1.5), ((3.0,), 40.0), ((5.0, 0.5), 60.0), ((1e-3, 7.0), 2.0)])
def test_exponential_walks_are_numpys_draws(seed, scales, horizon):
    # every float the same as numpy's: PCG64 from the streams' states, the ziggurat's first
    # try with numpy's tables, numpy itself for a walk that meets the rare branch (some 1 in
    # 90 draws: these walks take thousands of draws, so both ways are exercised)
    keys = [(rng.FAULTS, 1, x) for x in range(600)] + [(rng.FAULTS, 2**32 - 1, 0)]
    fast = rng.exponential_walks(seed, keys, scales, horizon)
    want = _walks_by_numpy(seed, keys, scales, horizon)
    for a, b in zip(fast, want):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(rng.exponential_walks(seed, np.asarray(keys), scales, horizon)[1], want[1])


def test_exponential_walks_fall_back_where_the_hash_does():
    keys = [(rng.FAULTS, 2**33, 1), (rng.FAULTS, 0, 3)]       # a key part two words wide
    for a, b in zip(rng.exponential_walks(3, keys, (0.5,), 20.0), _walks_by_numpy(3, keys, (0.5,), 20.0)):
        np.testing.assert_array_equal(a, b)
    assert all(len(a) == 0 for a in rng.exponential_walks(3, [], (1.0,), 5.0))
    with pytest.raises(ValueError):
        rng.exponential_walks(-1, [(rng.FAULTS, 0, 0)], (1.0,), 5.0)


def test_fault_schedule_is_the_one_of_the_streams_made_one_by_one():
    # build_schedule draws the targets' gaps with exponential_walks; drawn the way it was
    # written first (a numpy stream per target, made one by one), the schedule is the same
    from lbbench.model.faults import F_NODE_DOWN, F_NODE_UP, F_TASK_CRASH, build_schedule
    from lbbench.model.scenario import load_scenario
    sc = load_scenario("reference", {"faults.random": [{"target": "task", "mtbf": 300.0},
                                                       {"target": "node", "mtbf": 500.0, "mttr": 50.0}]})
    fast = build_schedule(sc, 100, 2000.0, 7)
    t, kind, target = [], [], []
    for j, rf in enumerate(sc.faults.random):
        xs = range(sc.cluster.nodes if rf.target == "node" else 100)
        for x in xs:
            g = rng.stream(7, rng.FAULTS, j, x)
            now = 0.0
            while True:
                now += g.exponential(rf.mtbf)
                if now > 2000.0:
                    break
                t.append(now), target.append(x), kind.append(F_TASK_CRASH if rf.target == "task" else F_NODE_DOWN)
                if rf.target == "task":
                    continue
                now += g.exponential(rf.mttr)
                if now > 2000.0:
                    break
                t.append(now), target.append(x), kind.append(F_NODE_UP)
    order = np.argsort(np.asarray(t), kind="stable")
    assert len(fast) == len(t) > 500
    np.testing.assert_array_equal(fast.time, np.asarray(t)[order])
    np.testing.assert_array_equal(fast.kind, np.asarray(kind)[order])
    np.testing.assert_array_equal(fast.target, np.asarray(target)[order])
    assert (fast.count == 1).all() and (fast.value == 0).all()
