"""bounded_hash (strategies/bounded_hash.py): no decision takes a task past the cap
ceil((1 + eps) x mean), checked request by request on a trace; with an eps too large to bind,
its decisions are ring_hash's."""
from __future__ import annotations

import numpy as np
import pytest

from lbbench.engine.run import simulate
from lbbench.experiments.papers import bh_cap, decision_loads

# 8 tasks of 4 workers, one central balancer with global information, 300 clients, heavy load:
# the cap binds at a large share of the decisions
SCENARIO = {"run.requests": 30_000, "cluster.nodes": 8, "services.0.replicas": 8, "services.0.workers": 4,
            "workload.rho": 0.85, "workload.clients": 300, "workload.client_dist": "zipf", "workload.zipf_s": 0.8}


def traced(strategy, params=None, seed=3):
    return simulate("reference", strategy, params, seed=seed, overrides=SCENARIO, trace=True, progress=False)


@pytest.mark.parametrize("eps", [0.0, 0.25, 1.0])
def test_no_decision_takes_a_task_past_the_cap(eps):
    res = traced("bounded_hash", {"eps": eps})
    before, total, _ = decision_loads(res)
    assert (res.trace["status"].to_numpy() == 0).all()
    cap = bh_cap(eps, total, 8)
    assert (before + 1 <= cap).all()
    # in max/mean terms: just after each decision the chosen task holds at most ceil((1 + eps) m) / m
    # times the mean m, and at least one decision reaches its cap (the bound is tight, not vacuous)
    assert ((before + 1) == cap).any()
    # the check has teeth: ring_hash on the same arrivals goes past the same cap
    rb, rt, _ = decision_loads(traced("ring_hash"))
    assert (rb + 1 > bh_cap(eps, rt, 8)).mean() > 0.01


def test_an_unbinding_eps_is_ring_hash():
    a = traced("bounded_hash", {"eps": 1e6})
    b = traced("ring_hash")
    assert np.array_equal(a.trace["task"].to_numpy(), b.trace["task"].to_numpy())
