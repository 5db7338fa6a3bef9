"""Failures and recovery (scenario `faults`, `health`, `clients`; docs/model.md "Failures").

The engine agrees request by request with naive.py on small scenarios with crashes, node
outages, drains, detection delays, restarts and retries; conservation holds with retries
counted apart; after detection no request goes to a removed task; replacements go where
Swarm's spread rule puts them; random fault schedules (hypothesis) never break conservation
or the engine.
"""
from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as hst

from lbbench import UserError
from lbbench.model.faults import recovery
from lbbench.model.scenario import load_scenario
from lbbench.engine.run import _Run, simulate
from lbbench.strategy import resolve

from naive import COMPLETED, FAILED, IN_FLIGHT, REJECTED, simulate_naive
from simcheck import (ORCHESTRATED as STRATEGIES, assert_counters_match, assert_trace_matches, engine_path,
                      rows_equal, scenario)

# A longer fuzzing campaign: LBBENCH_FUZZ_EXAMPLES=2000 pytest tests/test_engine_props.py tests/test_faults.py
FUZZ_EXAMPLES = int(os.environ.get("LBBENCH_FUZZ_EXAMPLES", "0"))

HEALTH = {"task_detect": 20.0, "node_detect": 30.0, "restart_delay": 5.0, "startup": 3.0}


def with_faults(sc: dict, events=(), random=(), health=HEALTH, clients=None) -> dict:
    sc = copy.deepcopy(sc)
    sc["faults"] = {"events": list(events), "random": list(random)}
    sc["health"] = dict(health)
    if clients:
        sc["clients"] = dict(clients)
    return sc


CRASH = {"at": 300.0, "kind": "task_crash", "task": 1}
# name -> (scenario, what must be seen)
CASES = {
    # one task crashes: failures until detection (20 s), back after restart_delay + startup
    "crash_detect_restart": (with_faults(scenario(nodes=3, replicas=4, rho=0.8, requests=2000), [CRASH]),
                             {"failed", "restart"}),
    # a node goes down and up with overlay hops and jitter; entry nodes uniform: requests
    # entering at the down node fail until node_detect, then are re-routed
    "node_down_up_hop_jitter": (with_faults(scenario(nodes=4, replicas=5, hop=0.02, jitter=0.01, rho=0.8, requests=3000),
                                            [{"at": 200.0, "kind": "node_down", "node": 2},
                                             {"at": 700.0, "kind": "node_up", "node": 2}]),
                                {"failed", "restart", "entry_failed", "rerouted"}),
    # N tasks of a service at once, retries (rejections too), timeouts, queue limits
    "service_crash_retries": (with_faults(scenario(nodes=3, replicas=5, workers=2, queue_limit=2, rho=0.9, hop=0.01,
                                                   info="local", requests=2500),
                                          [{"at": 250.0, "kind": "task_crash", "service": "web", "count": 3}],
                                          clients={"retries": 2, "backoff": 0.5, "timeout": 6.0}),
                              {"failed", "restart", "retried", "timed_out", "reject"}),
    # a drain moves tasks off at once; stale information; zero restart delay
    "drain_stale_central": (with_faults(scenario(nodes=3, replicas=4, mode="central", info="stale:2", rho=0.8, requests=2000),
                                        [{"at": 400.0, "kind": "node_drain", "node": 0}, CRASH],
                                        health={**HEALTH, "restart_delay": 0.0, "startup": 0.0}),
                            {"failed", "restart"}),
    # every task node down: replacements wait for a node to come back; retries keep failing
    "everything_down": (with_faults(scenario(nodes=2, replicas=2, rho=0.6, hop=0.01, requests=1500),
                                    [{"at": 300.0, "kind": "node_down", "node": 0}, {"at": 310.0, "kind": "node_down", "node": 1},
                                     {"at": 600.0, "kind": "node_up", "node": 1}],
                                    clients={"retries": 2, "backoff": 2.0}),
                        {"failed", "restart", "retried", "entry_failed"}),
    # random node outages and task crashes from the FAULTS stream
    "random_faults": (with_faults(scenario(nodes=4, replicas=6, rho=0.7, hop=0.005, requests=3000),
                                  random=[{"target": "node", "mtbf": 900.0, "mttr": 120.0},
                                          {"target": "task", "mtbf": 1500.0}],
                                  clients={"retries": 1, "backoff": 1.0}),
                      {"failed", "restart", "retried"}),
    # a crash storm on busy multi-worker tasks: every kill leaves completion-heap entries stale,
    # often with every worker busy, so the heap is purged of them (docs/architecture.md,
    # "The completion heap")
    "crash_storm": (with_faults(scenario(nodes=2, replicas=3, workers=2, rho=0.95, hop=0.01, requests=4000),
                                random=[{"target": "task", "mtbf": 60.0}]),
                    {"failed", "restart"}),
    # tasks that end only by their own crashes (scripted, two at one time, and random) on
    # two-worker tasks behind a hop from one entry node, and a node slowed down: the direct
    # path (engine.DIRECT) decides each request's outcome at its dispatch, including those
    # whose task crashes while they cross the hop
    "crashes_single_entry_slow": (with_faults(scenario(nodes=3, replicas=4, workers=2, rho=0.9, hop=0.3,
                                                       entry="single:1", requests=3000),
                                              [{"at": 200.0, "kind": "task_crash", "task": 1},
                                               {"at": 200.0, "kind": "task_crash", "task": 2},
                                               {"at": 150.0, "kind": "node_slow", "node": 0, "speed": 0.5}],
                                              random=[{"target": "task", "mtbf": 300.0}]),
                                  {"failed", "restart"}),
    # run not drained: pending retries are in flight at the end
    "no_drain_retries": (with_faults(scenario(nodes=3, replicas=3, rho=0.85, drain=False, hop=0.02, requests=2000),
                                     [{"at": 700.0, "kind": "node_down", "node": 1}],
                                     health={**HEALTH, "node_detect": 100.0}, clients={"retries": 3, "backoff": 5.0}),
                         {"failed", "retried", "in_flight"}),
}


