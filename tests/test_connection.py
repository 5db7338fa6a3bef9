"""Connection-level (L4) balancing: keep-alive connections are balanced once and their
requests follow them, as IPVS does; this is what defeats Swarm's round-robin."""
from __future__ import annotations

import numpy as np
import pytest

from lbbench.model.cluster import build_cluster
from lbbench.model.scenario import load_scenario
from lbbench.engine.run import simulate
from lbbench.model.workload import Workload

BASE = {"cluster": {"nodes": 4}, "services": [{"replicas": 4, "demand": {"mean": 0.01}}],
        "workload": {"rho": 0.6, "clients": 8, "entry": "uniform"},
        "balancer": {"mode": "per_node", "info": "local"}, "network": {"hop": 0.0005},
        "run": {"requests": 20000}}


def _clients(sc_dict, n):
    sc = load_scenario(sc_dict)
    return Workload(sc, build_cluster(sc), sc.run.seed, need_client=True).chunk(n).client


@pytest.mark.parametrize("strategy", ["round_robin", "least_load"])
def test_one_request_per_connection_is_request_balancing(strategy):
    a = simulate(BASE, strategy, trace=True)
    b = simulate(BASE, strategy, overrides={"balancer.unit": "connection", "balancer.keepalive": 1}, trace=True)
    assert (a.trace["task"].to_numpy() == b.trace["task"].to_numpy()).all()
    assert a.row()["latency_mean"] == b.row()["latency_mean"]


def test_requests_follow_their_connection_for_about_keepalive_requests():
    keep = 20
    sc = {**BASE, "balancer": {**BASE["balancer"], "unit": "connection", "keepalive": keep}}
    res = simulate(sc, "random", trace=True)
    tasks = res.trace["task"].to_numpy()
    clients = _clients(sc, len(tasks))
    runs = []
    for c in range(8):
        t = tasks[clients == c]
        # a connection is a maximal run of one task; two connections may land on the same
        # task back to back, so run lengths estimate connection lengths from above
        change = np.flatnonzero(np.diff(t)) + 1
        runs.extend(np.diff(np.concatenate(([0], change, [len(t)]))))
    runs = np.asarray(runs)
    # P(next connection picks the same task) = 1/4 with random, so the mean run is keep / (3/4)
    expected = keep / 0.75
    half = 1.96 * runs.std(ddof=1) / np.sqrt(len(runs))
    assert abs(runs.mean() - expected) < half + 0.05 * expected


def test_keepalive_defeats_round_robin():
    """Few long-lived connections: round-robin balances connections, not load; its latency is
    many times the request-level figure (the well-known Swarm complaint)."""
    over = {"balancer.keepalive": 2000, "workload.clients": 6}
    req = [simulate(BASE, "round_robin", seed=s, overrides=over).row()["latency_mean"] for s in (1, 2, 3)]
    conn = [simulate(BASE, "round_robin", seed=s, overrides={**over, "balancer.unit": "connection"}).row()["latency_mean"]
            for s in (1, 2, 3)]
    assert min(conn) > 3 * max(req)


# --------------------------------------------------------------------------------------------
# Request by request against the reference simulator (tests/naive.py)

SMALL = {"cluster": {"nodes": 3}, "services": [{"replicas": 4, "workers": 1, "demand": {"mean": 1.0}}],
         "workload": {"rho": 0.8, "clients": 6, "entry": "uniform"}, "network": {"hop": 0.02, "jitter": 0.01},
         "run": {"requests": 2500, "warmup": 0.1, "seed": 5}}
HEALTH = {"task_detect": 10.0, "node_detect": 15.0, "restart_delay": 3.0, "startup": 2.0}
FAULTS = {"events": [{"at": 150.0, "kind": "task_crash", "task": 1},
                     {"at": 400.0, "kind": "node_down", "node": 2}, {"at": 600.0, "kind": "node_up", "node": 2}],
          "random": [{"target": "task", "mtbf": 1500.0}]}


def _conn_scenario(mode, info, keepalive, faults):
    sc = {**SMALL, "balancer": {"mode": mode, "info": info, "unit": "connection", "keepalive": keepalive}}
    if faults:
        sc.update(faults=FAULTS, health=HEALTH, clients={"retries": 2, "backoff": 0.5})
    return sc


CONN_CASES = {
    "per_node": ("per_node", "local", 6, False),
    "central": ("central", "global", 6, False),
    "per_node_faults": ("per_node", "global", 8, True),
    "central_faults": ("central", "stale:2", 8, True),
}


@pytest.mark.parametrize("strategy", ["round_robin", "least_load", "random"])
@pytest.mark.parametrize("case", list(CONN_CASES))
def test_connections_match_naive(case, strategy):
    from naive import FAILED, simulate_naive
    from simcheck import assert_counters_match, assert_trace_matches

    mode, info, keep, faults = CONN_CASES[case]
    sc = _conn_scenario(mode, info, keep, faults)
    ref = simulate_naive(sc, strategy)
    for force_heap in (False, True):
        res = simulate(sc, strategy, trace=True, force_heap=force_heap, progress=False)
        assert_trace_matches(res.trace, ref)
        assert_counters_match(res.row(), ref)
        np.testing.assert_array_equal(res.tasks["served"].to_numpy(), ref.task_served)
        if faults:
            row = res.row()
            assert (row["retried"], row["crashes"]) == (ref.retried, ref.crashes)
            np.testing.assert_array_equal(res.trace["retries"].to_numpy(), ref.tries)
    # the connections were used: most requests follow one, without a decision ...
    assert ref.followed.mean() > 0.5
    if faults:
        # ... and the faults broke some: requests that followed their connection failed (its
        # task had died, not yet detected, or its entry node was down) and were retried
        # (balanced afresh), and others found their connection's task gone from the table and
        # were balanced anew
        assert (ref.followed & (ref.tries > 0)).any() and (ref.followed & (ref.status == FAILED)).any()
        assert ref.orphaned > 0
