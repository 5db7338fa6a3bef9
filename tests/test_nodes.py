"""Nodes as shared machines (docs/model.md, "Nodes as shared machines"): `cluster.cores`.

- The engine's processor sharing (a virtual clock per node, lbbench/engine/cpu.py) agrees
  request by request with naive.py's (every request in service brought up to date at its node's
  rate at each event), on small cases with co-located tasks and services, hops, queue limits,
  per-node cores and speeds, and failures with retries; each case checks that requests really
  shared a node's cores (some request in service longer than its demand / speed).
- Against theory (lbbench/results/validate.py, `ps_cases`): one task on a 1-core node is an
  M/G/1-PS queue (E[S] / (1 - rho), exponential and lognormal cv 3 alike), on a c-core node
  its mean sojourn is M/M/c's (Erlang C), both distributions; a small budget here (the full
  one is `lbbench validate`), with negative controls.
- Without `cores`, nothing changes: tests/test_golden.py (bit for bit); with cores enough for
  every worker, the same requests as the FIFO engine's.

The runs reuse the kernels the rest of the suite compiles (round_robin, least_load and random
on the heap path, with and without failures): processor sharing is a run-time switch.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest

from lbbench.engine.run import simulate
from lbbench.results import validate as V

from naive import COMPLETED, simulate_naive
from simcheck import arrivals, assert_counters_match, assert_trace_matches, scenario
from test_faults import HEALTH, with_faults


def with_cores(sc: dict, cores, services=None) -> dict:
    sc = copy.deepcopy(sc)
    sc["cluster"]["cores"] = cores
    if services is not None:
        sc["services"] = services
    return sc


TWO_SERVICES = [
    {"name": "web", "port": 80, "replicas": 3, "workers": 3, "demand": {"dist": "exponential", "mean": 1.0}},
    {"name": "api", "port": 81, "replicas": 2, "workers": 2, "queue_limit": 2,
     "demand": {"dist": "lognormal", "mean": 0.5, "cv": 3.0}},
]

# name -> (scenario, strategies)
CASES = {
    # one task of many workers on a 1-core node: M/G/1-PS, heavy-tailed demand
    "one_node_ps": (with_cores(scenario(nodes=1, replicas=1, workers=50, rho=0.8, dist="lognormal"), 1.0,
                               [{"name": "web", "port": 80, "replicas": 1, "workers": 50,
                                 "demand": {"dist": "lognormal", "mean": 1.0, "cv": 3.0}}]), ("round_robin",)),
    # two services co-located on two nodes of 1.5 cores, overlay hops and jitter, a queue limit
    "two_services_shared": (with_cores(scenario(nodes=2, hop=0.05, jitter=0.02, rho=0.6), 1.5, TWO_SERVICES),
                            ("round_robin", "least_load", "random")),
    # cores and speeds per node, local information, queue limits
    "per_node_cores_speeds": (with_cores(scenario(nodes=3, replicas=6, workers=3, rho=0.85, speeds=[1.0, 0.5, 2.0],
                                                  info="local", queue_limit=3), [1.0, 2.0, 3.0]),
                              ("round_robin", "least_load")),
    # a crash and a node down under sharing: requests in service leave their node's clock
    "faults_retries": (with_cores(with_faults(scenario(nodes=3, replicas=5, workers=3, rho=0.8, hop=0.01, requests=2000),
                                              [{"at": 300.0, "kind": "task_crash", "task": 1},
                                               {"at": 500.0, "kind": "node_down", "node": 2},
                                               {"at": 800.0, "kind": "node_up", "node": 2}],
                                              health=HEALTH, clients={"retries": 1, "backoff": 0.5}), 2.0),
                       ("round_robin", "least_load")),
    # a gray failure under sharing: node 1 at 0.3 from t = 300 s, back at 900 s; the requests in
    # service there slow down at once
    "node_slow_cores": (with_cores(with_faults(scenario(nodes=3, replicas=5, workers=2, rho=0.6, hop=0.01, requests=2000),
                                               [{"at": 300.0, "kind": "node_slow", "node": 1, "speed": 0.3},
                                                {"at": 900.0, "kind": "node_slow", "node": 1, "speed": 1.0}]), 1.0),
                        ("round_robin", "least_load")),
    # background work: a step on node 0 (1.5 cores of load from t = 200 s, off at 900 s) and
    # random batch jobs of one core on nodes 1 and 2 (FAULTS-independent BACKGROUND stream)
    "background": (with_cores(scenario(nodes=3, replicas=5, workers=2, rho=0.5, hop=0.01, requests=2000), 2.0),
                   ("round_robin", "least_node_load")),
    # least_node_load under every information model: the nodes' loads as global, stale, local
    # and piggyback report them (two services on three nodes of 2 cores)
    **{f"node_load_{info.split(':')[0]}": (with_cores(scenario(nodes=3, hop=0.02, rho=0.7, info=info), 2.0,
                                                      TWO_SERVICES), ("least_node_load",))
       for info in ("global", "stale:1", "local", "piggyback")},
}


CASES["background"][0]["cluster"]["background"] = [
    {"node": 0, "at": 200.0, "load": 1.5}, {"node": 0, "at": 900.0, "load": 0.0},
    {"nodes": [1, 2], "mean_on": 60.0, "mean_off": 120.0, "load": 1.0}]


def assert_cpu_matches(sc, res, ref) -> None:
    """The CPU columns and the nodes table equal the naive simulator's core-seconds (each request
    in service holds min(1, cores / (in service + background)) of a core) over the same measured
    window."""
    _, cl = arrivals(sc)
    row = res.row()
    window = row["completed"] / row["throughput"]
    util = ref.node_cpu / (np.asarray(cl.node_cores, dtype=np.float64) * window)
    np.testing.assert_allclose(res.nodes["busy_s"].to_numpy(), ref.node_cpu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.nodes["cpu_util"].to_numpy(), util, rtol=1e-9, atol=1e-12)
    assert res.nodes["cores"].to_list() == list(cl.node_cores)
    if "faults" not in sc:      # (tasks stay on their nodes, at their speeds)
        # the time series' node_cpu: per window, the core-seconds (demand / speed) of its
        # completed requests, whole run; summed over windows, each node's
        ts = res.timeseries
        length = (ts["t_end"] - ts["t_start"]).to_numpy()
        got = (np.array(ts["node_cpu"].to_list()) * length[:, None] * np.asarray(cl.node_cores)[None, :]).sum(axis=0)
        arr, _ = arrivals(sc)
        tr = res.trace
        ok = tr["status"].to_numpy() == COMPLETED
        task = tr["task"].to_numpy()[ok]
        want = np.bincount(cl.task_node[task], weights=arr.demand[ok] / cl.task_speed[task], minlength=cl.n_nodes)
        np.testing.assert_allclose(got, want, rtol=1e-9)
    assert math.isclose(row["cpu_util_mean"], float(util.mean()), rel_tol=1e-9), (row["cpu_util_mean"], util)
    assert math.isclose(row["cpu_util_max"], float(util.max()), rel_tol=1e-9)
    assert math.isclose(row["contention_mean"], ref.contention_sum / ref.completed, rel_tol=1e-9, abs_tol=1e-12)
    assert row["contention_mean"] > 0       # (the cases share cores: _shared)


def _shared(sc, res) -> bool:
    """Some completed request was in service longer than its demand / speed: it shared cores."""
    tr = res.trace
    arr, cl = arrivals(sc)
    ok = tr["status"].to_numpy() == COMPLETED
    svc = tr["done"].to_numpy()[ok] - tr["start"].to_numpy()[ok]
    alone = arr.demand[ok] / cl.node_speed[cl.task_node[tr["task"].to_numpy()[ok]]]
    return bool((svc > alone * (1 + 1e-6)).any())


@pytest.mark.parametrize("case,strategy", [(c, s) for c, (_, ss) in CASES.items() for s in ss])
def test_engine_matches_naive_with_cores(case, strategy):
    sc = CASES[case][0]
    res = simulate(sc, strategy, trace=True, progress=False)
    ref = simulate_naive(sc, strategy)
    assert_trace_matches(res.trace, ref)
    assert_counters_match(res.row(), ref)
    np.testing.assert_array_equal(res.tasks["served"].to_numpy(), ref.task_served)
    np.testing.assert_allclose(res.tasks["busy_s"].to_numpy(), ref.task_busy, rtol=1e-9)
    assert _shared(sc, res)
    assert_cpu_matches(sc, res, ref)
    if case == "faults_retries":
        assert res.row()["failed"] + res.row()["retried"] > 0 and res.row()["crashes"] >= 2
    if case in ("two_services_shared", "per_node_cores_speeds"):
        assert res.row()["rejected"] > 0


def test_enough_cores_is_the_fifo_engine():
    """Cores for every worker of a node: each request in service runs at its node's speed, so
    the requests are the FIFO engine's (the same tasks, starts and completions)."""
    base = scenario(nodes=3, replicas=5, workers=2, rho=0.85, speeds=[1.0, 0.5, 2.0], hop=0.02)
    fifo = simulate(base, "least_load", trace=True, progress=False).trace
    ps = simulate(with_cores(base, 4.0), "least_load", trace=True, progress=False).trace
    np.testing.assert_array_equal(ps["task"].to_numpy(), fifo["task"].to_numpy())
    for col in ("start", "done", "latency"):
        np.testing.assert_allclose(ps[col].to_numpy(), fifo[col].to_numpy(), rtol=1e-9)
    # and one core fewer than the workers there makes them share: latencies grow
    fewer = simulate(with_cores(base, [2.0, 2.0, 1.0]), "least_load", progress=False).row()
    fifo_row = simulate(base, "least_load", progress=False).row()
    assert fewer["latency_mean"] > fifo_row["latency_mean"]
    # the CPU columns: null without cores; no contention with a core for every worker
    assert fifo_row["cpu_util_mean"] is None and fifo_row["contention_mean"] is None
    enough = simulate(with_cores(base, 4.0), "least_load", progress=False).row()
    assert abs(enough["contention_mean"]) < 1e-9 < fewer["contention_mean"]
    assert 0 < enough["cpu_util_mean"] <= enough["cpu_util_max"] <= 1