def _check_features(sc, res, ref, features):
    row, tr = res.row(), res.trace
    status = tr["status"].to_numpy()
    if "failed" in features:
        assert row["failed"] > 0 and (status == FAILED).any()
    if "restart" in features:
        assert ref.restarts.sum() > 0
    if "retried" in features:
        assert row["retried"] > 0 and (tr["retries"].to_numpy() > 0).any()
        # some retried request eventually succeeded
        assert ((tr["retries"].to_numpy() > 0) & (status == COMPLETED)).any()
    if "timed_out" in features:
        assert 0 < row["timed_out"] < row["completed"]
    if "reject" in features:
        assert row["rejected"] > 0 or row["retried"] > row["failed"]
    if "in_flight" in features:
        assert row["in_flight"] > 0 and (status == IN_FLIGHT).any()
    if "entry_failed" in features:
        # a request that failed without being sent to any task: its entry node was down
        assert ((status == FAILED) & (tr["task"].to_numpy() < 0)).any()
    if "rerouted" in features:
        assert ref.cross > 0


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("case", list(CASES))
def test_engine_matches_naive_with_faults(case, strategy):
    sc, features = CASES[case]
    res = simulate(sc, strategy, trace=True, progress=False)
    ref = simulate_naive(sc, strategy)
    assert_trace_matches(res.trace, ref)
    assert_counters_match(res.row(), ref)
    row = res.row()
    assert (row["retried"], row["timed_out"], row["crashes"]) == (ref.retried, ref.timed_out, ref.crashes)
    np.testing.assert_array_equal(res.trace["retries"].to_numpy(), ref.tries)
    np.testing.assert_array_equal(res.tasks["served"].to_numpy(), ref.task_served)
    np.testing.assert_array_equal(res.tasks["node"].to_numpy(), ref.task_node)
    np.testing.assert_array_equal(res.tasks["restarts"].to_numpy(), ref.restarts)
    _check_features(sc, res, ref, features)


def test_duration_run_with_faults_matches_naive_whatever_the_chunk():
    sc = with_faults(scenario(duration=600.0, requests=None, warmup=0.2, nodes=3, replicas=4, hop=0.01, rho=0.8),
                     [{"at": 200.0, "kind": "node_down", "node": 1}, {"at": 400.0, "kind": "node_up", "node": 1}],
                     clients={"retries": 2, "backoff": 0.3})
    ref = simulate_naive(sc, "least_load")
    assert ref.failed > 0 and ref.retried > 0
    for chunk in (None, 13):
        res = simulate(sc, "least_load", chunk=chunk, progress=False)
        assert_counters_match(res.row(), ref)
        assert res.row()["retried"] == ref.retried


# --------------------------------------------------------------------------------------------
# Invariants


def _conserved(row, tr=None):
    assert row["arrived"] == row["completed"] + row["rejected"] + row["failed"] + row["in_flight"]
    assert row["in_flight"] >= 0 and row["timed_out"] <= row["completed"]
    if tr is not None:
        warm = np.arange(tr.height) >= tr.height - row["arrived"]
        st = tr["status"].to_numpy()[warm]
        assert (st == COMPLETED).sum() == row["completed"]
        assert (st == REJECTED).sum() == row["rejected"]
        assert (st == FAILED).sum() == row["failed"]
        assert (st == IN_FLIGHT).sum() == row["in_flight"]
        # retries are counted apart: attempts, not requests
        assert tr["retries"].to_numpy()[warm].sum() == row["retried"]


