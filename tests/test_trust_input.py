"""No input gives NaN, inf, a silent cap or a crash: what the engine cannot represent is refused
with one line naming the key and the limit, and a valid value at the edge still runs."""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from lbbench.model import limits
from lbbench.errors import UserError
from lbbench.model.scenario import Demand, load_scenario, validate
from lbbench.engine.run import _Run, simulate
from lbbench.strategy import resolve
from lbbench.model.workload import DemandSampler


def small(**over) -> dict:
    """Two single-worker tasks on two nodes, exponential demand of 10 ms, 3000 requests."""
    sc = {"name": "small", "cluster": {"nodes": 2},
          "services": [{"name": "web", "replicas": 2, "demand": {"dist": "exponential", "mean": 0.01}}],
          "workload": {"rho": 0.5}, "run": {"requests": 3000, "seed": 5}}
    for key, value in over.items():
        node = sc
        *path, last = key.split(".")
        for p in path:
            node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
        node[last] = value
    return sc


def refused(sc, *expect, **kw) -> str:
    with pytest.raises(UserError) as exc:
        simulate(sc, progress=False, **kw)
    msg = str(exc.value)
    assert "\n" not in msg
    for e in expect:
        assert e in msg, msg
    return msg


def build(sc) -> _Run:
    """The run's arrays and start-of-run checks, without simulating."""
    spec = resolve("round_robin")
    return _Run(load_scenario(sc), spec, spec.resolve_params({}), 0, False)


def check_finite(row: dict):
    for k in ("latency_mean", "latency_p50", "latency_p99", "latency_max", "throughput", "util_mean", "util_max"):
        assert math.isfinite(row[k]) and row[k] > 0, (k, row[k])


# --- demand parameters that overflow ------------------------------------------------------

@pytest.mark.parametrize("demand", [
    {"dist": "pareto", "mean": 1e9, "ratio": 1e10},
    {"dist": "pareto", "mean": 1.0, "ratio": 1e300, "alpha": 0.5},
    {"dist": "pareto", "alpha": 1e-300},
    {"dist": "lognormal", "cv": 1e200},
    {"dist": "lognormal", "mean": 1.0, "cv": 1e10},
    {"dist": "hyperexp", "cv": 1e100},
    {"dist": "hyperexp", "cv": 1e200},
    {"dist": "exponential", "mean": 1e308},
], ids=str)
def test_demand_that_overflows_is_refused(demand):
    with pytest.raises(UserError, match=r"services\.0\.demand"):
        load_scenario(small(**{"services.0.demand": demand}))


def test_demand_at_the_edge_runs_and_its_sampler_constants_are_the_validated_ones():
    # the largest exponential mean: its largest draw (45 x mean) is exactly 2**40 s
    edge = limits.MAX_SECONDS / limits.EXP_TOP
    load_scenario(small(**{"services.0.demand.mean": edge}))
    with pytest.raises(UserError, match="services.0.demand"):
        load_scenario(small(**{"services.0.demand.mean": edge * 1.000001}))
    # a heavy but representable Pareto: its top (mean x ratio / factor) stays within 2**40 s
    d = Demand(dist="pareto", mean=1.0, alpha=1.1, ratio=1e9)
    assert d.largest() == pytest.approx(d.constants()["low"] * 1e9)
    s = DemandSampler(d, 0, 0)
    x = s.draw(200_000)
    assert np.all(np.isfinite(x)) and x.min() >= s.low and x.max() <= d.largest() * (1 + 1e-12)
    row = simulate(small(**{"services.0.demand": {"dist": "pareto", "mean": 0.01, "alpha": 1.1, "ratio": 1e6}}),
                   progress=False).row()
    check_finite(row)


def test_a_non_finite_demand_drawn_at_run_time_fails_the_run(monkeypatch):
    real = DemandSampler.draw

    def draw(self, n):
        x = real(self, n)
        if n > 100:
            x[100] = np.inf
        return x

    monkeypatch.setattr(DemandSampler, "draw", draw)
    refused(small(), "services.0.demand drew inf for request 100")


