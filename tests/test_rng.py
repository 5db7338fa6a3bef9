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


def test_fault_schedule_is_the_one_of_the_streams_made_one_by_one(monkeypatch):
    # build_schedule makes a stream per target with `streams`; made one by one with `stream`,
    # the schedule is the same
    from lbbench.model.faults import build_schedule
    from lbbench.model.scenario import load_scenario
    sc = load_scenario("reference", {"faults.random": [{"target": "task", "mtbf": 300.0},
                                                       {"target": "node", "mtbf": 500.0, "mttr": 50.0}]})
    fast = build_schedule(sc, 100, 2000.0, 7)
    monkeypatch.setattr(rng, "streams", lambda seed, keys: [rng.stream(seed, *k) for k in keys])
    slow = build_schedule(sc, 100, 2000.0, 7)
    assert len(fast) > 500
    for f in ("time", "kind", "target", "count", "value"):
        np.testing.assert_array_equal(getattr(fast, f), getattr(slow, f))