# Where tasks end only by their own crashes, a load-blind strategy takes the direct path
# (_Run.crashes_only): each request's outcome is decided at its dispatch, from its task's next
# crash. Its results are the heap path's (round_robin's agree with naive.py above).
DIRECT_FAULTS = ("crash_detect_restart", "crash_storm", "crashes_single_entry_slow")


@pytest.mark.parametrize("strategy", ["round_robin", "random"])
@pytest.mark.parametrize("case", DIRECT_FAULTS)
def test_direct_path_with_crashes_equals_heap_path(case, strategy):
    from polars.testing import assert_frame_equal
    sc = CASES[case][0]
    assert engine_path(sc, strategy) == "direct" and engine_path(sc, strategy, force_heap=True) == "heap"
    a = simulate(sc, strategy, trace=True, progress=False)
    b = simulate(sc, strategy, trace=True, progress=False, force_heap=True)
    ra, rb = a.row(), b.row()
    assert ra["failed"] > 0 and ra["crashes"] > 0
    # sums of latencies and busy times are added in another order: their last bits may differ
    floats = {k for k, v in ra.items() if isinstance(v, float)}
    assert rows_equal(ra, rb, ignore=floats | {"wall_s", "req_per_s"}) == []
    for k in floats - {"wall_s", "req_per_s"}:
        assert math.isclose(ra[k], rb[k], rel_tol=1e-12) or (math.isnan(ra[k]) and math.isnan(rb[k])), k
    for frame in ("trace", "tasks", "timeseries", "faults"):
        assert_frame_equal(getattr(a, frame), getattr(b, frame), check_exact=False, rel_tol=1e-12)
    if case == "crashes_single_entry_slow":
        # each way a request fails on this path happened: at its dispatch (its task dead, not
        # yet detected), at its arrival over the hop (the task crashed meanwhile), at its task
        # (queued or in service at the crash)
        t = simulate_naive(sc, strategy).t
        tr = a.trace
        f = tr["status"].to_numpy() == FAILED
        wait = tr["done"].to_numpy()[f] - t[f]
        assert (wait == 0).any() and np.isclose(wait, 0.3).any() and (wait > 0.3 + 1e-9).any()


@pytest.mark.parametrize("case", ["node_down_up_hop_jitter", "service_crash_retries", "drain_stale_central",
                                  "everything_down", "random_faults", "no_drain_retries"])
def test_direct_path_only_where_every_crash_is_known_in_advance(case):
    # a node's outage, a drain or a service's crash end requests on tasks chosen when it
    # happens; client retries send requests again: the heap path
    assert engine_path(CASES[case][0], "round_robin") == "heap"
    crash_only = with_faults(scenario(nodes=3, replicas=4, rho=0.8, requests=500), [CRASH])
    assert engine_path(crash_only, "round_robin") == "direct"
    closed = copy.deepcopy(crash_only)
    closed["workload"] = {"mode": "closed", "users": 8, "think": {"dist": "exponential", "mean": 1.0}}
    assert engine_path(closed, "round_robin") == "heap"


@pytest.mark.parametrize("case", ["service_crash_retries", "no_drain_retries", "everything_down"])
def test_conservation_with_faults_and_retries(case):
    sc, _ = CASES[case]
    res = simulate(sc, "least_load", trace=True, progress=False)
    row = res.row()
    _conserved(row, res.trace)
    assert row["retried"] > 0
    # the time series counts the same (all windows, warm-up included)
    ts = res.timeseries
    st = res.trace["status"].to_numpy()
    assert ts["failed"].sum() == (st == FAILED).sum()
    assert ts["arrivals"].sum() == res.trace.height
    assert ts["retried"].sum() == res.trace["retries"].sum()
    assert 0 <= row["availability"] <= 1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_request_goes_to_a_removed_task(strategy):
    """Task 1 crashes at 300, is detected (leaves the tables) at 320 and rejoins at 328:
    requests decided in [320, 328) never go to it; before detection some did (and failed at
    once); after the join it serves again."""
    sc = CASES["crash_detect_restart"][0]
    res = simulate(sc, strategy, trace=True, progress=False)
    tr = res.trace
    t = simulate_naive(sc, strategy).t
    task, status = tr["task"].to_numpy(), tr["status"].to_numpy()
    gap = (t >= 320.0) & (t < 328.0)
    assert gap.sum() > 20 and not (task[gap] == 1).any()
    blind = (t >= 300.0) & (t < 320.0) & (task == 1)
    assert blind.any() and (status[blind] == FAILED).all()
    assert ((t >= 328.0) & (task == 1) & (status == COMPLETED)).any()
    # the naive simulator checks the same for every decision of every case (routed vs removed)
    ref = simulate_naive(sc, strategy)
    removed = dict((k, tm) for tm, k in ref.removed)
    assert removed == {1: 320.0}


