"""Properties of the engine: determinism, chunk-size invariance, conservation, direct path ==
heap path, common random numbers, and a property test over random small scenarios (which also
checks agreement with naive.py)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from lbbench.model.cluster import build_cluster
from lbbench.model.scenario import load_scenario
from lbbench.engine.run import simulate
from lbbench.model.workload import Workload

from naive import COMPLETED, FAILED, IN_FLIGHT, REJECTED, simulate_naive
from simcheck import (STRATEGIES, arrivals, assert_counters_match, assert_trace_matches, engine_path,
                      rows_equal, scenario)

# A longer fuzzing campaign: LBBENCH_FUZZ_EXAMPLES=2000 pytest tests/test_engine_props.py tests/test_faults.py
FUZZ_EXAMPLES = int(os.environ.get("LBBENCH_FUZZ_EXAMPLES", "0"))

# Everything at once: hops with jitter, several workers, speeds, queue limits, stale information.
BUSY = scenario(nodes=4, speeds=[1.0, 0.5, 2.0, 1.5], replicas=5, workers=2, queue_limit=2, rho=1.05,
                hop=0.04, jitter=0.03, info="stale:0.5", requests=2000)


def run(sc, strategy, **kw):
    return simulate(sc, strategy, progress=False, **kw)


def same_frames(a, b):
    """Two polars frames are equal (NaN equal to NaN)."""
    assert a.columns == b.columns and a.height == b.height
    for c in a.columns:
        x, y = a[c].to_list(), b[c].to_list()
        for u, v in zip(x, y):
            assert u == v or (isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v)), (c, u, v)


def same_results(a, b, trace: bool):
    """Two runs' results are identical (their summaries, tasks, histograms, traces)."""
    assert rows_equal(a.row(), b.row()) == []
    same_frames(a.tasks, b.tasks)
    assert np.array_equal(a.hist_counts, b.hist_counts)
    if trace:
        same_frames(a.trace, b.trace)
    assert a.row()["completed"] > 100


# --------------------------------------------------------------------------------------------
# Determinism and chunk size

@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_result(strategy):
    a = run(BUSY, strategy, seed=5, trace=True)
    b = run(BUSY, strategy, seed=5, trace=True)
    assert rows_equal(a.row(), b.row()) == []
    same_frames(a.tasks, b.tasks)
    same_frames(a.trace, b.trace)
    assert np.array_equal(a.hist_counts, b.hist_counts)
    c = run(BUSY, strategy, seed=6)
    assert a.row()["latency_mean"] != c.row()["latency_mean"]     # the seed does matter
    assert a.row()["rejected"] > 0


