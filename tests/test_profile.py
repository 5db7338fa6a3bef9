"""Time-varying open-loop arrivals (docs/model.md, "Time-varying arrivals"): profiles (step,
linear, CSV), the diurnal cycle and bursts, by a change of time of the base-rate Poisson stream.

Checked here: the engine agrees with tests/naive.py request by request; the k-th request keeps
its demand, service, entry, client and jitter with and without a profile (common random
numbers) and the times do not depend on the chunk size; realised arrivals per window match the
integral of the rate, and the bursts' long-run rate its formula, within confidence intervals.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from lbbench.engine.run import simulate
from lbbench.model.cluster import build_cluster
from lbbench.model.scenario import load_scenario
from lbbench.model.workload import Workload

from naive import _Rate, simulate_naive
from simcheck import assert_counters_match, assert_trace_matches, scenario

BASE = scenario(hop=0.02, nodes=3, replicas=4, rho=0.6)
STEP = {"profile": [{"at": 0.0, "scale": 1.0}, {"at": 200.0, "scale": 2.0}, {"at": 400.0, "scale": 0.0},
                    {"at": 500.0, "scale": 1.0}]}
LINEAR = {"profile": [{"at": 50.0, "scale": 0.2}, {"at": 300.0, "scale": 1.5}, {"at": 600.0, "scale": 0.5}],
          "profile_shape": "linear"}
DIURNAL = {"diurnal": {"period": 300.0, "amplitude": 0.8, "phase": 30.0}}
BURSTS = {"bursts": {"on": 20.0, "off": 60.0, "scale": 2.5}}
ALL = {**BURSTS, "diurnal": {"period": 300.0, "amplitude": 0.5}, "profile_shape": "linear",
       "profile": [{"at": 0.0, "scale": 0.5}, {"at": 300.0, "scale": 1.2}]}
# A longer period: the base rate gives enough arrivals per knot for the cycle's knot path
# (lbbench/model/profile.py, _invert_runs); the cases above take the arrival-by-arrival one.
DIURNAL_KNOTS = {"diurnal": {"period": 3000.0, "amplitude": 0.8, "phase": 30.0}}
ALL_KNOTS = {**ALL, "diurnal": {"period": 2000.0, "amplitude": 0.9, "phase": 100.0}}


def _with(workload: dict, base=BASE, run=None) -> dict:
    d = {**base, "workload": {**base["workload"], **workload}}
    if run is not None:
        d["run"] = {**{k: v for k, v in base["run"].items() if k != "requests"}, **run}
    return d


def _workload(d: dict, seed: int = 1, need_client: bool = True) -> Workload:
    sc = load_scenario(d)
    return Workload(sc, build_cluster(sc), seed, need_client=need_client)


CASES = {"step": _with(STEP), "linear": _with(LINEAR), "diurnal": _with(DIURNAL), "bursts": _with(BURSTS),
         "all": _with(ALL), "diurnal_knots": _with(DIURNAL_KNOTS), "all_knots": _with(ALL_KNOTS),
         # a duration-bounded run whose rate ends at 0 for ever: it ends by its duration
         "silent_end": _with({"profile": [{"at": 0.0, "scale": 1.0}, {"at": 600.0, "scale": 0.0}], **BURSTS},
                             run={"duration": 900.0})}


@pytest.mark.parametrize("name", sorted(CASES))
def test_engine_agrees_with_naive_request_by_request(name):
    d = CASES[name]
    for strategy in ("round_robin", "least_load"):
        res = simulate(d, strategy, trace=name != "silent_end", progress=False)
        ref = simulate_naive(d, strategy)
        assert_counters_match(res.row(), ref)
        if name != "silent_end":
            assert_trace_matches(res.trace, ref)
    assert res.row()["arrived"] > 500


def test_csv_profile_agrees_with_naive(tmp_path):
    f = tmp_path / "rates.csv"
    f.write_text("time,rate\n0,1.5\n100,4.0\n250,0.5\n400,3.0\n")
    for shape in ("step", "linear"):
        w = {k: v for k, v in BASE["workload"].items() if k != "rho"}
        d = _with({}, base={**BASE, "workload": {**w, "profile_csv": str(f), "profile_shape": shape}})
        res = simulate(d, "round_robin", trace=True, progress=False)
        ref = simulate_naive(d, "round_robin")
        assert_counters_match(res.row(), ref)
        assert_trace_matches(res.trace, ref)
        # the summary's rate is the file's time-average up to its last row
        want = (1.5 * 100 + 4.0 * 150 + 0.5 * 150) / 400 if shape == "step" else (
            (1.5 + 4.0) / 2 * 100 + (4.0 + 0.5) / 2 * 150 + (0.5 + 3.0) / 2 * 150) / 400
        assert res.row()["rate"] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("extra", [STEP, LINEAR, DIURNAL, BURSTS, ALL, DIURNAL_KNOTS, ALL_KNOTS],
                         ids=["step", "linear", "diurnal", "bursts", "all", "diurnal_knots", "all_knots"])
def test_common_random_numbers_and_chunk_independence(extra):
    n = 5000
    plain = _workload(BASE).chunk(n)
    whole = _workload(_with(extra)).chunk(n)
    for f in ("service", "demand", "entry", "client", "jitter"):
        assert np.array_equal(getattr(plain, f), getattr(whole, f)), f
    assert not np.array_equal(plain.t, whole.t)
    assert np.all(np.diff(whole.t) >= 0)
    wl = _workload(_with(extra))
    pieces = np.concatenate([wl.chunk(k).t for k in (1, 2, 997, 3000, 1000)])
    assert np.array_equal(pieces, whole.t)


def _counts_vs_integral(extra: dict, edges: np.ndarray, integral, seeds=range(4)):
    """Realised arrivals per window, pooled over seeds, against the rate's integral: each window
    within 4.5 Poisson standard deviations, and the sum of squared z-scores within the
    chi-square distribution's 99.99% bound."""
    d = _with(extra, base={**BASE, "workload": {"rate": 20.0}})
    counts = np.zeros(len(edges) - 1)
    for seed in seeds:
        wl = _workload(d, seed)
        t = wl.chunk(int(integral(edges[-1]) * 1.3) + 1000).t
        assert t[-1] > edges[-1]
        counts += np.histogram(t, bins=edges)[0]
    want = len(seeds) * np.diff([integral(e) for e in edges])
    assert np.all(counts[want == 0] == 0)       # a rate of 0: no arrival at all
    counts, want = counts[want > 0], want[want > 0]
    z = (counts - want) / np.sqrt(want)
    assert np.all(np.abs(z) < 4.5), z
    k = len(z)
    assert float(np.sum(z * z)) < k + 4.0 * math.sqrt(2 * k) + 10, z


