"""Every registered strategy through the same tests (checker, determinism, valid ids, pickling),
and the research strategies' defining properties, with fixed seeds and confidence intervals
over independent replications:

- power_of_d approaches Mitzenmacher's mean-field sojourn time as the number of tasks grows;
- shortest_expected_delay (and weighted_round_robin) beat round_robin when node speeds differ;
- ring_hash / maglev move only about 1/n of the clients when one of n tasks leaves, and
  rebuild their tables when the candidate list changes;
- with stale information least_load herds and does worse than random, while power_of_d stays
  better than random (Mitzenmacher, "How useful is old information?", 2000).

Every strategy's kernel compiles once (10-20 s on an empty cache) and is then cached on disk
by numba; a test here runs a strategy on a scenario whose kernel the suite compiles anyway
(the heap path for MIXED and the comparisons, `force_heap`), so each built-in costs one
kernel. The contract checker adds the direct-path kernel of a strategy that reads no load, so
the suite checks a set that covers every part of the contract with few such kernels (the
direct path, the load index, per-task state and parameters, the completion hook, per-balancer
state, the client id, the node loads, the request's demand); LBBENCH_CHECK=all checks every
registered strategy.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import lbbench
from lbbench.results import validate as V
from lbbench.model.cluster import build_cluster
from lbbench.engine.kernel import View
from lbbench.model.scenario import load_scenario
from lbbench.engine.run import simulate
from lbbench.strategies import BUILTINS, maglev, ring_hash
from lbbench.strategy import names, resolve
from lbbench.model.workload import Workload

STRATEGIES = names()
# the checker's set (see above): every built-in with LBBENCH_CHECK=all
CHECKED = STRATEGIES if os.environ.get("LBBENCH_CHECK") == "all" else [
    "round_robin", "least_load", "random", "prequal", "join_idle_queue", "bounded_hash", "least_node_load", "sita"]
RESEARCH = ["weighted_round_robin", "power_of_d", "join_idle_queue", "shortest_expected_delay", "never_queue",
            "peak_ewma", "ring_hash", "maglev", "prequal", "bounded_hash", "sita", "least_work_left"]

# Two services, per-node balancers, hops with jitter, mixed speeds, zipf clients.
MIXED = {
    "cluster": {"nodes": 4, "speeds": [1.0, 0.5, 2.0, 1.0]},
    "services": [{"name": "a", "port": 80, "replicas": 5, "workers": 2},
                 {"name": "b", "port": 81, "replicas": 3, "demand": {"dist": "lognormal", "mean": 0.5}}],
    "workload": {"rho": 0.8, "clients": 200, "client_dist": "zipf"},
    "network": {"hop": 0.01, "jitter": 0.004},
    "balancer": {"mode": "per_node", "info": "local", "rr_start": "random"},
    "run": {"requests": 6000},
}


def latency(sc, strategy, seed, params=None, force_heap=False):
    return simulate(sc, strategy, params, seed=seed, progress=False, force_heap=force_heap).row()["latency_mean"]


def paired(sc, a, b, seeds):
    """Per-seed mean latencies of strategies a and b (common random numbers), and the 95%
    t-interval of the mean of a - b."""
    xa = np.array([latency(sc, a, s) for s in seeds])
    xb = np.array([latency(sc, b, s) for s in seeds])
    m, hw = V.t_ci(xa - xb)
    return xa, xb, m, hw


# --------------------------------------------------------------------------------------------
# Every registered strategy, the same tests

def test_every_research_strategy_is_registered_as_a_builtin():
    assert set(RESEARCH) | {"round_robin", "least_load", "random"} <= set(STRATEGIES)
    for name in RESEARCH:
        spec = resolve(name)
        assert spec in BUILTINS
        doc = __import__(f"lbbench.strategies.{name}", fromlist=["x"]).__doc__
        assert "Origin:" in doc and len(spec.description) > 20, name


def test_the_checked_set_is_registered():
    assert set(CHECKED) <= set(STRATEGIES)


@pytest.mark.parametrize("name", CHECKED)
def test_checker_passes(name):
    report = lbbench.check_strategy(name)
    assert report.ok, report.findings
    assert any("scenarios, each run twice" in p for p in report.passed)


@pytest.mark.parametrize("name", STRATEGIES)
def test_deterministic_for_a_fixed_seed(name):
    a = simulate(MIXED, name, seed=3, trace=True, progress=False)
    b = simulate(MIXED, name, seed=3, trace=True, progress=False, chunk=1000)
    assert (a.trace["task"].to_numpy() == b.trace["task"].to_numpy()).all()
    assert np.array_equal(a.trace["done"].to_numpy(), b.trace["done"].to_numpy(), equal_nan=True)
    assert a.row()["latency_mean"] == b.row()["latency_mean"]
    c = simulate(MIXED, name, seed=4, progress=False)
    assert c.row()["latency_mean"] != a.row()["latency_mean"]


@pytest.mark.parametrize("name", STRATEGIES)
def test_returned_ids_are_tasks_of_the_request_service(name):
    res = simulate(MIXED, name, seed=5, trace=True, progress=False)
    sc = load_scenario(MIXED)
    cl = build_cluster(sc)
    service = Workload(sc, cl, 5).chunk(sc.n_requests).service
    tasks = res.trace["task"].to_numpy()
    assert (tasks >= 0).all()
    assert (cl.task_service[tasks] == service).all()
    # every strategy sends work to more than one task of each service
    for s in (0, 1):
        assert len(np.unique(tasks[service == s])) > 1, (name, s)


@pytest.mark.parametrize("name", STRATEGIES)
def test_spec_pickles_by_reference(name):
    spec = resolve(name)
    assert pickle.loads(pickle.dumps(spec)) is spec


@pytest.mark.parametrize("name", STRATEGIES)
def test_listed_with_version_parameters_and_description(name, capsys):
    from lbbench.cli import main
    with pytest.raises(SystemExit):
        main(["strategies"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(name + " "))
    spec = resolve(name)
    assert f"(v{spec.version}" in line and spec.description in line
    for p in spec.params:
        assert f"{p.name}={p.default:g}" in line


def test_load_aware_research_strategies_beat_random_with_mixed_speeds():
    """A sanity floor: on 20 tasks of speeds 0.9 and 1.1 at rho 0.8 (one central balancer,
    global information; random is stable, W ~ 6.7), every research strategy that reads speeds,
    loads or latencies beats random by far, seed by seed."""
    sc = V.theory_scenario(20, 0.8, 60_000)
    sc["cluster"]["speeds"] = [0.9, 1.1] * 10
    seeds = [11, 12, 13]
    # the heap path for every strategy (the direct path gives the same results, test_engine_props):
    # the kernels the tests above compiled, none more
    rnd = [latency(sc, "random", s, force_heap=True) for s in seeds]
    for name in ["weighted_round_robin", "power_of_d", "join_idle_queue", "shortest_expected_delay", "never_queue",
                 "peak_ewma", "prequal"]:
        got = [latency(sc, name, s, force_heap=True) for s in seeds]
        assert all(g < 0.6 * r for g, r in zip(got, rnd)), (name, got, rnd)


# --------------------------------------------------------------------------------------------
# power_of_d and the mean-field limit

def test_power_of_d_approaches_the_mean_field_limit():
    rho = 0.9
    w_inf = V.power_of_d_mean_field_sojourn(2, rho)
    seeds = [101, 102, 103, 104, 105, 106]
    gaps = {}
    for n in (10, 30, 100):
        w, hw = V.t_ci(latency(V.theory_scenario(n, rho, 200_000), "power_of_d", s) for s in seeds)
        assert hw / w < 0.02                        # narrow enough to resolve the gaps below
        gaps[n] = (w - w_inf, hw)
    # the finite-n system is slower than its limit, by less as n grows (O(1/n))
    assert gaps[10][0] - gaps[10][1] > gaps[30][0] + gaps[30][1]
    assert gaps[30][0] - gaps[30][1] > gaps[100][0] + gaps[100][1]
    assert gaps[10][0] > 0.10 * w_inf
    assert abs(gaps[100][0]) <= gaps[100][1] + (V.TOL_MEAN + V.POD_FINITE_N / 100) * w_inf
    # and it is far from random (M/M/1: 10) and from least-load's JSQ
    assert w_inf < 0.3 * V.mm1_sojourn(rho, 1.0)


def test_validate_includes_the_power_of_d_row():
    cfg = V.Config(n=10, rho=0.8, requests=150_000, seeds=5)
    rows = V.power_of_d_cases(cfg)
    assert [r["key"] for r in rows] == ["pod_mean"]
    row = rows[0]
    assert row["passed"] and row["seeds"] == 5 and row["ci"] / row["analytic"] < 0.02, row
    assert row["analytic"] == pytest.approx(V.power_of_d_mean_field_sojourn(2, 0.8))
    # the same rule rejects d = 1 (random) against the d = 2 limit
    bad = V.compare("x", "x", "=", row["analytic"], [5.0, 5.1, 4.9], row["tol"])
    assert not bad["passed"]


# --------------------------------------------------------------------------------------------
# Speeds

def test_shortest_expected_delay_beats_round_robin_when_speeds_differ():
    sc = {"cluster": {"nodes": 4, "speeds": [1.5, 1.0, 1.0, 0.5]}, "services": [{"replicas": 4}],
          "workload": {"rho": 0.45}, "balancer": {"mode": "central", "info": "global", "rr_start": "zero"},
          "run": {"requests": 100_000}}
    seeds = [21, 22, 23, 24]
    sed, rr, m, hw = paired(sc, "shortest_expected_delay", "round_robin", seeds)
    assert (sed < rr).all()
    assert m + hw < 0 and sed.mean() < 0.5 * rr.mean()
    wrr, _, m, hw = paired(sc, "weighted_round_robin", "round_robin", seeds)
    assert m + hw < 0
    # with equal speeds SED is least-load (same ties), not a speed effect
    eq = {**sc, "cluster": {"nodes": 4}}
    assert latency(eq, "shortest_expected_delay", 21) == latency(eq, "least_load", 21)


def test_weighted_round_robin_shares_follow_speed_and_interleave():
    sc = {"cluster": {"nodes": 3, "speeds": [2.0, 1.0, 1.0]}, "services": [{"replicas": 3}],
          "workload": {"rho": 0.5}, "balancer": {"mode": "central", "rr_start": "zero"},
          "run": {"requests": 4000, "warmup": 0}}
    tasks = simulate(sc, "weighted_round_robin", trace=True, progress=False).trace["task"].to_numpy()
    cl = build_cluster(load_scenario(sc))
    fast = int(np.flatnonzero(cl.task_speed == 2.0)[0])
    # every cycle of 4 decisions holds the exact shares 2:1:1 (smooth: a b c a, a b c a, ...)
    for cycle in tasks.reshape(-1, 4):
        assert sorted(np.bincount(cycle, minlength=3)) == [1, 1, 2] and (cycle == fast).sum() == 2
    power0 = simulate(sc, "weighted_round_robin", {"power": 0}, trace=True, progress=False).trace["task"].to_numpy()
    rr = simulate(sc, "round_robin", trace=True, progress=False).trace["task"].to_numpy()
    assert (power0 == rr).all()


# --------------------------------------------------------------------------------------------
# Consistent hashing

CLIENTS = range(20_000)


def assignments(mod, cands, param):
    spec = mod.STRATEGY
    state = np.zeros(spec.state_size_for(spec.resolve_params({spec.params[0].name: param})))
    # (maglev's build keeps a cursor per candidate position in the balancer's task_state)
    mod.build(cands, state, *((spec.task_state_array(1, int(cands.max()) + 1)[0],) if spec.task_state else ()),
              float(param))
    return np.array([mod.lookup(state, c) for c in CLIENTS])


@pytest.mark.parametrize("mod,param,limit", [(ring_hash, 160, {20: 1.3, 100: 1.3}),
                                             (maglev, 65537, {20: 1.3, 100: 2.0})], ids=["ring_hash", "maglev"])
def test_one_leaving_task_moves_about_1_over_n_of_clients(mod, param, limit):
    for n in (20, 100):
        cands = (np.arange(n, dtype=np.int32) * 3 + 2)[::-1].copy()
        before = assignments(mod, cands, param)
        gone = cands[n // 3]
        after = assignments(mod, np.delete(cands, n // 3), param)
        assert set(np.unique(before)) == set(cands)            # every task owns clients
        assert gone not in after
        moved = (before != after).mean()
        assert (before == gone).mean() <= moved                # its own clients all move ...
        assert moved <= limit[n] / n, (n, moved)                # ... and few others do
        if mod is ring_hash:
            assert ((before != after) & (before != gone)).sum() == 0


@pytest.mark.parametrize("mod", [ring_hash, maglev], ids=["ring_hash", "maglev"])
def test_tables_are_rebuilt_when_the_candidates_change(mod):
    """select keeps a signature of cands in its state and rebuilds when a task leaves, joins
    or is replaced; the answers equal a fresh table's."""
    spec = mod.STRATEGY
    T = 40
    task_state = spec.task_state_array(1, T)[0]
    view = lambda client: View(np.zeros(T, np.int32), np.zeros(T, np.int32), np.ones(T), 0, 0.0, 0,
                               spec.param_tuple([p.default for p in spec.params]), client, 0, task_state,
                               np.zeros(0, np.int32), np.zeros(0), np.zeros(0), np.zeros(0), 1.0, np.zeros(0),
                               np.zeros((1, 4)), np.zeros(0, np.int32))
    rng = np.zeros(1, np.uint64)
    size = spec.state_size_for(spec.resolve_params({}))
    state = np.zeros(size)
    param = float(spec.params[0].default)
    for cands in (np.arange(0, 30, dtype=np.int32), np.arange(1, 30, dtype=np.int32),
                  np.array([*range(1, 29), 35], dtype=np.int32), np.arange(0, 40, dtype=np.int32)):
        fresh = np.zeros(size)
        # (maglev's build keeps a cursor per candidate position in the balancer's task_state)
        mod.build(cands, fresh, *((spec.task_state_array(1, T)[0],) if spec.task_state else ()), param)
        for c in range(0, 3000, 7):
            assert spec.select(cands, view(c), state, rng) == mod.lookup(fresh, c)


