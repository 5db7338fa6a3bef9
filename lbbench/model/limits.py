"""What the engine can represent, and the checks that keep a run inside it.

Sizes the engine stores in int32 (task ids, worker slots, in-flight slots, nodes) and the
entries of every array it keeps (balancers x tasks, clients x services, windows x nodes) stay
below 2**31; counts fit int64; every time (demands at the slowest speed, delays, the run's
horizon) stays below the latency histogram's top, 2**40 s. A run checks at its start what
needs its horizon (`check_run`, `time_windows`) and at its end that every figure it reports
is a finite number inside the histogram's range (`check_result`). Each refusal is a
`UserError` naming the key and the limit.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UserError

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_SECONDS = 2.0**40           # the latency histogram's top (engine.EMAX), about 35,000 years
MAX_WINDOWS = 1_000_000         # time-series windows of one run
MAX_FAULT_EVENTS = 1_000_000    # random fault events expected over a run
RESOLUTION = 1e-9               # a period shorter than horizon x RESOLUTION is refused
# The largest standard exponential / |standard normal| numpy's ziggurat draws with
# probability above 1e-18 (demands beyond these bounds are never drawn in practice).
EXP_TOP, NORMAL_TOP = 45.0, 9.0


def _g(x: float) -> str:
    return f"{x:.6g}"


def check_run(sc, cl, wl, n_req: int | None) -> float:
    """The run's horizon (time-series windows, random fault schedules): run.duration, else the
    trace's last arrival, else the expected time of run.requests arrivals. Refuses a run whose
    arrival rates, horizon, periods, fault schedule or offered load the engine cannot simulate
    faithfully (needs the cluster and the workload built)."""
    rates = np.asarray(wl.rates, dtype=np.float64)
    if sc.workload.mode == "closed":
        return _check_horizon(sc, cl, closed_horizon(sc, cl, n_req))
    if sc.workload.mode == "sessions":
        # run.duration, else the expected time of run.requests requests at the sessions' rate
        rate = sc.workload.session_rate * sc.workload.session_requests
        return _check_horizon(sc, cl, sc.run.duration if sc.run.duration is not None else n_req / rate)
    if not (math.isfinite(wl.rate) and wl.rate > 0 and np.all(np.isfinite(rates))):
        key = "workload.rho" if sc.workload.rho is not None else "workload.rate"
        raise UserError(f"{key} gives an arrival rate of {_g(wl.rate)} req/s, not a finite positive number; "
                        "scale workload, cluster.speeds or services.*.demand.mean")
    varying = [k for k in ("profile", "profile_csv", "diurnal", "bursts") if getattr(sc.workload, k) is not None]
    if sc.run.duration is not None:
        horizon = sc.run.duration
    elif wl.trace is not None:
        horizon = max(float(wl.trace.time[n_req - 1]), 1e-9)
    elif varying:
        if wl.timechange.p.silent_end:
            raise UserError(f"run.requests: workload.{varying[0]} ends with a rate of 0 for ever, so the run might never "
                            "reach its count of requests; give run.duration instead")
        horizon = wl.expected_time(n_req)
    else:
        horizon = n_req / wl.rate
    _check_horizon(sc, cl, horizon)
    if sc.workload.allow_overload or (sc.workload.rho is not None and not varying):
        return horizon      # rho >= 1 is refused by the scenario's own check
    # a time-varying rate: its mean over the horizon (a peak above capacity may drain)
    work = _offered_work(sc, wl) * (wl.mean_multiplier(horizon) if varying else 1.0)
    for s, svc in enumerate(sc.services):
        util = work[s] / cl.service_capacity(s)
        if util >= 1 and svc.queue_limit == 0:
            key = (f"workload.{varying[0]} (mean over the run)" if varying else
                   "workload.rate" if sc.workload.rate is not None else "workload.trace")
            raise UserError(f"{key} offers service {svc.name!r} a utilisation of {_g(util)} (rate x demand mean / "
                            "capacity) >= 1 with unbounded queues, which never reaches steady state; lower the rate, "
                            "set a queue_limit, or set workload.allow_overload = true")
    return horizon


def closed_horizon(sc, cl, n_req: int | None) -> float:
    """A closed loop's horizon: run.duration, else the shortest time run.requests can take,
    n / X with X = min(users / (think mean + demand mean), capacity) (the asymptotic bound on a
    closed network's throughput; the run itself is as long or longer)."""
    if sc.run.duration is not None:
        return sc.run.duration
    w = np.array([svc.weight for svc in sc.services], dtype=np.float64)
    share = w / w.sum()
    demand = float(sum(p * svc.demand.mean for p, svc in zip(share, sc.services)))
    capacity = sum(cl.service_capacity(s) / svc.demand.mean for s, svc in enumerate(sc.services))
    x = min(sc.workload.users / (sc.workload.think.mean + demand), capacity)
    return n_req / x


def _check_horizon(sc, cl, horizon: float) -> float:
    """Refuses a horizon, stale period or random fault schedule the engine cannot simulate."""
    if not (0 < horizon <= MAX_SECONDS):
        key = "run.duration" if sc.run.duration is not None else "run.requests"
        raise UserError(f"{key}: the run's horizon of {_g(horizon)} s exceeds {_g(MAX_SECONDS)} s (2**40, the latency "
                        "histogram's top); shorten the run or scale its times down")
    floor = horizon * RESOLUTION
    if sc.balancer.info_model.period < floor:
        raise UserError(f"balancer.info {sc.balancer.info}: the period is below the run's time resolution "
                        f"({_g(floor)} s = horizon {_g(horizon)} s x {RESOLUTION:g}); lengthen P")
    for i, rf in enumerate(sc.faults.random):
        top = sc.cluster.nodes if rf.target == "node" else cl.n_tasks
        n = len(rf.targets) if rf.targets is not None else top
        per = horizon / rf.mtbf if rf.target == "task" else 2 * horizon / (rf.mtbf + rf.mttr)
        if n * per > MAX_FAULT_EVENTS:
            raise UserError(f"faults.random.{i}.mtbf {_g(rf.mtbf)} s gives about {_g(n * per)} fault events over the "
                            f"run's {_g(horizon)} s, more than {MAX_FAULT_EVENTS:,}; raise mtbf or shorten the run")
    for i, bg in enumerate(sc.cluster.background):
        if bg.random:
            n = len(bg.nodes) if bg.nodes is not None else sc.cluster.nodes
            per = 2 * horizon / (bg.mean_on + bg.mean_off)
            if n * per > MAX_FAULT_EVENTS:
                raise UserError(f"cluster.background.{i}.mean_on + mean_off {_g(bg.mean_on + bg.mean_off)} s gives about "
                                f"{_g(n * per)} background changes over the run's {_g(horizon)} s, more than "
                                f"{MAX_FAULT_EVENTS:,}; raise them or shorten the run")
    return horizon


def _offered_work(sc, wl) -> np.ndarray:
    """Work per second (demand units) offered to each service: the rate split by the weights
    times the demand mean; for a trace, its arrival rate and its own service/demand columns."""
    means = np.array([svc.demand.mean for svc in sc.services])
    tr = wl.trace
    if tr is None:
        return np.asarray(wl.rates) * means
    n = len(tr)
    svc = tr.cols.get("service")
    share = (np.bincount(svc, minlength=len(means)) / n) if svc is not None else np.asarray(wl.rates) / wl.rate
    if "demand" in tr.cols:
        d = tr.cols["demand"]
        if svc is not None:
            means = np.bincount(svc, weights=d, minlength=len(means)) / np.maximum(np.bincount(svc, minlength=len(means)), 1)
        else:
            means = np.full(len(means), float(d.mean()))
    return wl.rate * share * means


def time_windows(sc, horizon: float) -> tuple[float, int]:
    """The time series' window length and count over the horizon (count 0: no time series)."""
    if not (sc.run.window or sc.run.windows):
        return 1.0, 0
    window = float(sc.run.window) if sc.run.window else horizon / sc.run.windows
    n = math.ceil(horizon * 1.05 / window) + 1
    key = "run.window" if sc.run.window else "run.windows"
    if n > MAX_WINDOWS:
        raise UserError(f"{key}: windows of {_g(window)} s over the run's {_g(horizon)} s make {n:,} windows, more than "
                        f"{MAX_WINDOWS:,}; lengthen run.window")
    if n * sc.cluster.nodes > INT32_MAX:
        raise UserError(f"{key}: {n:,} windows x {sc.cluster.nodes:,} nodes of per-window utilisation exceed "
                        f"{INT32_MAX:,} entries; use fewer windows")
    return window, n


_DUE = ("latency_mean", "latency_p50", "latency_p90", "latency_p99", "latency_p999", "latency_max")


def check_result(row: dict, hist: np.ndarray, window: float) -> None:
    """Fail a run that would report NaN or inf where a number is due, or a latency percentile
    that the histogram clamped (its first or last bucket holds everything beyond its range).
    `window` is the measured window, from the first to the last measured arrival."""
    if row["arrived"] < 2:
        raise UserError(f"the run measured {row['arrived']} request(s): throughput and utilisation need at least two "
                        "measured arrivals; lengthen run.requests or run.duration, or lower run.warmup")
    due = {k: row[k] for k in ("rho", "rate", "sim_time")}
    if row["completed"]:
        due.update((k, row[k]) for k in _DUE)
    due["measured window"] = window
    if window > 0:
        due.update((k, row[k]) for k in ("throughput", "offered_rate_mean", "util_mean", "util_max"))
    bad = [k for k, v in due.items() if not math.isfinite(v)]
    if bad:
        raise UserError(f"the run produced {bad[0]} = {due[bad[0]]} with {row['completed']:,} completed requests: "
                        "its demands or times overflow; scale services.*.demand and the run's times")
    if row["completed"]:
        cum = np.cumsum(hist)
        for q in (0.5, 0.9, 0.99, 0.999):
            b = int(np.searchsorted(cum, q * cum[-1], side="left"))
            if b == 0 or b >= len(hist) - 1:
                raise UserError(f"the run's latency p{q * 100:g} lies outside the latency histogram's range "
                                f"(2**-41 to 2**40 s); scale services.*.demand and network.hop into it")