CHUNK_CASES = {
    "requests": BUSY,
    "requests_no_drain": scenario(rho=0.95, hop=0.02, drain=False, workers=2, info="local", requests=2000),
    "duration": scenario(duration=300.0, requests=None, warmup=0.3, hop=0.02, jitter=0.01, queue_limit=1, rho=0.9),
    "duration_no_drain": scenario(duration=300.0, requests=None, warmup=0.2, drain=False, rho=0.95, mode="central"),
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("case", list(CHUNK_CASES))
def test_chunk_size_does_not_change_results(case, strategy):
    sc = CHUNK_CASES[case]
    trace = "duration" not in case
    same_results(run(sc, strategy, trace=trace), run(sc, strategy, trace=trace, chunk=7), trace)


# --------------------------------------------------------------------------------------------
# The next chunk of arrivals drawn on a second thread while the kernel runs (simulate's
# prefetch): the same chunks in the same order, so the same results, and no thread left behind.

PREFETCH_CASES = dict(CHUNK_CASES, faults_retries=dict(
    scenario(nodes=3, replicas=5, workers=2, queue_limit=2, rho=0.9, hop=0.01, info="local", requests=2500),
    faults={"events": [{"at": 250.0, "kind": "task_crash", "service": "web", "count": 3},
                       {"at": 600.0, "kind": "node_down", "node": 1}], "random": []},
    health={"task_detect": 20.0, "node_detect": 30.0, "restart_delay": 5.0, "startup": 3.0},
    clients={"retries": 2, "backoff": 0.5, "timeout": 6.0}))


def _live_threads():
    import threading
    return {t for t in threading.enumerate() if t.name.startswith("lbbench-arrivals")}


@pytest.mark.parametrize("strategy", ["round_robin", "least_load"])
@pytest.mark.parametrize("case", list(PREFETCH_CASES))
def test_prefetching_arrivals_does_not_change_results(case, strategy):
    sc = PREFETCH_CASES[case]
    trace = "duration" not in case
    same_results(run(sc, strategy, trace=trace, chunk=13, prefetch=False),
                 run(sc, strategy, trace=trace, chunk=13, prefetch=True), trace)
    assert not _live_threads()


def test_prefetching_a_trace_driven_run_does_not_change_results(tmp_path):
    import polars as pl
    n = 3000
    f = tmp_path / "arrivals.csv"
    rng = np.random.default_rng(4)
    pl.DataFrame({"time": np.cumsum(rng.exponential(0.3, n)), "demand": rng.exponential(0.8, n)}).write_csv(f)
    sc = dict(scenario(hop=0.01, requests=None), workload={"trace": str(f), "entry": "uniform"})
    a = run(sc, "least_load", trace=True, chunk=100, prefetch=False)
    b = run(sc, "least_load", trace=True, chunk=100, prefetch=True)
    assert a.row()["arrived"] == n - int(math.floor(0.1 * n))
    assert rows_equal(a.row(), b.row()) == []
    same_frames(a.trace, b.trace)
    assert not _live_threads()


def test_the_arrivals_thread_is_used_and_ends_with_the_run(monkeypatch):
    """A many-chunk run draws on the thread (and a one-chunk run starts none); the thread is
    gone when simulate returns, also when the plugin fails mid-run."""
    import lbbench.engine.run as simulation
    started = []
    real = simulation.ThreadPoolExecutor

    def counting(*a, **k):
        started.append(1)
        return real(*a, **k)
    monkeypatch.setattr(simulation, "ThreadPoolExecutor", counting)
    run(CHUNK_CASES["requests"], "round_robin", chunk=50, prefetch=True)
    assert started and not _live_threads()
    started.clear()
    run(CHUNK_CASES["requests"], "round_robin", prefetch=True)      # 2,000 requests: one chunk
    assert not started
    from lbbench.errors import StrategyError
    with pytest.raises(StrategyError, match="raised.*IndexError"):
        run(CHUNK_CASES["requests"], f"{Path(__file__).parent / 'plugins' / 'faulty.py'}:STRATEGY", params={"mode": 3},
            chunk=50, prefetch=True)
    assert not _live_threads()


def test_a_chunk_drawn_ahead_must_be_the_one_needed():
    """The kernel trusts the number of arrivals it is given (the trace arrays are sized by the
    run's), so a chunk drawn ahead of another size is refused, never used."""
    from concurrent.futures import Future

    from lbbench.engine.run import _take
    f = Future()
    f.set_result("chunk")
    assert _take((13, f), 13) == "chunk"
    with pytest.raises(RuntimeError, match="drawn ahead: 13, needed 12"):
        _take((13, f), 12)


def test_a_sweep_worker_draws_its_arrivals_on_its_own_thread(monkeypatch, tmp_path):
    """A sweep's parallelism is its workers: their runs start no second thread."""
    import lbbench.engine.run as simulation
    from lbbench.experiments.sweep import execute, load_sweep
    started = []
    monkeypatch.setattr(simulation, "ThreadPoolExecutor", lambda *a, **k: started.append(1))
    monkeypatch.setattr(simulation, "_cpus", lambda: 8)
    spec = load_sweep({"name": "t", "scenario": "reference", "seeds": [1],
                       "set": {"run.requests": 200_000}, "axes": {"strategy": ["round_robin"]}})
    [one] = spec.runs
    assert execute(one)["ok"]
    assert not started


# --------------------------------------------------------------------------------------------
# Conservation: arrived = completed + rejected + failed + in_flight, counted independently.

def _status_counts(res):
    """Counters recomputed from the per-request trace (measured requests only)."""
    sc = res.scenario
    warm = int(math.floor(sc.run.warmup * sc.n_requests))
    status = res.trace["status"].to_numpy()
    assert status.min() >= 0, "a request was never processed"
    m = status[warm:]
    return {"arrived": len(m), "completed": int((m == COMPLETED).sum()), "rejected": int((m == REJECTED).sum()),
            "failed": int((m == FAILED).sum()), "in_flight": int((m == IN_FLIGHT).sum())}


CONSERVATION = {
    "drain_queue_limit": (BUSY, False),
    "no_drain": (scenario(drain=False, rho=0.95, workers=2, requests=1500), True),
    "no_drain_queue_limit_hop": (scenario(drain=False, rho=1.2, queue_limit=3, hop=0.2, jitter=0.1, requests=1500), True),
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("case", list(CONSERVATION))
def test_conservation_from_the_trace(case, strategy):
    sc, in_flight_expected = CONSERVATION[case]
    res = run(sc, strategy, trace=True)
    row = res.row()
    counts = _status_counts(res)
    for k, v in counts.items():
        assert row[k] == v, (k, row[k], v)
    assert row["arrived"] == row["completed"] + row["rejected"] + row["failed"] + row["in_flight"]
    assert res.tasks["served"].sum() == row["completed"]
    assert (row["in_flight"] > 0) == in_flight_expected
    assert row["completed"] > 0


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("drain", [True, False])
def test_conservation_duration_runs(strategy, drain):
    """Duration-bounded: the measured arrivals are exactly those in [warmup * D, D), and the
    status counts agree with naive.py (which tracks each request's status separately)."""
    D, w = 250.0, 0.2
    sc = scenario(duration=D, requests=None, warmup=w, drain=drain, rho=0.95, queue_limit=2, hop=0.05)
    res = run(sc, strategy, chunk=50)
    row = res.row()
    s = load_scenario(sc)
    wl = Workload(s, build_cluster(s), s.run.seed)
    t = np.concatenate([wl.chunk(1000).t for _ in range(3)])
    assert t[-1] >= D
    assert row["requests"] == int((t < D).sum())
    assert row["arrived"] == int(((t >= w * D) & (t < D)).sum())
    assert row["arrived"] == row["completed"] + row["rejected"] + row["failed"] + row["in_flight"]
    assert (row["in_flight"] == 0) == drain
    assert row["in_flight"] >= 0 and row["rejected"] > 0
    assert_counters_match(row, simulate_naive(sc, strategy))


# --------------------------------------------------------------------------------------------
# The direct path (completion known at dispatch) equals the general heap path.

DIRECT_CASES = {
    "central": scenario(mode="central", replicas=5, rho=0.9),
    "per_node_hop_0": scenario(workers=3, replicas=3, speeds=[1.0, 2.0, 0.5], rho=0.85, dist="lognormal"),
    "single_entry_hop": scenario(entry="single:2", hop=0.05, nodes=3, replicas=6, rr_start="zero"),
}


@pytest.mark.parametrize("strategy", ["round_robin", "random"])
@pytest.mark.parametrize("case", list(DIRECT_CASES))
def test_direct_path_equals_heap_path(case, strategy):
    sc = DIRECT_CASES[case]
    assert engine_path(sc, strategy) == "direct" and engine_path(sc, strategy, force_heap=True) == "heap"
    a = run(sc, strategy, trace=True)
    b = run(sc, strategy, trace=True, force_heap=True)
    ra, rb = a.row(), b.row()
    for k in ("requests", "arrived", "completed", "rejected", "failed", "in_flight", "cross_node_frac"):
        assert ra[k] == rb[k], k
    assert math.isclose(ra["latency_mean"], rb["latency_mean"], rel_tol=1e-9)
    np.testing.assert_array_equal(a.trace["task"].to_numpy(), b.trace["task"].to_numpy())
    np.testing.assert_array_equal(a.trace["status"].to_numpy(), b.trace["status"].to_numpy())
    for c in ("start", "done", "latency"):
        np.testing.assert_allclose(a.trace[c].to_numpy(), b.trace[c].to_numpy(), rtol=1e-9)
    np.testing.assert_array_equal(a.tasks["served"].to_numpy(), b.tasks["served"].to_numpy())


# --------------------------------------------------------------------------------------------
# Common random numbers

CRN = scenario(nodes=4, entry=[0.4, 0.3, 0.0, 0.3], hop=0.03, jitter=0.02, workers=2, requests=1500,
               services=[{"name": "a", "port": 80, "replicas": 4, "demand": {"dist": "hyperexp", "mean": 1.0}},
                         {"name": "b", "port": 81, "replicas": 3, "workers": 2, "demand": {"dist": "pareto", "mean": 0.3}}])


def test_arrivals_are_common_to_every_strategy():
    arr, cl = arrivals(CRN)
    results = {s: run(CRN, s, trace=True) for s in STRATEGIES}
    demand = {}
    for s, res in results.items():
        row, tr = res.row(), res.trace
        assert row["requests"] == 1500 and row["arrived"] == 1350
        assert row["sim_time"] == arr.t[-1]
        assert (tr["status"].to_numpy() == COMPLETED).all()
        k = tr["task"].to_numpy()
        # the k-th request has the same demand under every strategy...
        demand[s] = (tr["done"].to_numpy() - tr["start"].to_numpy()) * cl.task_speed[k]
        np.testing.assert_allclose(demand[s], arr.demand, rtol=1e-9)
        # ... and the same service, and never starts before it arrived
        np.testing.assert_array_equal(cl.task_service[k], arr.service)
        assert (tr["start"].to_numpy() >= arr.t).all()
    # the strategies did decide differently
    tasks = [results[s].trace["task"].to_numpy() for s in STRATEGIES]
    assert (tasks[0] != tasks[1]).any() and (tasks[1] != tasks[2]).any()


EDGE_VALUES = [0.0, -0.0, -1.0, 5e-324, 2.0**-1022, 2.0**-41, 2.0**-40, 2.0**-39, 0.5, 1.0, 1.0 - 2**-53,
               1.5, 2.0**39 - 1.0, 2.0**39, 2.0**40, 1e300, math.inf, -math.inf, math.nan]


@seed(7)
@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True) | st.sampled_from(EDGE_VALUES))
def test_time_series_bucket_is_the_histogram_bucket_three_bits_coarser(x):
    """The engine files a latency in the coarse time-series histogram by shifting its fine bucket
    (one bucket computation per request): that must be the coarse rule's own bucket for every
    float, clamps, zero, subnormals, infinities and NaN included."""
    from lbbench.engine import metrics as E
    assert E.SUB // E.TS_SUB == 1 << (E.SUB_BITS - E.TS_SUB_BITS)
    assert E.bucket_of(x) >> (E.SUB_BITS - E.TS_SUB_BITS) == E.ts_bucket_of(x)