def test_replacements_are_placed_by_spread():
    """6 replicas on 4 nodes: spread puts tasks 0..5 on nodes 0,1,2,3,0,1. Node 3 goes down
    (task 3 is replaced on node 2: fewest web tasks among the up nodes), node 0 is drained
    (tasks 0 and 4 both go to node 3, back up and with the fewest tasks of the service)."""
    sc = scenario(nodes=4, replicas=6, rho=0.5, requests=4000)
    lsc = load_scenario(sc)
    from lbbench.model.cluster import build_cluster
    assert build_cluster(lsc).task_node.tolist() == [0, 1, 2, 3, 0, 1]
    sc = with_faults(sc, [{"at": 100.0, "kind": "node_down", "node": 3},
                          {"at": 400.0, "kind": "node_up", "node": 3},
                          {"at": 500.0, "kind": "node_drain", "node": 0}])
    res = simulate(sc, "round_robin", trace=True, progress=False)
    ref = simulate_naive(sc, "round_robin")
    nodes = res.tasks["node"].to_list()
    # task 3 -> node 2 at 135 (node_detect 30 + restart 5); at 505 tasks 0 and 4 leave node 0:
    # counts of web tasks then: node1 2 (tasks 1, 5), node2 2 (tasks 2, 3), node3 0
    # -> task 0 to node 3, then task 4: node 3 has 1, nodes 1 and 2 have 2 -> node 3
    assert nodes == [3, 1, 2, 2, 3, 1]
    assert res.tasks["first_node"].to_list() == [0, 1, 2, 3, 0, 1]
    assert res.tasks["restarts"].to_list() == [1, 0, 0, 1, 1, 0]
    placed = [(tm, k, node) for tm, k, node, *_ in ref.placements]
    assert placed == [(135.0, 3, 2), (505.0, 0, 3), (505.0, 4, 3)]
    # and the engine's own placement function agrees with the reference's spread on every state
    from naive import spread
    for _, _, node, cs, ct, eligible in ref.placements:
        assert spread(cs, ct, eligible) == node


def test_a_replacement_waits_for_an_eligible_node():
    sc = with_faults(scenario(nodes=2, replicas=2, rho=0.5, requests=2000),
                     [{"at": 100.0, "kind": "node_down", "node": 0}, {"at": 105.0, "kind": "node_down", "node": 1},
                      {"at": 500.0, "kind": "node_up", "node": 1}])
    ref = simulate_naive(sc, "round_robin")
    placed = [(tm, k, node) for tm, k, node, *_ in ref.placements]
    # detected at 130 / 135, would start at 135 / 140 but no node is up until 500
    assert placed == [(500.0, 0, 1), (500.0, 1, 1)]
    res = simulate(sc, "round_robin", trace=True, progress=False)
    assert res.tasks["node"].to_list() == [1, 1]
    t = ref.t
    st = res.trace["status"].to_numpy()
    assert (st[(t > 106) & (t < 500)] == FAILED).all()
    assert (st[t > 504] == COMPLETED).all()


def test_each_nodes_slot_list_follows_the_placements(monkeypatch):
    """A node event visits the node's own slots through a list per node (control.node_lists),
    not every slot: after a run of many node outages, drains and replacements, each node's
    list holds exactly the slots placed on it, in ascending order, linked both ways."""
    import lbbench.engine.run as engine_run
    seen = []
    keep = engine_run._release_state
    monkeypatch.setattr(engine_run, "_release_state", lambda run: (seen.append(run), keep(run)))
    sc = with_faults(scenario(nodes=6, replicas=20, rho=0.6, requests=20_000),
                     [{"at": 50.0, "kind": "node_drain", "node": 5}],
                     [{"target": "node", "mtbf": 150.0, "mttr": 40.0}])
    res = simulate(sc, "round_robin", progress=False)
    (run,) = seen
    st, task_node = run.st, run.cfg_kw["task_node"]
    assert res.tasks["restarts"].sum() >= 20                 # many slots moved between nodes
    for n in range(6):
        walk, k, prev = [], int(st.node_first[n]), -1
        while k >= 0:
            assert st.task_nprev[k] == prev
            walk.append(k)
            prev, k = k, int(st.task_nnext[k])
        assert walk == np.flatnonzero(task_node == n).tolist()
    assert not (task_node == 5).any()                         # drained at 50 s, never given a task again