def test_a_result_with_nan_or_inf_where_a_number_is_due_is_a_failure():
    hist = np.zeros(100, dtype=np.int64)
    hist[50] = 10
    row = {"rho": 0.5, "rate": 10.0, "sim_time": 9.0, "completed": 10, "arrived": 10, "throughput": 1.0,
           "offered_rate_mean": 1.1, "util_mean": 0.5, "util_max": 0.6, **{k: 0.1 for k in limits._DUE}}
    limits.check_result(row, hist, 9.0)
    for key, value in [("latency_mean", math.inf), ("latency_p50", math.nan), ("util_mean", math.nan), ("throughput", math.inf),
                       ("offered_rate_mean", math.inf)]:
        with pytest.raises(UserError, match=f"the run produced {key} = {value}"):
            limits.check_result({**row, key: value}, hist, 9.0)
    with pytest.raises(UserError, match="measured window"):
        limits.check_result(row, hist, math.inf)
    # nothing completed: latencies are not due
    limits.check_result({**row, "completed": 0, **{k: math.nan for k in limits._DUE}}, hist, 9.0)
    # fewer than two measured arrivals: no window, no throughput, so no result
    for arrived in (0, 1):
        with pytest.raises(UserError, match=f"the run measured {arrived} request"):
            limits.check_result({**row, "completed": 0, "arrived": arrived, "throughput": math.nan,
                                 "offered_rate_mean": math.nan, "util_mean": math.nan, **{k: math.nan for k in limits._DUE}}, hist, math.nan)


def test_latencies_below_the_histogram_fail_the_run_instead_of_reading_as_its_first_bucket():
    refused(small(**{"services.0.demand": {"dist": "deterministic", "mean": 1e-14}}), "latency p50 lies outside")
    # the smallest demand scale the histogram resolves still gives the right p50
    row = simulate(small(**{"services.0.demand": {"dist": "deterministic", "mean": 1e-11}}), progress=False).row()
    assert row["latency_p50"] == pytest.approx(1e-11, rel=0.01)


# --- time-series windows ------------------------------------------------------------------

def test_windows_beyond_the_cap_are_refused_not_clamped():
    sc = small(**{"run.duration": 100.0, "run.window": 1e-6})
    del sc["run"]["requests"]
    refused(sc, "run.window", "more than 1,000,000")


def test_the_largest_window_count_is_accepted_and_the_time_series_covers_the_run():
    sc = load_scenario(small(**{"run.window": 1.0}))
    horizon = limits.MAX_WINDOWS - 2          # ceil(h * 1.05) + 1 windows
    horizon /= 1.05
    window, n = limits.time_windows(sc, horizon)
    assert n <= limits.MAX_WINDOWS and window == 1.0
    with pytest.raises(UserError, match="run.window"):
        limits.time_windows(sc, horizon * 1.001)
    res = simulate(small(**{"run.window": 0.01}), progress=False)
    ts = res.timeseries
    assert ts["arrivals"].sum() == 3000 and ts.height > 1000


# --- traces -------------------------------------------------------------------------------

def trace_run(tmp_path, df: pl.DataFrame, suffix=".parquet", **over):
    f = tmp_path / f"trace{suffix}"
    df.write_parquet(f) if suffix == ".parquet" else df.write_csv(f)
    sc = small(**over)
    sc["workload"] = {"trace": str(f), **sc["workload"]}
    del sc["workload"]["rho"]
    sc["run"].pop("requests")
    return sc


@pytest.mark.parametrize("column,values,expect", [
    ("time", [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 0, 1)], "convert them to seconds"),
    ("time", [dt.timedelta(0), dt.timedelta(seconds=1)], "convert them to seconds"),
    ("time", ["0.5", "1.5"], "holds String values"),
    ("time", [0.5, None], "1 empty cells"),
    ("entry", [0, None], "1 empty cells"),
    ("service", [0, None], "1 empty cells"),
    ("service", ["web", None], "1 empty cells"),
    ("client", [None, 3], "1 empty cells (the first in data row 1)"),
    ("demand", [0.1, None], "1 empty cells"),
    ("demand", [0.1, math.inf], "has inf in data row 2"),
    ("demand", [0.1, 0.0], "give positive finite seconds"),
    ("demand", [True, False], "holds Boolean"),
    ("entry", [0, -1], "has id -1, outside 0..1"),
    ("entry", [0, 2], "has id 2, outside 0..1"),
    ("entry", [0.0, 1.5], "holds Float64 values; write whole-number ids"),
    ("client", [1, 2**40], "raise workload.clients"),
    ("service", [0, 1], "has id 1, outside 0..0"),
])
def test_trace_columns_are_checked_with_one_line_naming_the_column(tmp_path, column, values, expect):
    cols = {"time": [0.5, 1.0]}
    cols[column] = values
    sc = trace_run(tmp_path, pl.DataFrame(cols, strict=False))
    msg = refused(sc, f"column {column!r}", expect)
    assert msg.startswith("workload.trace")