@pytest.mark.parametrize("sizes", [[1] * 20 + [480], [7] * 71 + [3], [250, 1, 249]])
def test_workload_does_not_depend_on_chunking(sizes):
    s = load_scenario(dict(CRN, workload={"rho": 0.8, "entry": "uniform", "client_dist": "zipf"}))
    cl = build_cluster(s)
    whole = Workload(s, cl, 9, need_client=True).chunk(sum(sizes))
    wl = Workload(s, cl, 9, need_client=True)
    parts = [wl.chunk(n) for n in sizes]
    assert [p.first for p in parts] == list(np.cumsum([0] + sizes[:-1]))
    for f in ("t", "service", "demand", "entry", "client", "jitter"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, f) for p in parts]), getattr(whole, f), err_msg=f)
    # reading client ids (need_client) changes no other variate
    plain = Workload(s, cl, 9, need_client=False).chunk(sum(sizes))
    for f in ("t", "service", "demand", "entry", "jitter"):
        np.testing.assert_array_equal(getattr(plain, f), getattr(whole, f), err_msg=f)
    assert len(set(whole.service.tolist())) == 2 and len(set(whole.entry.tolist())) == 4


def test_trace_without_clients_draws_them_like_generated_arrivals(tmp_path):
    """A trace with no client column takes its client ids from the same stream and under the
    same law (here Zipf) as generated arrivals: the same ids, whatever the chunking."""
    import polars as pl

    n = 4000
    gen = load_scenario(dict(CRN, workload={"rho": 0.8, "clients": 50, "client_dist": "zipf", "zipf_s": 1.2}))
    cl = build_cluster(gen)
    clients = Workload(gen, cl, 9, need_client=True).chunk(n).client
    f = tmp_path / "arrivals.csv"
    pl.DataFrame({"time": np.arange(1, n + 1) * 0.1}).write_csv(f)
    tr = load_scenario(dict(CRN, run={"requests": None}, workload={"trace": str(f), "clients": 50, "client_dist": "zipf", "zipf_s": 1.2}))
    wl = Workload(tr, build_cluster(tr), 9, need_client=True)
    got = np.concatenate([wl.chunk(k).client for k in (1, 999, 3000)])
    np.testing.assert_array_equal(got, clients)
    # and the law is Zipf's, not uniform: client 0's share within a 99.9% binomial interval
    p0 = 1.0 / np.sum(1.0 / np.arange(1, 51) ** 1.2)
    assert abs(np.mean(got == 0) - p0) < 3.3 * math.sqrt(p0 * (1 - p0) / n)