def test_direct_path_is_off_with_node_faults_or_clients():
    base = scenario()
    spec = resolve("round_robin")
    for extra, direct in [({}, True), ({"faults": {"events": [CRASH]}}, True),
                          ({"faults": {"events": [{"at": 30.0, "kind": "node_down", "node": 1}]}}, False),
                          ({"clients": {"retries": 1}}, False), ({"clients": {"timeout": 1.0}}, False)]:
        sc = load_scenario({**base, **extra})
        assert _Run(sc, spec, {}, 0, False).direct_ok(False) == direct


def test_timeout_counts_slow_requests_that_still_completed():
    sc = with_faults(scenario(rho=0.9, requests=3000), clients={"timeout": 3.0})
    res = simulate(sc, "round_robin", trace=True, progress=False)
    row = res.row()
    lat = res.trace["latency"].to_numpy()[row["requests"] - row["arrived"]:]
    assert row["timed_out"] == int((lat > 3.0).sum()) > 0
    assert row["availability"] == pytest.approx((row["completed"] - row["timed_out"]) / row["arrived"])


# --------------------------------------------------------------------------------------------
# Hypothesis: random fault schedules


_event = hst.one_of(
    hst.builds(lambda at, k: {"at": at, "kind": "task_crash", "task": k}, hst.floats(0, 400), hst.integers(0, 4)),
    hst.builds(lambda at, c: {"at": at, "kind": "task_crash", "service": "web", "count": c}, hst.floats(0, 400), hst.integers(1, 6)),
    hst.builds(lambda at, kind, n: {"at": at, "kind": kind, "node": n}, hst.floats(0, 400),
               hst.sampled_from(["node_down", "node_up", "node_drain"]), hst.integers(0, 2)),
)


@settings(max_examples=FUZZ_EXAMPLES or 60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=hst.lists(_event, max_size=8),
       detect=hst.tuples(hst.floats(0, 30), hst.floats(0, 30), hst.floats(0, 10), hst.floats(0, 10)),
       retries=hst.integers(0, 3), drain=hst.booleans(), qlimit=hst.integers(0, 2),
       random_nodes=hst.booleans())
def test_random_fault_schedules_keep_conservation(events, detect, retries, drain, qlimit, random_nodes):
    sc = scenario(nodes=3, replicas=5, rho=0.85, hop=0.01, jitter=0.01, queue_limit=qlimit, drain=drain,
                  requests=500, warmup=0.2)
    health = dict(zip(["task_detect", "node_detect", "restart_delay", "startup"], detect))
    rnd = [{"target": "node", "mtbf": 150.0, "mttr": 40.0}] if random_nodes else []
    sc = with_faults(sc, events, rnd, health, {"retries": retries, "backoff": 0.2})
    res = simulate(sc, "least_load", trace=True, progress=False)
    _conserved(res.row(), res.trace)
    if drain:
        assert res.row()["in_flight"] == 0
    # and it agrees with the reference, request by request
    ref = simulate_naive(sc, "least_load")
    assert_trace_matches(res.trace, ref)
    assert_counters_match(res.row(), ref)


def _direct_crash_case(data):
    """A small open-loop run whose tasks end only by their own crashes (the direct path): scripted
    crashes at random times (some at one instant, some of a dead or restarting task), random task
    faults, node slowdowns, detection and restart delays from zero up, with or without the hop,
    several entry nodes or one, per-node or central balancers, a warm-up or none."""
    replicas = data.draw(hst.integers(1, 6), "replicas")
    nodes = data.draw(hst.integers(1, 4), "nodes")
    hop = data.draw(hst.sampled_from([0.0, 0.01, 0.4]), "hop")
    entry = data.draw(hst.sampled_from(["uniform", "single:0"]), "entry")
    sc = scenario(nodes=nodes, replicas=replicas, workers=data.draw(hst.integers(1, 2), "workers"), hop=hop,
                  entry=entry, mode=data.draw(hst.sampled_from(["per_node", "central"]), "mode"), rho=0.85,
                  requests=data.draw(hst.integers(50, 600), "requests"),
                  warmup=data.draw(hst.sampled_from([0.0, 0.2]), "warmup"))
    span = 600 / (0.85 * replicas)      # about the run's length
    times = hst.floats(0, span)
    at = data.draw(hst.lists(times, min_size=1, max_size=3), "instants")
    events = data.draw(hst.lists(hst.builds(lambda t, k: {"at": t, "kind": "task_crash", "task": k},
                                            hst.one_of(times, hst.sampled_from(at)), hst.integers(0, replicas - 1)),
                                 min_size=1, max_size=8), "crashes")
    events += data.draw(hst.lists(hst.builds(lambda t, n, v: {"at": t, "kind": "node_slow", "node": n, "speed": v},
                                             times, hst.integers(0, nodes - 1), hst.sampled_from([0.25, 0.5, 2.0])),
                                  max_size=2), "slowdowns")
    rnd = [{"target": "task", "mtbf": data.draw(hst.sampled_from([20.0, 200.0]), "mtbf")}] if data.draw(
        hst.booleans(), "random") else []
    detect = data.draw(hst.tuples(hst.sampled_from([0.0, 0.3, 5.0]), hst.sampled_from([0.0, 2.0]),
                                  hst.sampled_from([0.0, 1.0])), "detect")
    health = {"task_detect": detect[0], "node_detect": 30.0, "restart_delay": detect[1], "startup": detect[2]}
    return with_faults(sc, events, rnd, health)