def test_maglev_table_size_must_be_prime():
    with pytest.raises(lbbench.UserError, match="prime"):
        resolve("maglev").resolve_params({"M": 4095})
    assert resolve("maglev").resolve_params({"M": 4093}) == {"M": 4093}


def test_hashing_keeps_a_client_on_its_task():
    sc = {**MIXED, "balancer": {**MIXED["balancer"], "info": "global"}}
    for name in ("ring_hash", "maglev"):
        res = simulate(sc, name, seed=2, trace=True, progress=False)
        scn = load_scenario(sc)
        arr = Workload(scn, build_cluster(scn), 2, need_client=True).chunk(scn.n_requests)
        tasks = res.trace["task"].to_numpy()
        pairs = {}
        for c, s, t in zip(arr.client, arr.service, tasks):
            assert pairs.setdefault((c, s), t) == t, name


def test_maglev_runs_with_a_table_sized_by_M_above_the_old_cap():
    """M = 655373, ten times the 65537 maglev's state was once capped at (its state is sized by
    M, docs/strategies.md): the kernel of the test above sends every request to the task its
    client's slot holds in a table of that size built apart for its service."""
    sc = {**MIXED, "balancer": {**MIXED["balancer"], "info": "global"}}
    m = 655373
    tasks = simulate(sc, "maglev", {"M": m}, seed=2, trace=True, progress=False).trace["task"].to_numpy()
    scn = load_scenario(sc)
    cl = build_cluster(scn)
    arr = Workload(scn, cl, 2, need_client=True).chunk(scn.n_requests)
    spec = maglev.STRATEGY
    tables = []
    for s in range(cl.n_services):
        state = np.zeros(spec.state_size_for({"M": float(m)}))
        cands = cl.table[cl.table_start[s]:cl.table_start[s] + cl.table_len[s]].astype(np.int32)
        maglev.build(cands, state, spec.task_state_array(1, cl.n_tasks)[0], float(m))
        tables.append(state)
    want = np.array([maglev.lookup(tables[s], int(c)) for c, s in zip(arr.client, arr.service)])
    assert len(want) == len(tasks) == 6000 and (tasks == want).all()
    default = simulate(sc, "maglev", seed=2, trace=True, progress=False).trace["task"].to_numpy()
    assert (default != tasks).any()         # the table's size decides some clients' tasks


