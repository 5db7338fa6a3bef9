"""Closed loop (workload.mode = "closed"; docs/model.md, "Closed loop"): the engine agrees with
the reference simulator request by request, common random numbers hold per user, results do
not depend on the chunk size, the counters add up, and one FIFO task with N exponential users
gives the finite-source (machine-repairman, M/M/1//N) queue's throughput and response time.

Sessions (workload.mode = "sessions"; docs/model.md, "Sessions") run on the closed loop's
kernels, so they are checked here with the same cases: against the reference simulator,
common random numbers per session, the chunk size, and the request rate at low load."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lbbench.engine.run import SESSION_ROWS, SESSION_SLOTS, simulate
from lbbench.errors import UserError
from lbbench.model.scenario import load_scenario

from naive import COMPLETED, FAILED, REJECTED, simulate_naive
from simcheck import (ORCHESTRATED as STRATEGIES, assert_counters_match, assert_trace_matches, engine_path, rows_equal,
                      scenario)


def closed(users=8, think=None, **kw) -> dict:
    """A small closed-loop scenario: `scenario(...)` with its users instead of a rate."""
    d = scenario(**kw)
    d["workload"] = {"mode": "closed", "users": users, "think": think or {"dist": "exponential", "mean": 2.0},
                     "entry": d["workload"]["entry"]}
    return d


def sessions(rate=0.5, requests_per=4.0, think=None, **kw) -> dict:
    """A small sessions scenario: `scenario(...)` with sessions instead of a rate."""
    d = scenario(**kw)
    d["workload"] = {"mode": "sessions", "session_rate": rate, "session_requests": requests_per,
                     "think": think or {"dist": "exponential", "mean": 2.0}, "entry": d["workload"]["entry"]}
    return d


def _with(d, **sections):
    for key, value in sections.items():
        d[key] = value
    return d


TWO_SERVICES = [
    {"name": "a", "port": 80, "replicas": 3, "workers": 1, "weight": 2.0, "demand": {"dist": "exponential", "mean": 1.0}},
    {"name": "b", "port": 81, "replicas": 2, "workers": 2, "demand": {"dist": "hyperexp", "mean": 0.5, "cv": 2.0}},
]

# name -> (scenario, what must be seen in the run)
CASES = {
    "hop_jitter_local": (closed(12, {"dist": "lognormal", "mean": 2.0, "cv": 2.0}, hop=0.05, jitter=0.02, info="local",
                                workers=2), {"cross"}),
    "stale_central_two_services": (closed(10, services=TWO_SERVICES, info="stale:0.5", mode="central", hop=0.01),
                                   {"cross", "services"}),
    # deterministic think times: users send at equal times (lowest user first); no hop, so that
    # no two requests reach a task at one instant after a hop (docs/model.md, "Event order")
    "queue_limit_single_entry": (closed(9, {"dist": "deterministic", "mean": 0.5}, queue_limit=1, entry="single:1",
                                        replicas=3), {"reject", "cross"}),
    "duration_no_drain": (closed(6, duration=300.0, drain=False, warmup=0.3, hop=0.05, seed=1), {"in_flight", "cross"}),
    "faults_retries": (_with(closed(10, queue_limit=1, hop=0.02, replicas=4, nodes=3, requests=2500),
                             faults={"events": [{"at": 200.0, "kind": "node_down", "node": 1},
                                                {"at": 400.0, "kind": "node_up", "node": 1}]},
                             health={"task_detect": 3.0, "node_detect": 4.0, "restart_delay": 1.0, "startup": 0.5},
                             clients={"retries": 2, "backoff": 0.2}), {"reject", "fail", "retried", "cross"}),
    "connections": (_with(closed(8, hop=0.03), balancer={"mode": "per_node", "info": "global", "rr_start": "random",
                                                       "unit": "connection", "keepalive": 4.0}), {"cross"}),
    # about 95 sessions at once, 10 requests each on average: the pool of user slots grows past
    # its first 64 and their rows past their first 16 (engine/run.py, more_sessions)
    "sessions_pool_grows": (sessions(0.35, 10.0, {"dist": "lognormal", "mean": 25.0, "cv": 1.5}, hop=0.05, jitter=0.02,
                                     info="local", mean=0.5, requests=2000), {"cross", "sessions", "pool"}),
    "sessions_stale_central_two_services": (sessions(0.4, 3.0, services=TWO_SERVICES, info="stale:0.5", mode="central",
                                                     hop=0.01), {"cross", "services", "sessions"}),
    "sessions_duration_no_drain": (sessions(1.0, 1.0, duration=300.0, drain=False, warmup=0.3, hop=0.05, seed=1),
                                   {"in_flight", "cross", "sessions"}),
    "sessions_faults_retries": (_with(sessions(1.3, 3.0, queue_limit=1, hop=0.02, replicas=4, nodes=3, requests=2500),
                                      faults={"events": [{"at": 200.0, "kind": "node_down", "node": 1},
                                                         {"at": 400.0, "kind": "node_up", "node": 1}]},
                                      health={"task_detect": 3.0, "node_detect": 4.0, "restart_delay": 1.0, "startup": 0.5},
                                      clients={"retries": 2, "backoff": 0.2}), {"reject", "fail", "retried", "cross", "sessions"}),
    # sessions over keep-alive connections: each session is one connection (its first request
    # balanced, the others follow it), its slot's connection row reset for the next session;
    # the pool grows past its first 64 slots, and with them the connection rows
    "sessions_connections_pool": (_with(sessions(0.35, 10.0, {"dist": "lognormal", "mean": 25.0, "cv": 1.5}, hop=0.05,
                                                 mean=0.5, requests=2000),
                                        balancer={"mode": "per_node", "info": "global", "rr_start": "random",
                                                  "unit": "connection"}), {"cross", "sessions", "pool", "one_task"}),
    # a crash takes some sessions' task out of the table: their next request is balanced anew
    # and the new connection carries the rest of the session
    "sessions_connections_crash": (_with(sessions(0.6, 6.0, hop=0.02, replicas=4, nodes=3, requests=2500),
                                         balancer={"mode": "per_node", "info": "local", "rr_start": "random",
                                                   "unit": "connection"},
                                         faults={"events": [{"at": 200.0, "kind": "task_crash", "task": 1},
                                                            {"at": 500.0, "kind": "task_crash", "task": 2}]},
                                         health={"task_detect": 3.0, "node_detect": 4.0, "restart_delay": 1.0,
                                                 "startup": 0.5}), {"cross", "sessions", "fail", "moved"}),
}


def _tasks_per_session(tr):
    ses = tr["session"].to_numpy()
    task = tr["task"].to_numpy()
    pairs = np.unique(np.stack([ses[task >= 0], task[task >= 0]]), axis=1)
    return np.bincount(pairs[0])


def _check_features(res, features):
    row, tr = res.row(), res.trace
    status = tr["status"].to_numpy() if tr is not None else None
    if "cross" in features:
        assert row["cross_node_frac"] > 0
    if "reject" in features:
        assert row["rejected"] > 0 or (status == REJECTED).any()
    if "fail" in features:
        assert row["failed"] > 0 and (status == FAILED).any()
    if "retried" in features:
        assert row["retried"] > 0
    if "in_flight" in features:
        assert row["in_flight"] > 0
    else:
        assert row["in_flight"] == 0
    if "sessions" in features:
        assert row["sessions"] > 0 and row["users"] == 0
    if "pool" in features:      # more sessions at once than the first pool of user slots
        ses = tr["session"].to_numpy()
        first = np.unique(ses, return_index=True)[1]
        last = len(ses) - 1 - np.unique(ses[::-1], return_index=True)[1]
        t1 = tr["done"].to_numpy()
        t0 = t1 - tr["latency"].to_numpy()         # (every request completes in that case)
        ev = np.concatenate([np.ones(len(first)), -np.ones(len(last))])
        order = np.argsort(np.concatenate([t0[first], t1[last]]), kind="stable")
        assert np.cumsum(ev[order]).max() > SESSION_SLOTS
        assert np.bincount(ses).max() + 1 > SESSION_ROWS
    if "services" in features:
        assert len(np.unique(res.tasks.filter(res.tasks["served"] > 0)["service"].to_numpy())) == 2
    if "one_task" in features:      # every session's requests went to one task, sessions to many
        per = _tasks_per_session(tr)
        assert per.max() == 1 and len(np.unique(tr["task"].to_numpy())) > 1
    if "moved" in features:         # some session's task crashed and it went on at another
        assert _tasks_per_session(tr).max() >= 2


# the failure case under least_load only: each strategy's kernel with failures is one more
# compile (about 10 s on an empty cache), and what it checks is the engine's, not the strategy's
# the sessions cases under one strategy each: the closed cases already run both strategies on
# these kernels, and what the sessions cases check is the engine's
ONE = {"faults_retries": "least_load", "sessions_pool_grows": "least_load", "sessions_faults_retries": "least_load",
       "sessions_stale_central_two_services": "round_robin", "sessions_duration_no_drain": "round_robin",
       "sessions_connections_pool": "round_robin", "sessions_connections_crash": "least_load"}
PAIRS = [(case, s) for case in CASES for s in STRATEGIES if ONE.get(case, s) == s]


@pytest.mark.parametrize("case, strategy", PAIRS)
def test_engine_matches_naive(case, strategy):
    sc, features = CASES[case]
    ref = simulate_naive(sc, strategy)
    duration = sc["run"].get("duration") is not None
    res = simulate(sc, strategy, trace=not duration, progress=False, chunk=64)
    mode = sc["workload"]["mode"]
    if not duration:          # (a trace needs run.requests)
        assert_trace_matches(res.trace, ref)
        np.testing.assert_array_equal(res.trace["user" if mode == "closed" else "session"].to_numpy(), ref.user)
    assert_counters_match(res.row(), ref)
    assert res.row()["requests"] == ref.requests
    np.testing.assert_array_equal(res.tasks["served"].to_numpy(), ref.task_served)
    np.testing.assert_allclose(res.tasks["busy_s"].to_numpy(), ref.task_busy, rtol=1e-9)
    row = res.row()
    assert row["arrived"] == row["completed"] + row["rejected"] + row["failed"] + row["in_flight"]
    assert row["users"] == sc["workload"].get("users", 0)
    assert row["sessions"] == ref.sessions
    _check_features(res, features)


# The direct path (docs/architecture.md, "The request path") in a closed loop: each request's
# response time is known at its placement, and with it its user's next send. The same runs on
# the heap path (force_heap) must give the same requests, tasks and times.
DIRECT_CLOSED = {
    # with a hop and several entries: the transit ring, and a stale snapshot's refresh timer
    # that nothing reads on this path
    "ring_stale": closed(10, mode="central", hop=0.01, info="stale:0.5", requests=3000),
    "no_hop_workers": closed(9, {"dist": "lognormal", "mean": 1.0, "cv": 2.0}, workers=2, replicas=3, requests=3000),
    "ring_connections": _with(closed(8, hop=0.03), balancer={"mode": "per_node", "info": "global", "rr_start": "random",
                                                            "unit": "connection", "keepalive": 4.0}),
    # the warm-up's end found by time (run.duration with the drain: the kernel stops there)
    "duration_drain": closed(6, duration=300.0, drain=True, warmup=0.3, hop=0.05, seed=1),
    # one call of the kernel (4096 rows per user) sends 60,000 requests through the ring, which
    # reaches the end of the slot pool and moves back to its start many times
    "ring_wraps": closed(20, hop=0.3, requests=60_000, mean=0.5, replicas=6),
}


@pytest.mark.parametrize("strategy", ["round_robin", "random"])
@pytest.mark.parametrize("case", list(DIRECT_CLOSED))
def test_direct_closed_loop_equals_heap_path(case, strategy):
    sc = DIRECT_CLOSED[case]
    assert engine_path(sc, strategy) == "direct" and engine_path(sc, strategy, force_heap=True) == "heap"
    trace = sc["run"].get("duration") is None
    a = simulate(sc, strategy, trace=trace, progress=False, chunk=1 << 20)
    b = simulate(sc, strategy, trace=trace, progress=False, force_heap=True)
    ra, rb = a.row(), b.row()
    for k in ("requests", "arrived", "completed", "rejected", "failed", "in_flight", "cross_node_frac", "users"):
        assert ra[k] == rb[k], k
    assert math.isclose(ra["latency_mean"], rb["latency_mean"], rel_tol=1e-9)
    assert ra["cross_node_frac"] > 0 or case == "no_hop_workers"
    np.testing.assert_array_equal(a.tasks["served"].to_numpy(), b.tasks["served"].to_numpy())
    if trace:
        for c in ("task", "status", "user"):
            np.testing.assert_array_equal(a.trace[c].to_numpy(), b.trace[c].to_numpy())
        for c in ("start", "done", "latency"):
            np.testing.assert_allclose(a.trace[c].to_numpy(), b.trace[c].to_numpy(), rtol=1e-9)


def test_which_closed_cases_take_the_direct_path():
    # the request-by-request comparison with naive.py covers both paths of round_robin
    assert engine_path(CASES["connections"][0], "round_robin") == "direct"
    assert engine_path(CASES["stale_central_two_services"][0], "round_robin") == "direct"
    assert engine_path(CASES["hop_jitter_local"][0], "round_robin") == "heap"       # (jitter)
    assert engine_path(CASES["sessions_stale_central_two_services"][0], "round_robin") == "heap"   # (sessions)
    assert engine_path(CASES["connections"][0], "least_load") == "heap"             # (it reads loads)


def _per_user(trace, what):
    """Each user's sequence of `what` (a column), in the order of its requests."""
    user = trace["user"].to_numpy()
    x = trace[what].to_numpy() if isinstance(what, str) else what
    return {int(u): x[user == u] for u in np.unique(user)}