@seed(38)       # the suite's examples are fixed (LBBENCH_FUZZ_EXAMPLES explores more)
@settings(max_examples=FUZZ_EXAMPLES or 40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=hst.data(), strategy=hst.sampled_from(["round_robin", "random"]))
def test_direct_path_with_crashes_equals_heap_path_on_random_schedules(data, strategy):
    """The direct path with crashes (decided at dispatch from each task's next crash) gives every
    table of the heap path (each event in time), on random crash schedules; round_robin's also
    agree request by request with naive.py."""
    from polars.testing import assert_frame_equal
    sc = _direct_crash_case(data)
    assert engine_path(sc, strategy) == "direct"
    a = simulate(sc, strategy, trace=True, progress=False)
    b = simulate(sc, strategy, trace=True, progress=False, force_heap=True)
    ra, rb = a.row(), b.row()
    _conserved(ra, a.trace)
    floats = {k for k, v in ra.items() if isinstance(v, float)} - {"wall_s", "req_per_s"}
    assert rows_equal(ra, rb, ignore=floats | {"wall_s", "req_per_s"}) == []
    for k in floats:
        assert math.isclose(ra[k], rb[k], rel_tol=1e-12, abs_tol=1e-12) or (math.isnan(ra[k]) and math.isnan(rb[k])), k
    for frame in ("trace", "tasks", "timeseries", "faults"):
        assert_frame_equal(getattr(a, frame), getattr(b, frame), check_exact=False, rel_tol=1e-12, abs_tol=1e-12)
    if strategy == "round_robin":
        ref = simulate_naive(sc, strategy)
        assert_trace_matches(a.trace, ref)
        assert_counters_match(ra, ref)


# --------------------------------------------------------------------------------------------
# Input errors, presets, recovery


@pytest.mark.parametrize("faults,field", [
    ({"events": [{"at": 1.0, "kind": "node_down", "node": 7}]}, "faults.events.0.node"),
    ({"events": [{"at": 1.0, "kind": "task_crash"}]}, "faults.events.0.task"),
    ({"events": [{"at": 1.0, "kind": "task_crash", "task": 99}]}, "faults.events.0.task"),
    ({"events": [{"at": 1.0, "kind": "task_crash", "service": "nope"}]}, "faults.events.0.service"),
    ({"events": [{"at": -1.0, "kind": "node_up", "node": 0}]}, "faults.events.0.at"),
    ({"events": [{"at": 1.0, "kind": "explode", "node": 0}]}, "faults.events.0.kind"),
    ({"random": [{"target": "node", "mtbf": 10.0}]}, "faults.random.0.mttr"),
    ({"random": [{"target": "task", "mtbf": 10.0, "mttr": 3.0}]}, "faults.random.0.mttr"),
    ({"random": [{"target": "node", "mtbf": 0.0, "mttr": 1.0}]}, "faults.random.0.mtbf"),
    ({"random": [{"target": "node", "mtbf": 5.0, "mttr": 1.0, "targets": [3]}]}, "faults.random.0.targets"),
])
def test_bad_faults_are_one_line_errors_naming_the_field(faults, field):
    with pytest.raises(UserError) as exc:
        load_scenario({**scenario(), "faults": faults})
    msg = str(exc.value)
    assert "\n" not in msg and field in msg, msg


@pytest.mark.parametrize("key,value,field", [("clients.backoff", 0, "clients.backoff"), ("clients.retries", -1, "clients.retries"),
                                             ("health.node_detect", -2, "health.node_detect"), ("clients.timeout", "x", "clients.timeout")])
def test_bad_health_and_clients_name_the_field(key, value, field):
    with pytest.raises(UserError) as exc:
        load_scenario("failover", {key: value})
    assert "\n" not in str(exc.value) and field in str(exc.value)


