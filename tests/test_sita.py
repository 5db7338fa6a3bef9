"""Size-aware assignment: `view.demand`, the `work` information model, and the strategies
`sita` (size-interval task assignment with equal load) and `least_work_left`.

Checked against tests/naive.py request by request, against queueing theory (SITA-E's hosts are
M/G/1 queues fed by one demand interval each: Pollaczek-Khinchine; least-work-left with exact
work is one FIFO queue in front of the hosts: an h-worker task, request by request), and the
cut-offs against a numerical integral of each distribution's load. Every run uses the kernels
test_strategies.py compiles for these two strategies anyway (sita's direct and heap paths,
least_work_left's heap path) and least_load's and round_robin's, which the suite compiles too.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from lbbench.engine.run import simulate
from lbbench.model.scenario import Demand
from lbbench.model.workload import demand_descriptor
from lbbench.results.validate import mmc_sojourn, t_ci
from lbbench.strategies import sita

from naive import simulate_naive
from simcheck import arrivals, assert_counters_match, assert_trace_matches, engine_path, scenario

TWO_SERVICES = [
    {"name": "a", "port": 80, "replicas": 3, "workers": 1, "demand": {"dist": "pareto", "mean": 1.0, "alpha": 1.2,
                                                                       "ratio": 1e4}},
    {"name": "b", "port": 81, "replicas": 3, "workers": 2, "demand": {"dist": "hyperexp", "mean": 0.5, "cv": 3.0}},
]

# name -> (scenario, strategy); sita's cases run on both paths (direct where nothing observes
# in-flight requests, and the heap), least_work_left's on the heap (it reads loads)
CASES = {
    "sita_central_lognormal": (scenario(mode="central", replicas=3, dist="lognormal", rho=0.7, requests=2000), "sita"),
    "sita_two_services_speeds_hop_jitter": (scenario(nodes=4, speeds=[1.0, 0.5, 2.0, 1.0], services=TWO_SERVICES,
                                                     hop=0.02, jitter=0.01, rho=0.75, requests=2000), "sita"),
    "lwl_work_central_speeds_workers": (scenario(mode="central", nodes=4, speeds=[1.0, 0.5, 2.0, 1.0], replicas=4,
                                                 workers=2, info="work", rho=0.85, requests=2000), "least_work_left"),
    "lwl_work_per_node_hop_jitter": (scenario(services=TWO_SERVICES, hop=0.02, jitter=0.02, info="work", rho=0.8,
                                              requests=2000), "least_work_left"),
    "lwl_local_falls_back_to_counts": (scenario(info="local", hop=0.01, rho=0.8, requests=1000), "least_work_left"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_engine_matches_naive(case):
    sc, strategy = CASES[case]
    ref = simulate_naive(sc, strategy)
    for heap in ([False, True] if strategy == "sita" else [True]):
        res = simulate(sc, strategy, trace=True, force_heap=heap, progress=False)
        assert_trace_matches(res.trace, ref)
        assert_counters_match(res.row(), ref)
        np.testing.assert_array_equal(res.tasks["served"].to_numpy(), ref.task_served)
    # not vacuous: every task serves, and sita sends small and large demands to different tasks
    assert (ref.task_served > 0).all()
    if strategy == "sita":
        k = res.trace["task"].to_numpy()
        big = ref.demand > np.median(ref.demand)
        assert set(np.unique(k[big])) != set(np.unique(k[~big]))


def test_sita_takes_the_direct_path_where_nothing_observes_in_flight_requests():
    assert engine_path(CASES["sita_central_lognormal"][0], "sita") == "direct"
    assert engine_path(CASES["lwl_work_central_speeds_workers"][0], "least_work_left") == "heap"


def test_sita_sends_each_demand_interval_to_one_task_in_table_order():
    sc = scenario(mode="central", nodes=3, replicas=3, rho=0.6, requests=3000, dist="lognormal")
    k = simulate(sc, "sita", trace=True, progress=False).trace["task"].to_numpy()
    demand = arrivals(sc)[0].demand
    row = demand_descriptor(Demand(dist="lognormal", mean=1.0))
    cuts = [sita.cutoff(np.array(row), p) for p in (1 / 3, 2 / 3)]
    want = np.searchsorted(cuts, demand, side="right")     # task 0: d < cut 1, task 1: cut 1 <= d < cut 2
    np.testing.assert_array_equal(k, want)
    assert len(np.unique(k)) == 3


def _pdf(row, x):
    code = int(row[0])
    if code == 0:
        return np.exp(-x / row[1]) / row[1]
    if code == 2:
        mu, s = row[1], row[2]
        return np.exp(-(np.log(x) - mu) ** 2 / (2 * s * s)) / (x * s * math.sqrt(2 * math.pi))
    if code == 3:
        a, lo, hi = row[1], row[2], row[3]
        return a * lo**a * x ** (-a - 1) / (1 - (lo / hi) ** a)       # (the grid spans [lo, hi] exactly)
    p1, m1, m2 = row[1], row[2], row[3]
    return p1 * np.exp(-x / m1) / m1 + (1 - p1) * np.exp(-x / m2) / m2


@pytest.mark.parametrize("demand", [dict(dist="exponential", mean=2.0), dict(dist="lognormal", mean=1.0, cv=3.0),
                                    dict(dist="hyperexp", mean=1.0, cv=4.0),
                                    dict(dist="pareto", mean=1.0, alpha=1.1, ratio=1e6),
                                    dict(dist="pareto", mean=3.0, alpha=1.0, ratio=1e3)])
def test_cutoffs_split_the_load_as_asked(demand):
    """The cut-off of share p carries share p of the load: the integral of x f(x) below it over
    the whole, by the trapezoid rule on log x (independent of sita's formulas)."""
    row = np.array(demand_descriptor(Demand(**demand)))
    lo, hi = (row[2], row[3]) if row[0] == 3 else (1e-14 * demand["mean"], 1e4 * demand["mean"])
    u = np.linspace(math.log(lo), math.log(hi), 400_001)
    x = np.exp(u)
    g = x * x * _pdf(row, x)
    cum = np.concatenate([[0.0], np.cumsum((g[1:] + g[:-1]) / 2 * np.diff(u))])
    cum /= cum[-1]
    for p in (0.1, 1 / 3, 0.5, 0.9, 0.999):
        c = sita.cutoff(row, p)
        assert lo < c < hi
        assert abs(np.interp(math.log(c), u, cum) - p) < 1e-6, (p, c)
    assert sita.cutoff(row, 1.0) == math.inf


def _exp_interval_moments(a, b):
    """P(a <= X < b), E[X^2; a <= X < b] of a unit-mean exponential."""
    h = lambda y: 0.0 if math.isinf(y) else math.exp(-y) * (y * y + 2 * y + 2)
    return math.exp(-a) - (0.0 if math.isinf(b) else math.exp(-b)), h(a) - h(b)


def test_sita_e_on_equal_hosts_is_pollaczek_khinchine_per_interval():
    """Two equal FCFS tasks, exponential demand of mean 1, rho 0.7: each task is an M/G/1
    queue at utilisation rho fed by one interval, so the mean sojourn is
    1 + sum_i P_i lam E[X^2; I_i] / (2 (1 - rho)); 8 seeds, within the 95% CI. And each task
    carries half the work (equal load), within its CI."""
    rho, n = 0.7, 2
    sc = scenario(mode="central", nodes=2, replicas=2, rho=rho, requests=60_000)
    c = sita.cutoff(np.array(demand_descriptor(Demand())), 0.5)
    lam = rho * n
    want = 1.0
    for a, b in ((0.0, c), (c, math.inf)):
        p, m2 = _exp_interval_moments(a, b)
        want += p * lam * m2 / (2 * (1 - rho))
    means, shares = [], []
    for seed in range(1, 9):
        res = simulate(sc, "sita", seed=seed, progress=False)
        means.append(res.row()["latency_mean"])
        busy = res.tasks["busy_s"].to_numpy()
        shares.append(busy[0] / busy.sum())
    m, hw = t_ci(means)
    assert abs(m - want) <= hw, (m, hw, want)
    s, shw = t_ci(shares)
    assert abs(s - 0.5) <= shw, (s, shw)


def test_least_work_left_is_one_fifo_queue_in_front_of_the_hosts():
    """With exact work figures a request goes to the task where it starts first: request by
    request, the latencies of 3 single-worker tasks under least_work_left equal those of one
    task with 3 workers (one FIFO queue, M/M/3), and the mean is Erlang C's within its CI."""
    base = dict(mode="central", nodes=3, rho=0.85, requests=30_000, warmup=0.05)
    lwl = scenario(replicas=3, workers=1, info="work", **base)
    one = scenario(replicas=1, workers=3, **base)
    means = []
    for seed in (1, 2, 3, 4, 5, 6):
        a = simulate(lwl, "least_work_left", seed=seed, trace=True, progress=False)
        b = simulate(one, "round_robin", seed=seed, trace=True, progress=False)
        np.testing.assert_array_equal(a.trace["latency"].to_numpy(), b.trace["latency"].to_numpy())
        means.append(a.row()["latency_mean"])
    m, hw = t_ci(means)
    want = mmc_sojourn(3, 3 * 0.85, 1.0)
    assert abs(m - want) <= hw, (m, hw, want)


def test_work_information_shows_global_loads_to_other_strategies():
    """`work` adds view.work; its view.load is `global`'s: least_load decides alike."""
    sc = scenario(info="global", hop=0.02, jitter=0.01, rho=0.85)
    g = simulate(sc, "least_load", trace=True, progress=False)
    w = simulate({**sc, "balancer": {**sc["balancer"], "info": "work"}}, "least_load", trace=True, progress=False)
    np.testing.assert_array_equal(g.trace["task"].to_numpy(), w.trace["task"].to_numpy())
    assert g.row()["latency_mean"] == w.row()["latency_mean"]


def test_least_work_left_without_work_information_is_least_load():
    sc = scenario(info="global", rho=0.9, mode="central", replicas=5)
    a = simulate(sc, "least_work_left", trace=True, progress=False)
    b = simulate(sc, "least_load", trace=True, progress=False)
    np.testing.assert_array_equal(a.trace["task"].to_numpy(), b.trace["task"].to_numpy())
    # and with work it decides otherwise (sizes matter)
    c = simulate({**sc, "balancer": {**sc["balancer"], "info": "work"}}, "least_work_left", trace=True, progress=False)
    assert (c.trace["task"].to_numpy() != a.trace["task"].to_numpy()).mean() > 0.05


def test_strategy_declarations_match_the_scenarios_vocabulary():
    import typing
    from lbbench.plugins.strategy import DEMAND_DISTS
    assert DEMAND_DISTS == typing.get_args(Demand.model_fields["dist"].annotation)