def test_common_random_numbers_per_user():
    # The k-th request of a user has the same demand (done - start at speed 1) under every
    # strategy, although the strategies interleave the users differently.
    sc = closed(10, {"dist": "hyperexp", "mean": 1.0, "cv": 3.0}, nodes=2, replicas=3, hop=0.01, requests=2000)
    trs = [simulate(sc, s, trace=True, progress=False).trace for s in ("round_robin", "least_load")]
    assert not np.array_equal(trs[0]["user"].to_numpy(), trs[1]["user"].to_numpy())     # another order...
    demands = [_per_user(tr, (tr["done"] - tr["start"]).to_numpy()) for tr in trs]
    n = 0
    for u in demands[0]:
        k = min(len(demands[0][u]), len(demands[1][u]))
        np.testing.assert_allclose(demands[0][u][:k], demands[1][u][:k], rtol=0, atol=1e-9)   # ...the same draws
        n += k
    assert n > 1500


def test_results_do_not_depend_on_the_chunk_size():
    sc = closed(7, {"dist": "lognormal", "mean": 1.0, "cv": 1.5}, hop=0.02, jitter=0.01, requests=3000)
    a = simulate(sc, "least_load", trace=True, progress=False, chunk=16)       # 128 rows of draws per user
    b = simulate(sc, "least_load", trace=True, progress=False, chunk=1 << 20)  # 4096
    assert not rows_equal(a.row(), b.row())
    assert a.trace.equals(b.trace)