def test_a_trace_with_integer_times_and_ids_at_their_edges_runs(tmp_path):
    n = 2000
    df = pl.DataFrame({"time": np.arange(n, dtype=np.int64), "entry": np.arange(n) % 2,
                       "client": np.full(n, 999), "demand": np.full(n, 0.5)})
    res = simulate(trace_run(tmp_path, df, suffix=".csv"), progress=False)
    row = res.row()
    assert row["requests"] == n and row["completed"] == row["arrived"] > 0
    assert row["rate"] == pytest.approx(n / (n - 1))
    assert row["latency_mean"] == pytest.approx(0.5)
    check_finite(row)


# --- overload through the rate or a trace ---------------------------------------------------

def test_overload_by_rate_is_refused_like_overload_by_rho():
    rho = refused(small(**{"workload": {"rho": 1.2}}), "allow_overload = true")
    # capacity 2 tasks x 1 worker at speed 1 = 2 s/s; 250 req/s x 10 ms = 2.5 -> utilisation 1.25
    rate = refused(small(**{"workload": {"rate": 250.0}}), "workload.rate offers service 'web' a utilisation of 1.25",
                   "allow_overload = true")
    assert rho.split("never reaches steady state")[1] in rate.replace(" the rate", " rho")
    # weights apply: a second service with 3/4 of the rate and twice the demand
    two = small(**{"workload": {"rate": 100.0}})
    two["services"].append({"name": "api", "port": 81, "replicas": 1, "weight": 3.0, "demand": {"mean": 0.02}})
    refused(two, "service 'api' a utilisation of 1.5")
    two["workload"]["allow_overload"] = True
    two["run"]["requests"] = 500
    assert simulate(two, progress=False).row()["completed"] > 0
    two["workload"]["allow_overload"] = False
    two["services"][1]["queue_limit"] = 5
    assert simulate(two, progress=False).row()["rejected"] > 0
    # just under capacity runs
    assert simulate(small(**{"workload": {"rate": 199.0}, "run.requests": 500}), progress=False).row()["completed"] > 0


def test_overload_by_a_trace_is_refused(tmp_path):
    n = 500
    df = pl.DataFrame({"time": np.arange(n) * 0.004, "demand": np.full(n, 0.01)})     # 250 req/s x 10 ms
    refused(trace_run(tmp_path, df), "workload.trace offers service 'web' a utilisation of 1.25")
    ok = trace_run(tmp_path, df.with_columns(pl.col("demand") * 0.5))
    assert simulate(ok, progress=False).row()["completed"] > 0


# --- sizes the engine stores in int32 --------------------------------------------------------

def test_sizes_beyond_int32_are_refused_and_the_largest_accepted():
    big = {"services": [{"name": "a", "port": 80, "replicas": 1_000_000, "workers": 2147},
                        {"name": "b", "port": 81, "replicas": 483_647, "workers": 1}],
           "cluster": {"nodes": 1}, "balancer": {"mode": "central"}}
    sc = load_scenario(big)                    # 2,147,483,647 worker slots: the int32 limit
    assert sum(s.replicas * s.workers for s in sc.services) == limits.INT32_MAX
    big["services"][1]["workers"] = 2
    with pytest.raises(UserError, match=r"services: replicas x workers summed over services = 2,147,967,294 exceeds"):
        load_scenario(big)
    with pytest.raises(UserError, match=r"cluster.nodes: per-node balancers x tasks"):
        load_scenario({"cluster": {"nodes": 50_000}, "services": [{"replicas": 50_000}]})
    load_scenario({"cluster": {"nodes": 46_340}, "services": [{"replicas": 46_340}]})
    with pytest.raises(UserError, match=r"workload.clients: clients x services \(connections\)"):
        load_scenario(small(**{"balancer.unit": "connection", "workload.clients": 2**30,
                               "services": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}))
    for key, value in [("workload.clients", 2**31), ("services.0.queue_limit", 2**63), ("run.requests", 2**63),
                       ("faults.events", [{"at": 1.0, "kind": "task_crash", "service": 0, "count": 2**64}])]:
        with pytest.raises(UserError, match=key.replace(".", r"\.")):
            load_scenario(small(**{key: value}))