# --------------------------------------------------------------------------------------------
# Old information

def test_stale_information_least_load_herds_power_of_d_does_not():
    """n = 20 tasks at rho 0.9, a global snapshot every 5 mean service times: least_load
    sends everything to the tasks that looked shortest at the last refresh and does worse than
    random; power_of_d's two choices still beat random (Mitzenmacher 2000)."""
    sc = V.theory_scenario(20, 0.9, 150_000)
    sc["balancer"]["info"] = "stale:5"
    seeds = [31, 32, 33, 34]
    ll, rnd, m, hw = paired(sc, "least_load", "random", seeds)
    assert (ll > rnd).all() and m - hw > 0
    pod, rnd2, m, hw = paired(sc, "power_of_d", "random", seeds)
    assert (rnd2 == rnd).all()
    assert (pod < rnd).all() and m + hw < 0
    # with fresh information least_load is the best of the three
    fresh = V.theory_scenario(20, 0.9, 150_000)
    assert latency(fresh, "least_load", 31) < latency(fresh, "power_of_d", 31) < latency(fresh, "random", 31)


# --------------------------------------------------------------------------------------------
# The other research strategies' defining behaviour

def test_never_queue_prefers_an_idle_task_even_a_slow_one():
    """Task 1 is 8x slower; SED avoids it while another task has a short queue, NQ uses it
    whenever it is idle."""
    sc = {"cluster": {"nodes": 2, "speeds": [1.0, 0.125]}, "services": [{"replicas": 2}],
          "workload": {"rho": 0.6}, "balancer": {"mode": "central", "info": "global"},
          "run": {"requests": 20_000}}
    served = {n: simulate(sc, n, seed=1, progress=False).tasks["served"].to_numpy() for n in
              ("never_queue", "shortest_expected_delay")}
    slow = int(np.argmin(build_cluster(load_scenario(sc)).task_speed))
    assert served["never_queue"][slow] > 1.3 * served["shortest_expected_delay"][slow]