def _mvr(n_users: int, think: float, service: float) -> tuple[float, float]:
    """Mean value analysis of one FIFO exponential server with n_users users of mean think time
    `think` (the finite-source M/M/1//N queue): throughput and mean response time."""
    q = 0.0
    for n in range(1, n_users + 1):
        r = service * (1 + q)
        x = n / (think + r)
        q = x * r
    return x, r


def test_machine_repairman():
    # N = 8 users, think 7 s, service 1 s: utilisation about 0.8. Independent replications;
    # each mean must lie within its 99.9% Student-t interval of the formula.
    n, z, s = 8, 7.0, 1.0
    x_theory, r_theory = _mvr(n, z, s)
    assert 0.75 < x_theory * s < 0.85
    sc = closed(n, {"dist": "exponential", "mean": z}, nodes=1, replicas=1, mean=s, requests=40_000, warmup=0.05)
    xs, rs = [], []
    for seed in range(12):
        row = simulate(sc, "round_robin", seed=seed, progress=False).row()
        xs.append(row["throughput"])
        rs.append(row["latency_mean"])
    t = stats.t.ppf(0.9995, len(xs) - 1)
    for got, want in ((xs, x_theory), (rs, r_theory)):
        half = t * np.std(got, ddof=1) / math.sqrt(len(got))
        assert abs(np.mean(got) - want) < half, (np.mean(got), want, half)
        assert half < 0.02 * want          # the interval is narrow enough to mean something