def test_a_run_that_does_not_fit_in_memory_is_a_user_error(monkeypatch):
    import lbbench.engine.run as S

    def no_memory(sc):
        raise MemoryError
    monkeypatch.setattr(S, "build_cluster", no_memory)
    refused(small(), "needs more memory than is available")


# --- periods and schedules ------------------------------------------------------------------

@pytest.mark.parametrize("info", ["stale:1e-300", "stale:1e-9"])
def test_a_refresh_period_below_the_runs_time_resolution_is_refused(info):
    # horizon: 3000 requests at 100 req/s = 30 s; resolution 30 s x 1e-9 = 3e-8 s
    refused(small(**{"balancer.info": info}), f"balancer.info {info}", "time resolution (3e-08 s")


def test_a_refresh_period_just_above_the_resolution_is_accepted():
    run = build(small(**{"balancer.info": "stale:3.1e-8"}))
    assert run.horizon == pytest.approx(30.0)
    row = simulate(small(**{"balancer.info": "stale:0.001"}), progress=False).row()
    check_finite(row)


@pytest.mark.parametrize("spec,expect", [
    ({"target": "task", "mtbf": 1e-9}, "faults.random.0.mtbf 1e-09 s gives about 6e+10 fault events"),
    ({"target": "node", "mtbf": 1e-300, "mttr": 1e-300}, "faults.random.0.mtbf"),
])
def test_a_random_fault_schedule_beyond_its_size_is_refused_before_it_is_built(spec, expect):
    refused(small(**{"faults": {"random": [spec]}}), expect)


def test_near_zero_health_delays_and_a_dense_fault_schedule_still_finish():
    sc = small(**{"faults": {"random": [{"target": "task", "mtbf": 0.5}]}, "run.requests": 2000,
                  "health": {"task_detect": 1e-300, "node_detect": 0.0, "restart_delay": 1e-300, "startup": 1e-300}})
    run = build(sc)
    assert len(run.schedule) > 50
    row = simulate(sc, progress=False).row()
    assert row["failed"] > 0 and row["completed"] > 0
    check_finite(row)


@pytest.mark.parametrize("key,value", [("health.restart_delay", 1e300), ("network.hop", 1e300), ("run.duration", 1e300),
                                       ("clients.timeout", 1e20), ("balancer.keepalive", 1e300), ("run.window", 1e13)])
def test_times_beyond_the_histogram_are_refused(key, value):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        load_scenario(small(**{key: value}))


# --- strict types ---------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,expect", [
    ("cluster.nodes", "3", "Input should be a valid integer (got '3')"),
    ("cluster.nodes", True, "Input should be a valid integer (got True)"),
    ("cluster.nodes", 3.0, "Input should be a valid integer (got 3.0)"),
    ("workload.rho", "0.5", "Input should be a valid number (got '0.5')"),
    ("workload.rho", True, "Input should be a valid number (got True)"),
    ("services.0.name", 7, "Input should be a valid string (got 7)"),
    ("run.drain", 1, "Input should be a valid boolean (got 1)"),
    ("workload.entry", 3, "workload.entry: Input should be a valid string (got 3)"),
    ("cluster.speeds", [1, "2"], "cluster.speeds.1: Input should be a valid number"),
])
def test_types_are_strict(key, value, expect):
    with pytest.raises(UserError) as exc:
        load_scenario(small(**{key: value}))
    assert f"{key.split('.')[0]}" in str(exc.value) and expect in str(exc.value), str(exc.value)


def test_floats_accept_integers_and_every_preset_survives_a_json_round_trip():
    sc = load_scenario(small(**{"services.0.demand.mean": 1, "network.hop": 0, "cluster.speeds": [1, 2]}))
    assert sc.services[0].demand.mean == 1.0 and isinstance(sc.network.hop, float)
    from lbbench.model.scenario import PRESETS
    for name in PRESETS:
        s = load_scenario(name)
        assert validate(s.model_dump(mode="json")) == s
    assert validate(sc.model_dump(mode="json")) == sc