def test_failover_preset_fails_during_detection_and_recovers():
    """The seed mesh loses node 2 at 60 s: requests sent to its task fail until node_detect
    (15 s); then node 1 carries everything until the replacement joins (60 + 15 + 5 + 2 = 82 s).
    Common random numbers: the same arrivals under every strategy."""
    rows = {}
    for s in STRATEGIES:
        res = simulate("failover", s, progress=False)
        row = res.row()
        _conserved(row)
        ts = res.timeseries
        failed_t = ts.filter(pl_col("failed") > 0)["t_start"].to_numpy()
        assert failed_t.min() == 60.0 and failed_t.max() < 75.0
        assert res.tasks["node"].to_list() == [1, 1] and res.tasks["restarts"].to_list() == [0, 1]
        f = res.faults
        assert f["kind"].to_list() == ["node_down", "node_up"] and f["time"].to_list() == [60.0, 180.0]
        assert 15.0 <= row["recovery_s"] < 120.0
        rows[s] = row
    assert len({r["arrived"] for r in rows.values()}) == 1
    # round-robin sends about half of node 0's requests to the dead task for 15 s
    for s in ("round_robin",):
        expected = 0.5 * 140 * 15
        assert abs(rows[s]["failed"] - expected) < 5 * math.sqrt(expected)


def pl_col(name):
    import polars as pl
    return pl.col(name)


def test_recovery_from_a_synthetic_time_series():
    """Windows of 1 s; level 1.0 before the fault at 10 s; failures in 10-11, p99 high until 14."""
    from lbbench.engine import metrics as E
    n = 20
    edges = E.bucket_edges(E.TS_SUB)
    hist = np.zeros((n, E.TS_BUCKETS), dtype=np.int64)
    b1 = int(np.searchsorted(edges, 1.0, side="right") - 1)
    b3 = int(np.searchsorted(edges, 3.0, side="right") - 1)
    hist[:, b1] = 100
    hist[10:14, b3] = 50
    failed = np.zeros(n, dtype=np.int64)
    failed[10:12] = 7
    from lbbench.engine.run import _percentile
    p99 = lambda h: _percentile(h, edges, 0.99, math.inf)  # noqa: E731
    level, rec = recovery(hist, failed, np.arange(n) * 1.0, 1.0, 10.0, 2.0, p99)
    assert level == pytest.approx(1.0, rel=0.07)
    assert rec == 4.0
    # never back: NaN; no pre-fault window: NaN
    assert math.isnan(recovery(hist, np.ones(n, dtype=np.int64), np.arange(n) * 1.0, 1.0, 10.0, 2.0, p99)[1])
    assert math.isnan(recovery(hist, failed, np.arange(n) * 1.0, 1.0, 10.0, 10.5, p99)[0])