def test_common_random_numbers_per_session():
    # Session j's arrival and its k-th request's demand are the same under every strategy and
    # chunk size, although the strategies interleave the sessions' requests differently.
    sc = sessions(0.5, 4.0, {"dist": "exponential", "mean": 1.0}, nodes=2, replicas=3, requests=2000,
                  dist="hyperexp")
    sc["services"][0]["demand"]["cv"] = 3.0
    runs = [simulate(sc, s, trace=True, progress=False, chunk=c) for s, c in (("round_robin", 64), ("least_load", 64),
                                                                             ("least_load", 1 << 20))]
    trs = [r.trace for r in runs]
    assert trs[1].equals(trs[2])                        # the chunk size changes nothing
    assert not np.array_equal((trs[0]["done"] - trs[0]["start"]).to_numpy(), (trs[1]["done"] - trs[1]["start"]).to_numpy())
    seen = [_per_session(tr) for tr in trs[:2]]
    n = 0
    for j in seen[0]:
        if j not in seen[1]:
            continue
        (a0, d0), (a1, d1) = seen[0][j], seen[1][j]
        assert a0 == pytest.approx(a1, abs=1e-9)     # its arrival (its first request's)
        k = min(len(d0), len(d1))
        np.testing.assert_allclose(d0[:k], d1[:k], rtol=0, atol=1e-9)
        n += k
    assert n > 1500


