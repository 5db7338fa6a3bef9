"""Closed loop (workload.mode = "closed"; docs/model.md, "Closed loop"): the engine agrees with
the reference simulator request by request, common random numbers hold per user, results do
not depend on the chunk size, the counters add up, and one FIFO task with N exponential users
gives the finite-source (machine-repairman, M/M/1//N) queue's throughput and response time."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lbbench.engine.run import simulate
from lbbench.errors import UserError
from lbbench.model.scenario import load_scenario

from naive import COMPLETED, FAILED, REJECTED, simulate_naive
from simcheck import ORCHESTRATED as STRATEGIES, assert_counters_match, assert_trace_matches, rows_equal, scenario


def closed(users=8, think=None, **kw) -> dict:
    """A small closed-loop scenario: `scenario(...)` with its users instead of a rate."""
    d = scenario(**kw)
    d["workload"] = {"mode": "closed", "users": users, "think": think or {"dist": "exponential", "mean": 2.0},
                     "entry": d["workload"]["entry"]}
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
}


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
    if "services" in features:
        assert len(np.unique(res.tasks.filter(res.tasks["served"] > 0)["service"].to_numpy())) == 2


# the failure case under least_load only: each strategy's kernel with failures is one more
# compile (about 10 s on an empty cache), and what it checks is the engine's, not the strategy's
PAIRS = [(case, s) for case in CASES for s in STRATEGIES if case != "faults_retries" or s == "least_load"]


@pytest.mark.parametrize("case, strategy", PAIRS)
def test_engine_matches_naive(case, strategy):
    sc, features = CASES[case]
    ref = simulate_naive(sc, strategy)
    duration = sc["run"].get("duration") is not None
    res = simulate(sc, strategy, trace=not duration, progress=False, chunk=64)
    if not duration:          # (a trace needs run.requests)
        assert_trace_matches(res.trace, ref)
        np.testing.assert_array_equal(res.trace["user"].to_numpy(), ref.user)
    assert_counters_match(res.row(), ref)
    assert res.row()["requests"] == ref.requests
    np.testing.assert_array_equal(res.tasks["served"].to_numpy(), ref.task_served)
    np.testing.assert_allclose(res.tasks["busy_s"].to_numpy(), ref.task_busy, rtol=1e-9)
    row = res.row()
    assert row["arrived"] == row["completed"] + row["rejected"] + row["failed"] + row["in_flight"]
    assert row["users"] == sc["workload"]["users"]
    _check_features(res, features)


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
    a = simulate(sc, "least_load", trace=True, progress=False, chunk=16)       # 64 rows of draws per user
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