def test_step_profile_arrivals_match_the_integral_of_the_rate():
    pts = STEP["profile"]
    rate = 20.0

    def integral(t):
        total = 0.0
        for j, p in enumerate(pts):
            end = pts[j + 1]["at"] if j + 1 < len(pts) else math.inf
            total += rate * p["scale"] * max(0.0, min(t, end) - p["at"])
        return total
    counts_edges = np.arange(0.0, 801.0, 25.0)
    _counts_vs_integral(STEP, counts_edges, integral)


def test_linear_profile_arrivals_match_the_integral_of_the_rate():
    xs = [p["at"] for p in LINEAR["profile"]]
    ys = [p["scale"] for p in LINEAR["profile"]]
    rate = 20.0

    def integral(t):
        grid = np.array(sorted({0.0, t, *[x for x in xs if x < t]}))     # exact for a piecewise-linear rate
        y = np.interp(grid, xs, ys)
        return rate * float(np.sum(np.diff(grid) * (y[1:] + y[:-1]) / 2))
    _counts_vs_integral(LINEAR, np.arange(0.0, 801.0, 25.0), integral)


def test_diurnal_arrivals_match_the_integral_of_the_rate():
    """The cycle by knots (20 requests per second, 23 per knot): 1 + A sin(w (t - phase))."""
    period, amp, phase, rate = 300.0, 0.8, 30.0, 20.0
    extra = {"diurnal": {"period": period, "amplitude": amp, "phase": phase}}
    assert _workload(_with(extra, base={**BASE, "workload": {"rate": rate}})).timechange.knots
    w = 2 * math.pi / period

    def integral(t):
        return rate * (t + amp * (math.cos(-w * phase) - math.cos(w * (t - phase))) / w)
    _counts_vs_integral(extra, np.arange(0.0, 801.0, 25.0), integral)