# --------------------------------------------------------------------------------------------
# Theory: a small budget of validate.ps_cases (8 seeds x 100k requests, 250k for lognormal).

CFG = dataclasses.replace(V.QUICK, requests=100_000)


@pytest.fixture(scope="module")
def ps_rows():
    return {r["key"]: r for r in V.ps_cases(CFG)}


@pytest.mark.parametrize("key", ["ps_mm1_mean", "ps_mg1_mean", "ps_mmc_mean", "ps_mgc_mean"])
def test_processor_sharing_matches_theory(ps_rows, key):
    # |mean - theory| <= CI + 1% (validate.py, "Pass rules"); the CI is narrow enough that a
    # pass means something: measured ~2-3% of the mean at this budget
    row = ps_rows[key]
    assert row["seeds"] == CFG.seeds
    assert row["ci"] / row["analytic"] < 0.05, row
    assert row["passed"], row


@pytest.mark.parametrize("stem", ["ps_mm1", "ps_mg1", "ps_mmc", "ps_mgc"])
def test_cpu_metrics_match_theory(ps_rows, stem):
    """The same runs: the node's CPU utilisation is rho, the mean contention the mean sojourn
    less E[S] (|mean - theory| <= CI + 1%)."""
    for key in (f"{stem}_cpu_util", f"{stem}_contention"):
        row = ps_rows[key]
        assert row["seeds"] == CFG.seeds
        assert row["ci"] / row["analytic"] < 0.1, row
        assert row["passed"], row