# --------------------------------------------------------------------------------------------
# Property test over random small scenarios

@st.composite
def small_scenarios(draw):
    nodes = draw(st.integers(1, 5))
    q = draw(st.sampled_from([0, 0, 1, 2, 3]))          # 0 (unbounded) twice as likely
    speeds = draw(st.one_of(st.none(), st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]), min_size=nodes, max_size=nodes)))
    entry = draw(st.sampled_from(["uniform", "single"]))
    sc = scenario(
        nodes=nodes, speeds=speeds, replicas=draw(st.integers(1, 6)), workers=draw(st.integers(1, 3)),
        queue_limit=q, dist=draw(st.sampled_from(["exponential", "deterministic", "lognormal", "hyperexp"])),
        rho=draw(st.sampled_from([0.3, 0.7, 0.9] + ([1.1, 1.5] if q else []))),
        entry=entry if entry == "uniform" else f"single:{draw(st.integers(0, nodes - 1))}",
        hop=draw(st.sampled_from([0.0, 0.01, 0.3])), jitter=draw(st.sampled_from([0.0, 0.0, 0.05, 0.4])),
        mode=draw(st.sampled_from(["per_node", "central"])),
        info=draw(st.sampled_from(["global", "local", "stale:0.3", "stale:2"])),
        rr_start=draw(st.sampled_from(["zero", "random"])),
        requests=draw(st.integers(50, 500)), warmup=draw(st.sampled_from([0.0, 0.1, 0.3])),
        seed=draw(st.integers(0, 10_000)), drain=draw(st.sampled_from([True, True, False])),
    )
    return sc, draw(st.sampled_from(STRATEGIES)), draw(st.booleans())