def test_join_idle_queue_dispatches_to_idle_tasks_at_low_load():
    """At rho 0.3 with one balancer and global information almost every request finds an idle
    task in the I-queue, so almost none waits: mean latency close to the service time."""
    sc = V.theory_scenario(20, 0.3, 100_000)
    jiq = latency(sc, "join_idle_queue", 1)
    assert jiq < 1.05 < latency(sc, "random", 1)


def test_peak_ewma_learns_a_slow_task_from_latencies():
    """With a 10x slower node (3% of the capacity), peak_ewma sends it about 4% of the requests,
    not an even 25%, although it never reads speeds: it learns from completed requests."""
    sc = {"cluster": {"nodes": 4, "speeds": [1.0, 1.0, 1.0, 0.1]}, "services": [{"replicas": 4}],
          "workload": {"rho": 0.5}, "balancer": {"mode": "central", "info": "global"},
          "run": {"requests": 20_000}}
    slow = int(np.argmin(build_cluster(load_scenario(sc)).task_speed))
    served = simulate(sc, "peak_ewma", seed=1, progress=False).tasks["served"].to_numpy()
    assert served[slow] < 0.06 * served.sum()


@pytest.mark.parametrize("strategy", ["least_load", "shortest_expected_delay"])
def test_rotations_begin_at_each_balancers_start(strategy):
    """Under `local` information each of 50 per-node balancers knows only its own requests,
    which have completed by its next decision: the loads it sees tie at 0 and its choice is
    its rotation's. Begun at each balancer's start offset (`view.start`, rr_start = "random")
    the rotations spread the load as round-robins do (the same mean latency here); begun all at
    position 0 (rr_start = "zero", IPVS's first-in-list) they move through the list together,
    a herd whose queues triple the mean latency."""
    ov = {"cluster.nodes": 50, "services.0.replicas": 500, "balancer.mode": "per_node", "balancer.info": "local",
          "run.requests": 50_000, "run.warmup": 0.0}
    lat = {(s, start): simulate("reference", s, overrides={**ov, "balancer.rr_start": start},
                                progress=False).row()["latency_mean"]
           for s, start in [("round_robin", "random"), (strategy, "random"), (strategy, "zero")]}
    rr = lat["round_robin", "random"]
    assert lat[strategy, "random"] < 1.05 * rr
    assert lat[strategy, "zero"] > 2.0 * rr