def test_processor_sharing_rejects_the_fifo_answers(ps_rows):
    """Negative controls on the same data: PS is not FIFO. Lognormal cv 3 under FIFO would wait
    per Pollaczek-Khinchine (21 s against PS's 5 s at rho 0.8), and 4 cores are not one core
    four times as fast (M/M/1 at speed 4: 1.25 s against Erlang C's 1.75 s)."""
    rho = CFG.rho
    pk = V.pk_sojourn(rho, 1.0, V.PS_CV ** 2)
    mg1 = ps_rows["ps_mg1_mean"]
    assert abs(mg1["simulated"] - pk) > mg1["ci"] + V.TOL_MEAN * pk
    fast = V.mm1_sojourn(V.PS_CORES * rho, V.PS_CORES)
    mmc = ps_rows["ps_mmc_mean"]
    assert abs(mmc["simulated"] - fast) > mmc["ci"] + V.TOL_MEAN * fast


# --------------------------------------------------------------------------------------------
# node_slow: a gray failure (docs/model.md, "Failures and recovery", "Slow nodes").

SLOW = [{"at": 200.0, "kind": "node_slow", "node": 2, "speed": 0.3}, {"at": 700.0, "kind": "node_slow", "node": 2, "speed": 1.5}]


@pytest.mark.parametrize("strategy", ["round_robin", "least_load"])
def test_node_slow_without_cores_matches_naive(strategy):
    """Without cores a request runs for its demand over its node's speed when it was sent: the
    engine and naive.py agree, and the node's requests really took longer while it was slow."""
    sc = with_faults(scenario(nodes=3, replicas=3, rho=0.5, hop=0.02, requests=2000), SLOW)
    res = simulate(sc, strategy, trace=True, progress=False)
    ref = simulate_naive(sc, strategy)
    assert_trace_matches(res.trace, ref)
    assert_counters_match(res.row(), ref)
    tr = res.trace
    arr, cl = arrivals(sc)
    on2 = cl.task_node[tr["task"].to_numpy()] == 2
    svc = (tr["done"] - tr["start"]).to_numpy() / arr.demand
    t = arr.t
    # service time per unit of demand: 1 before, 1 / 0.3 while slow, 1 / 1.5 after (sent then)
    np.testing.assert_allclose(svc[on2 & (t < 199)], 1.0, rtol=1e-9)
    np.testing.assert_allclose(svc[on2 & (t > 200) & (t < 700)], 1 / 0.3, rtol=1e-9)
    np.testing.assert_allclose(svc[on2 & (t > 700)], 1 / 1.5, rtol=1e-9)
    assert res.row()["failed"] == 0 and res.row()["crashes"] == 0      # no health check notices it
    assert res.faults["kind"].to_list() == ["node_slow", "node_slow"]