# Rates that touch 0 (amplitude 1, a profile from 0 or through 0), where the knot path's Newton
# step does not converge and the safeguarded solve takes over; with the bursts' segments.
HOSTILE = {
    "touching_zero": {"diurnal": {"period": 300.0, "amplitude": 1.0, "phase": 30.0}},
    "from_zero": {"profile": [{"at": 0.0, "scale": 0.0}, {"at": 100.0, "scale": 2.0}], "profile_shape": "linear",
                  "diurnal": {"period": 70.0, "amplitude": 0.95}},
    "silent_stretch": {**STEP, "diurnal": {"period": 150.0, "amplitude": 0.5, "phase": 10.0}},
    "linear": {**LINEAR, "diurnal": {"period": 300.0, "amplitude": 0.9}},
    "all": ALL,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_knot_path_agrees_with_the_arrival_by_arrival_inversion(name):
    """The cycle's two inversions (lbbench/model/profile.py) agree on the same base-rate
    times, given in uneven chunks to the knot path: to 1e-13 of max(t, 1), or, where the rate
    m(t) is near 0 and t is ill-conditioned (both solve M(t) = tau to round-off in M), to
    1e-13 of max(tau, 1) in M (|dt| m(t); m from tests/naive.py)."""
    from lbbench.model.profile import TimeChange
    sc = load_scenario(_with(HOSTILE[name]))
    w = sc.workload
    tau = np.cumsum(np.random.default_rng(7).standard_exponential(60000)) / 40.0
    knots = TimeChange(w, 5, rate=1e9)
    assert knots.knots
    one = TimeChange(w, 5)
    assert not one.knots
    want = one.invert(tau.copy())
    cuts = [0, 1, 2, 500, 20001, 30000, len(tau)]
    got = np.concatenate([knots.invert(tau[a:b].copy()) for a, b in zip(cuts[:-1], cuts[1:])])
    assert np.array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    assert fin.sum() > 1000
    dt = np.abs(got[fin] - want[fin])
    far = np.flatnonzero(dt > 1e-13 * np.maximum(want[fin], 1.0))
    rate = _Rate(sc, 5, 1.0)
    for j in far:
        t = want[fin][j]
        alpha, beta, _ = rate.profile_piece(t)
        m = rate.burst(t)[0] * (alpha + beta * t) * (1.0 + rate.A * math.sin(rate.w * (t - rate.ph)))
        assert dt[j] * m <= 1e-13 * max(tau[fin][j], 1.0), (j, t, dt[j], m)
    assert np.all(np.diff(got[fin]) >= 0)


def test_silent_stretch_has_no_arrivals():
    t = _workload(_with(STEP)).chunk(20000).t
    assert not np.any((t > 400.0) & (t < 500.0))
    assert np.any((t > 500.0) & (t < 510.0)) and np.any((t > 390.0) & (t < 400.0))


def test_bursts_long_run_rate():
    """The MMPP's long-run rate is rate * (off + scale * on) / (on + off): batch means over
    batches much longer than a cycle, within 4 standard errors."""
    on, off, scale, rate = 2.0, 6.0, 4.0, 50.0
    d = _with({"bursts": {"on": on, "off": off, "scale": scale}}, base={**BASE, "workload": {"rate": rate}})
    t = _workload(d, seed=3).chunk(3_000_000).t
    horizon = 0.95 * t[-1]
    batches = np.histogram(t, bins=np.linspace(0.0, horizon, 51))[0] / (horizon / 50)
    mean, se = batches.mean(), batches.std(ddof=1) / math.sqrt(len(batches))
    want = rate * (off + scale * on) / (on + off)
    assert abs(mean - want) < 4 * se, (mean, want, se)
    assert se < 0.02 * want       # precise enough to tell the formula from the base rate


def test_bursts_start_in_the_stationary_distribution():
    """The first period is on with probability on / (on + off): over seeds, the first arrival
    comes in a burst that often (a 4-sigma binomial interval)."""
    on, off = 1.0, 3.0
    d = _with({"bursts": {"on": on, "off": off, "scale": 1e6}}, base={**BASE, "workload": {"rate": 1.0}})
    starts = [_workload(d, seed=s).timechange.on for s in range(1, 401)]
    # the state after the first block of periods is the first period's (blocks are even)
    p = on / (on + off)
    got = np.mean(starts)
    assert abs(got - p) < 4 * math.sqrt(p * (1 - p) / len(starts))


def test_offered_rate_mean_and_time_series():
    res = simulate(BASE, "round_robin", progress=False)
    row = res.row()
    # plain Poisson: the realised rate is the offered rate within its sampling error
    assert abs(row["offered_rate_mean"] - row["rate"]) < 4 * row["rate"] / math.sqrt(row["arrived"])
    ts = res.timeseries
    assert "offered_rate" in ts.columns
    got = np.round((ts["offered_rate"] * (ts["t_end"] - ts["t_start"])).to_numpy()).astype(int)
    assert np.array_equal(got, ts["arrivals"].to_numpy())
    flash = simulate(_with(STEP, run={"duration": 800.0, "window": 50.0}), "round_robin", progress=False)
    ts = flash.timeseries
    quiet = ts.filter((ts["t_start"] >= 400.0) & (ts["t_end"] <= 500.0))
    assert quiet.height == 2 and (quiet["offered_rate"] == 0).all()
    peak = ts.filter((ts["t_start"] >= 200.0) & (ts["t_end"] <= 400.0))["offered_rate"].mean()
    base = ts.filter((ts["t_start"] >= 100.0) & (ts["t_end"] <= 200.0))["offered_rate"].mean()
    assert 1.6 < peak / base < 2.5
    row = flash.row()
    assert row["rate"] == pytest.approx(BASE_RATE)
    assert row["offered_rate_mean"] == pytest.approx(row["arrived"] / (800.0 * 0.9), rel=0.05)


BASE_RATE = 0.6 * 4 / 1.0


def test_requests_with_a_rate_ending_at_zero_are_refused():
    from lbbench.errors import UserError
    d = _with({"profile": [{"at": 0.0, "scale": 1.0}, {"at": 60.0, "scale": 0.0}]})
    with pytest.raises(UserError, match="run.requests: workload.profile ends with a rate of 0 for ever"):
        simulate(d, "round_robin", progress=False)


def test_azure_functions_converter(tmp_path, capsys):
    """`lbbench profile azure-functions` turns one function's per-minute counts into a CSV
    profile that a run reads: arrivals per minute follow the counts."""
    from lbbench.cli import main
    minutes = [str(m) for m in range(1, 1441)]
    counts = np.zeros(1440, dtype=np.int64)
    counts[:30] = 600          # 10 req/s for half an hour, then 60 req/s for ten minutes, then quiet
    counts[30:40] = 3600
    other = np.full(1440, 7)
    f = tmp_path / "invocations_per_function_md.anon.d01.csv"
    head = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(minutes) + "\n"
    f.write_text(head + "o1,a1,fff,http," + ",".join(map(str, counts)) + "\n"
                 + "o1,a1,ggg,timer," + ",".join(map(str, other)) + "\n")
    out = tmp_path / "fff.csv"
    with pytest.raises(SystemExit) as exc:
        main(["profile", "azure-functions", str(f), "--function", "fff", "--out", str(out)])
    assert exc.value.code == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "time,rate" and len(lines) == 1441
    assert lines[1] == "0,10.0" and lines[31] == "1800,60.0" and lines[41] == "2400,0.0"
    d = {"cluster": {"nodes": 1}, "services": [{"replicas": 10, "demand": {"mean": 0.01}}],
         "workload": {"profile_csv": str(out)}, "run": {"duration": 2700.0, "windows": 0}}
    t = _workload(d).chunk(60000).t
    per_min = np.histogram(t, bins=np.arange(0, 2701, 60))[0]
    want = counts[:45]
    assert np.all(np.abs(per_min - want) <= 4.5 * np.sqrt(np.maximum(want, 1)))
    with pytest.raises(SystemExit) as exc:
        main(["profile", "azure-functions", str(f), "--function", "nope"])
    assert exc.value.code == 2
    assert "no function with HashFunction 'nope'" in capsys.readouterr().err


def test_a_drained_flash_crowd_is_stable_and_a_ramp_into_overload_is_not():
    """A transient overload that drains is a steady state on the whole; a rate that rises into
    overload until the end is judged unstable, and the verdict says the rate varies."""
    crowd = simulate("flash-crowd", "round_robin", overrides={"workload.rho": 0.5}, progress=False)
    ts = crowd.timeseries
    assert ts.filter((ts["t_start"] >= 120.0) & (ts["t_end"] <= 180.0))["offered_rate"].mean() > 200   # util 1.5
    assert crowd.row()["stable"] is True and "unstable" not in crowd.extra
    ramp = simulate("seed-mesh", "round_robin", progress=False, overrides={
        "run.duration": 600.0, "run.window": 5.0, "workload.profile_shape": "linear",
        "workload.profile": [{"at": 0.0, "scale": 0.5}, {"at": 600.0, "scale": 1.9}]})
    assert ramp.row()["stable"] is False
    assert "the offered rate varies over time" in ramp.extra["unstable"]