def _per_session(trace):
    """Each session's arrival (its first request's: no hop) and its requests' demands in order."""
    ses = trace["session"].to_numpy()
    arrival = (trace["done"] - trace["latency"]).to_numpy()
    demand = (trace["done"] - trace["start"]).to_numpy()
    return {int(j): (arrival[ses == j][0], demand[ses == j]) for j in np.unique(ses)}


def test_sessions_rate_and_length():
    # One exponential FIFO task at low load (utilisation 0.3): sessions at 1/s sending 3
    # requests on average (geometric) with exponential think times. The measured requests per
    # session and the request rate must lie within their 99.9% Student-t intervals (over
    # independent replications) of session_requests and session_rate x session_requests.
    lam, m, s = 1.0, 3.0, 0.1
    sc = sessions(lam, m, {"dist": "exponential", "mean": 1.0}, nodes=1, replicas=1, mean=s, requests=30_000, warmup=0.05)
    per, rate = [], []
    for seed in range(10):
        row = simulate(sc, "round_robin", seed=seed, progress=False).row()
        per.append(row["arrived"] / row["sessions"])
        rate.append(row["rate"])
    assert 0.25 < lam * m * s < 0.35
    t = stats.t.ppf(0.9995, len(per) - 1)
    for got, want in ((per, m), (rate, lam * m)):
        half = t * np.std(got, ddof=1) / math.sqrt(len(got))
        assert abs(np.mean(got) - want) < half, (np.mean(got), want, half)
        assert half < 0.03 * want          # the interval is narrow enough to mean something


@pytest.mark.parametrize("change, key", [
    ({"users": 0}, "workload.users"),
    ({"think": {"dist": "exponential", "mean": -1.0}}, "workload.think.mean"),
    ({"rho": 0.5}, "workload.rho"),
    ({"rate": 10.0}, "workload.rate"),
    ({"users": None}, "workload.users"),
    ({"think": None}, "workload.think"),
])
def test_bad_input_names_the_key(change, key):
    sc = closed(4)
    sc["workload"].update(change)
    sc["workload"] = {k: v for k, v in sc["workload"].items() if v is not None}
    with pytest.raises(UserError) as exc:
        load_scenario(sc)
    assert f": {key}:" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("change, key", [
    ({"session_rate": 0.0}, "workload.session_rate"),
    ({"session_rate": -1.0}, "workload.session_rate"),
    ({"session_requests": 0.5}, "workload.session_requests"),
    ({"rho": 0.5}, "workload.rho"),
    ({"rate": 10.0}, "workload.rate"),
    ({"users": 4}, "workload.users"),
    ({"think": None}, "workload.think"),
    ({"session_rate": None}, "workload.session_rate"),
    ({"session_requests": None}, "workload.session_requests"),
    ({"profile": [{"at": 0.0, "scale": 2.0}]}, "workload.profile"),
])
def test_bad_session_input_names_the_key(change, key):
    sc = sessions()
    sc["workload"].update(change)
    sc["workload"] = {k: v for k, v in sc["workload"].items() if v is not None}
    with pytest.raises(UserError) as exc:
        load_scenario(sc)
    assert f": {key}:" in str(exc.value) and "\n" not in str(exc.value)


def test_session_keys_are_refused_outside_sessions_mode():
    for d in (scenario(), closed(4)):
        d["workload"]["session_rate"] = 1.0
        with pytest.raises(UserError, match="workload.session_rate: only for sessions mode"):
            load_scenario(d)


def test_open_keys_are_refused_outside_closed_mode():
    sc = scenario()
    sc["workload"]["users"] = 5
    with pytest.raises(UserError, match="workload.users: only for closed mode"):
        load_scenario(sc)
    d = closed(4, drain=False)
    with pytest.raises(UserError, match="run.drain"):
        load_scenario(d)


def test_users_override_clears_the_rate():
    sc = load_scenario("seed-mesh", {"workload.mode": "closed", "workload.users": 5, "workload.think.mean": 0.1})
    assert sc.workload.rho is None and sc.workload.users == 5


def test_open_loop_has_no_users():
    row = simulate(scenario(requests=500), "round_robin", progress=False).row()
    assert row["users"] == 0