def _recovery_by_the_windows(ts_hist, ts_failed, t_start, window, t_fault, t_measure, p99_of):
    """docs/model.md's recovery, window by window: the reference for faults.recoveries."""
    pre = [w for w in range(len(t_start)) if t_start[w] >= t_measure and t_start[w] + window <= t_fault]
    if not pre:
        return math.nan, math.nan
    level = p99_of(ts_hist[pre].sum(axis=0))
    if not math.isfinite(level):
        return math.nan, math.nan
    for w in range(int(t_fault // window), len(t_start)):
        if ts_hist[w].sum() and ts_failed[w] == 0 and p99_of(ts_hist[w]) <= 1.1 * level:
            return level, max(0.0, float(t_start[w]) - t_fault)
    return level, math.nan


def test_recoveries_of_many_faults_are_each_faults_recovery():
    """faults.recoveries (pooled histograms from running sums, each window's p99 once, every
    row at once through run._row_percentiles) gives what the window-by-window definition gives,
    on random time series with empty windows, failures, spikes, and faults anywhere in the run
    (before the measured part, on a window's edge, past the end)."""
    from lbbench.engine import metrics as E
    from lbbench.engine.run import _percentile, _row_percentiles
    from lbbench.model.faults import recoveries
    edges = E.bucket_edges(E.TS_SUB)
    p99 = lambda h: _percentile(h, edges, 0.99, math.inf)  # noqa: E731
    rng = np.random.default_rng(7)
    finite = 0
    for case in range(60):
        n = int(rng.integers(1, 40))
        window = float(rng.choice([0.5, 1.0, 2.5]))
        hist = np.zeros((n, E.TS_BUCKETS), dtype=np.int64)
        base = int(rng.integers(200, 260))
        hist[:, base] = rng.integers(0, 30, n)
        spikes = rng.random(n) < 0.3
        hist[spikes, base + int(rng.integers(1, 40))] = rng.integers(1, 20, int(spikes.sum()))
        failed = np.where(rng.random(n) < 0.2, rng.integers(1, 5, n), 0)
        t_start = np.arange(n) * window
        faults = np.concatenate((rng.uniform(-1.0, n * window + 2.0, 8), t_start[rng.integers(0, n, 3)]))
        t_measure = float(rng.choice([0.0, window, 3.3]))
        levels, recs = recoveries(hist, failed, t_start, window, faults, t_measure, p99,
                                  lambda h: _row_percentiles(h, edges, 0.99))
        for i, t in enumerate(faults):
            want = _recovery_by_the_windows(hist, failed, t_start, window, float(t), t_measure, p99)
            got = (float(levels[i]), float(recs[i]))
            assert got == want or all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(got, want)), \
                (case, i, got, want)
            finite += math.isfinite(want[1])
    assert finite > 50, f"only {finite} faults recovered: the cases do not test the search"


def _spread_one_by_one(nodes, drained, replicas_per_service):
    """The reference simulator's spread rule, one replica at a time."""
    from naive import spread
    eligible = np.array([n not in drained for n in range(nodes)])
    total = np.zeros(nodes, dtype=np.int64)
    placed = []
    for replicas in replicas_per_service:
        mine = np.zeros(nodes, dtype=np.int64)
        for _ in range(replicas):
            n = spread(mine, total, eligible)
            mine[n] += 1
            total[n] += 1
            placed.append(n)
    return placed


@seed(11)
@settings(max_examples=200, deadline=None, database=None)
@given(hst.integers(1, 12).flatmap(lambda n: hst.tuples(
    hst.just(n), hst.sets(hst.integers(0, n - 1), max_size=n - 1), hst.lists(hst.integers(1, 30), min_size=1, max_size=4))))
def test_a_services_replicas_are_placed_as_by_spread_one_at_a_time(case):
    """build_cluster places a service's replicas in rounds; the nodes must be those of the
    spread rule applied replica by replica."""
    nodes, drained, replicas = case
    sc = load_scenario({"name": "p", "cluster": {"nodes": nodes, "drained": sorted(drained)},
                        "services": [{"name": f"s{i}", "port": 80 + i, "replicas": r} for i, r in enumerate(replicas)],
                        "workload": {"rho": 0.5}})
    from lbbench.model.cluster import build_cluster
    assert build_cluster(sc).task_node.tolist() == _spread_one_by_one(nodes, drained, replicas)


def _bursty_trace(path, n_sparse=400, n_dense=400, seed=5):
    """A CSV trace whose arrival rate changes: sparse gaps (mean 2 s), then dense ones (0.1 s),
    so that `run.requests / rate` (rate = the whole trace's mean rate) is far from the time of
    the run's last arrival."""
    import polars as pl

    rng = np.random.default_rng(seed)
    gaps = np.concatenate((rng.exponential(2.0, n_sparse), rng.exponential(0.1, n_dense)))
    n = n_sparse + n_dense
    pl.DataFrame({"time": np.cumsum(gaps), "demand": rng.exponential(0.15, n),
                  "entry": rng.integers(0, 3, n)}).write_csv(path)
    return str(path)


@pytest.mark.parametrize("target", ["node", "task"])
def test_trace_run_with_random_faults_matches_naive(tmp_path, target):
    """A trace bounds the run: random fault times are drawn up to the trace's last arrival
    (the horizon `lbbench.model.limits.check_run` returns), in the engine and in naive.py alike;
    not up to `run.requests / rate`."""
    f = _bursty_trace(tmp_path / "arrivals.csv")
    rnd = {"target": "node", "mtbf": 150.0, "mttr": 30.0} if target == "node" else {"target": "task", "mtbf": 200.0}
    sc = with_faults(scenario(nodes=3, replicas=4, hop=0.01, requests=600, warmup=0.1), random=[rnd],
                     health={"task_detect": 5.0, "node_detect": 8.0, "restart_delay": 2.0, "startup": 1.0},
                     clients={"retries": 1, "backoff": 0.5})
    sc["workload"] = {"trace": f, "entry": "uniform"}
    res = simulate(sc, "least_load", trace=True, progress=False)
    ref = simulate_naive(sc, "least_load")
    assert ref.requests == 600 and ref.crashes >= 3 and ref.retried > 0
    assert res.row()["crashes"] == ref.crashes
    assert_trace_matches(res.trace, ref)
    assert_counters_match(res.row(), ref)
    np.testing.assert_array_equal(res.trace["retries"].to_numpy(), ref.tries)
    np.testing.assert_array_equal(res.tasks["restarts"].to_numpy(), ref.restarts)