# --------------------------------------------------------------------------------------------
# least_node_load (strategies/least_node_load.py)

def test_least_node_load_reads_the_nodes():
    """With cores its decisions follow the nodes' loads, not least_load's (the tasks' own); without
    cores there is no node load and it is least_load (the same scan, the same rotation)."""
    sc = scenario(nodes=3, hop=0.02, rho=0.7)
    sc["services"] = copy.deepcopy(TWO_SERVICES)
    plain = [simulate(sc, s, trace=True, progress=False).trace["task"].to_numpy() for s in ("least_load", "least_node_load")]
    np.testing.assert_array_equal(plain[0], plain[1])
    shared = with_cores(sc, 2.0)
    ll, lnl = (simulate(shared, s, trace=True, progress=False).trace["task"].to_numpy()
               for s in ("least_load", "least_node_load"))
    assert (ll != lnl).mean() > 0.05


# --------------------------------------------------------------------------------------------
# cluster.background (lbbench/model/background.py)

def test_background_shares_the_cores_exactly():
    """One worker on a 1-core node with 1 unit of background from t = 100 s: a request served
    after that gets half the core, so its service takes twice its demand (before: its demand)."""
    sc = with_cores(scenario(nodes=1, replicas=1, rho=0.2, requests=600), 1.0)
    sc["cluster"]["background"] = [{"node": 0, "at": 100.0, "load": 1.0}]
    tr = simulate(sc, "round_robin", trace=True, progress=False).trace
    arr, _ = arrivals(sc)
    start, done = tr["start"].to_numpy(), tr["done"].to_numpy()
    before, after = done <= 100.0, start >= 100.0
    assert before.sum() > 10 and after.sum() > 100
    np.testing.assert_allclose((done - start)[before], arr.demand[before], rtol=1e-9)
    np.testing.assert_allclose((done - start)[after], 2 * arr.demand[after], rtol=1e-9)


def test_random_background_is_stationary_and_common_to_strategies():
    """Random batch work is on for a fraction mean_on / (mean_on + mean_off) of the time, from
    the BACKGROUND stream: the same schedule for every strategy (it depends on the seed only)."""
    from lbbench.model.background import build_background
    from lbbench.model.scenario import load_scenario
    sc = scenario(nodes=2)
    sc["cluster"] = {"nodes": 2, "cores": 1.0, "background": [{"nodes": [1], "mean_on": 2.0, "mean_off": 6.0, "load": 3.0}]}
    sc = load_scenario(sc)
    b = build_background(sc, 200_000.0, 7)
    assert (b.node == 1).all() and set(np.unique(b.level)) <= {0.0, 3.0}
    on = np.diff(np.append(b.time, 200_000.0)) * (b.level > 0)
    frac = on.sum() / 200_000.0
    # ~25,000 on/off cycles: the on fraction's standard error is about 0.002
    # (sqrt(Var(0.75 on - 0.25 off) / cycles) / 8 s); the tolerance is 7 of them
    assert abs(frac - 0.25) < 0.015, frac
    np.testing.assert_array_equal(build_background(sc, 200_000.0, 7).time, b.time)