@seed(20251125)   # fixed: the same 40 examples every run
@settings(max_examples=FUZZ_EXAMPLES or 40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(small_scenarios())
def test_random_small_scenarios(case):
    sc, strategy, force_heap = case
    res = run(sc, strategy, trace=True, force_heap=force_heap)
    row, tr = res.row(), res.trace
    arr, cl = arrivals(sc)
    n = len(arr.t)
    task, status = tr["task"].to_numpy(), tr["status"].to_numpy()
    start, done, latency = (tr[c].to_numpy() for c in ("start", "done", "latency"))

    # conservation, counted from the trace
    counts = _status_counts(res)
    for k, v in counts.items():
        assert row[k] == v, (k, row[k], v)
    assert row["arrived"] == n - int(math.floor(sc["run"]["warmup"] * n))
    if sc["run"]["drain"]:
        assert row["in_flight"] == 0
    if sc["services"][0]["queue_limit"] == 0:
        assert row["rejected"] == 0

    # arrival at the task: after the hop and its jitter
    cross = cl.task_node[task] != arr.entry
    jit = arr.jitter[0::2] if len(arr.jitter) else np.zeros(n)
    ta = arr.t + np.where(cross, sc["network"]["hop"] + jit, 0.0)
    started = ~np.isnan(start)
    svc = arr.demand / cl.task_speed[task]
    # service lasts demand / speed, starts no earlier than the request reached the task
    np.testing.assert_allclose(done[started] - start[started], svc[started], rtol=1e-9, atol=1e-12)
    assert (start[started] >= ta[started]).all()
    comp = status == COMPLETED
    assert (latency[comp] >= svc[comp] - 1e-9).all()
    assert (latency[comp] >= done[comp] - arr.t[comp] - 1e-9).all()
    rej = status == REJECTED
    np.testing.assert_array_equal(done[rej], ta[rej])

    # per task FIFO in order of arrival at the task; never more in service than workers
    for k in np.unique(task[started]):
        m = np.flatnonzero(started & (task == k))
        order = m[np.lexsort((m, ta[m]))]
        assert (np.diff(start[order]) >= 0).all(), f"task {k} is not FIFO"
        w = int(cl.task_workers[k])
        if w == 1:
            assert (start[order][1:] >= done[order][:-1]).all()
        else:
            ev = sorted([(x, 1) for x in start[m]] + [(x, -1) for x in done[m]], key=lambda e: (e[0], e[1]))
            assert max(np.cumsum([e[1] for e in ev])) <= w

    # and request by request the same as the reference simulator
    ref = simulate_naive(sc, strategy)
    assert_trace_matches(tr, ref)
    assert_counters_match(row, ref)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.integers(0, 50), min_size=12, max_size=12), min_size=1, max_size=8),
       st.sampled_from([0.5, 0.9, 0.99, 1.0]))
def test_window_percentiles_are_the_scalar_percentiles(rows, q):
    """The time series' p99 per window (vectorised over windows) is `_percentile` of each
    window's own histogram, empty windows (NaN) included."""
    from lbbench.engine.run import _percentile, _row_percentiles
    counts = np.array(rows, dtype=np.int64)
    counts[0, :] = 0 if len(rows) > 1 else counts[0, :]      # an empty window among others
    edges = np.geomspace(1e-3, 10.0, counts.shape[1] + 1)
    got = _row_percentiles(counts, edges, q)
    want = [_percentile(c, edges, q, math.inf) for c in counts]
    np.testing.assert_array_equal(got, np.asarray(want))


def test_run_state_types_are_kept_by_structure_not_by_object():
    """`Entry` keeps numba's type of a run-state tuple by its fields' kinds: a new run's tuples
    of the same kinds get the same type without numba walking them, and a tuple whose field
    changes dtype, dimensions or writability gets its own."""
    from numba import typeof
    from lbbench.engine.specialise import _tuple_type
    from lbbench.engine.state import Metrics
    base = dict(hist=np.zeros(4, np.int64), task_served=np.zeros(2, np.int64), task_busy=np.zeros(2),
                tr_task=np.zeros(0, np.int32), tr_start=np.zeros(0), tr_done=np.zeros(0), tr_latency=np.zeros(0),
                tr_status=np.zeros(0, np.int8), tr_tries=np.zeros(0, np.int16), tr_user=np.zeros(0, np.int32),
                ts_count=np.zeros((1, 2), np.int64),
                ts_lat_sum=np.zeros(1), ts_hist=np.zeros((1, 3), np.int64), ts_node_busy=np.zeros((1, 2)),
                ts_replicas=np.zeros((0, 1), np.int64))
    a = Metrics(**base)
    b = Metrics(**{k: v.copy() for k, v in base.items()})
    assert _tuple_type(a) is _tuple_type(b) and _tuple_type(a) == typeof(a)
    readonly = np.zeros(2)
    readonly.flags.writeable = False
    for change in (dict(task_busy=np.zeros(2, np.float32)), dict(task_busy=np.zeros((2, 1))),
                   dict(task_busy=readonly), dict(ts_hist=np.zeros((1, 6), np.int64)[:, ::2])):
        c = Metrics(**{**base, **change})
        assert _tuple_type(c) == typeof(c) != typeof(a)
