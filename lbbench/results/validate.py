"""Check the simulator against queueing theory.

Every case simulates the same small cluster several times with independent seeds and compares
the mean over seeds of a simulated quantity with an analytic value:

    random      -> n independent M/M/1 queues        W = 1 / (mu - lambda_task)
    round_robin -> E_n/M/1 per task (one central balancer: each task gets every n-th arrival)
                   W = 1 / (mu (1 - sigma)),  sigma = A*(mu (1 - sigma)),  A*(s) = (lam/(lam+s))^n
    least_load  -> JSQ with global information: bounded below by the M/M/n central queue
                   (Erlang C) and above by round_robin's E_n/M/1 (JSQ is optimal among
                   non-anticipating policies for identical exponential servers, Winston 1977)
    random, deterministic / lognormal demand -> M/D/1, M/G/1 (Pollaczek-Khinchine)
                   W = rho E[S^2] / (2 E[S] (1 - rho)) + E[S],  E[S^2] = Var + mean^2
    sojourn p99 -> in M/M/1 and GI/M/1 (FCFS) the sojourn time is exponential with mean W, so
                   p99 = ln(100) W (read from the engine's latency histogram)
    power_of_d -> the mean-field limit (Mitzenmacher; Vvedenskaya et al.) of d = 2 choices,
                   W = (1/rho) sum_{i>=1} rho^(2^i - 1), simulated with n = 10 x the case's n
                   tasks; the finite-n gap (O(1/n), ~1-2% at n = 100) is in the tolerance
                   (see `power_of_d_cases`).

plus two checks on every run (the engine exposes no time-average number in system, so it is
rebuilt from a per-request trace):

    little      sample-path Little's law. L = (1/T) * integral over the measured window
                [first, last measured arrival] of N(t), with N(t) counted from arrival times
                regenerated independently by `lbbench.workload.Workload` (same seed) and the
                completion times of the trace. Over a finite window L - lambda W is exactly
                (E2 - E1) / T, where E1 is the time warm-up requests spend in the window and E2
                the time measured requests spend after it; the row passes when every run
                satisfies that identity to 1e-9 (relative). It checks the engine's latency sum,
                counters and window against an independent reconstruction. The row shows the
                ratio throughput * latency_mean / L (mean and CI over runs): its distance from 1
                is the boundary terms, ~1e-4 here.
    throughput  measured throughput / offered rate over all runs (Student-t CI). With
                run.drain = true, throughput = measured arrivals / arrival window, so this
                checks the arrival process and the counters, not the servers.

Public API (what the CLI needs)
-------------------------------
run_validation(quick: bool = True, seeds: int | None = None, progress=None, cfg=None) -> list[dict]
    Runs every case and returns one row per case with keys:
      key       str    stable id: mm1_mean, mm1_p99, enm1_mean, enm1_p99, jsq_lower, jsq_upper,
                       md1_mean, mg1_mean, little, throughput, pod_mean
      case      str    a short name, e.g. "random = M/M/1 mean sojourn"
      kind      str    "=" (match), ">=" / "<=" (simulated value vs a bound), "identity"
      analytic  float  the theory value (or the bound)
      simulated float  mean over seeds
      ci        float  95% Student-t half-width over seeds (independent replications)
      rel_err   float  (simulated - analytic) / analytic
      tol       float  the model tolerance added to the CI (relative to the analytic value)
      passed    bool
      seeds     int    number of independent runs
      note      str    the configuration and anything worth knowing
    quick=True (`QUICK`): n=10 tasks, rho=0.8, 8 seeds x 400k requests per group of runs (1M
    for the lognormal group), 5 groups: ~7 s on 2 cores once numba's cache is warm (the first
    compile of each of the 3 strategies takes ~7-15 s more). quick=False (`FULL`): n=20,
    rho=0.9, 12 seeds x 2M requests: ~35 s warm. `seeds` overrides the seeds per group;
    `progress` is called with one line per group; `cfg` replaces the budget.
    Seeds are fixed (group i uses 1000 (i+1) + j), so the table is reproducible.
format_table(rows) -> str     a fixed-width table, one line per case, a final PASS/FAIL line
all_passed(rows) -> bool      what `lbbench validate` should turn into exit status 0 / 1
Building blocks (used by tests/test_theory.py): Config, QUICK, FULL, run_groups(cfg) -> runs,
theory_rows(cfg, runs), run_checks(runs, rate), compare(...), little_check(result, seed), and
the formulas mm1_sojourn, en_m1_sojourn, gim1_sigma, erlang_c, mmc_sojourn, pk_sojourn, t_ci.

Pass rules
----------
"="   |simulated - analytic| <= ci + tol * |analytic|
">="  simulated - ci >= analytic * (1 - tol)   (the whole CI on the right side of the bound)
"<="  simulated + ci <= analytic * (1 + tol)

Tolerances (TOL_MEAN, TOL_P99): latency_mean is an exact running sum (not the histogram) and
the runs start empty with a 10% warm-up of many relaxation times of the slowest queue
(M/M/1 relaxation time 1/(mu (1-sqrt(rho))^2): 90 s at rho=0.8 against a 5000 s warm-up in
quick mode, 380 s at rho=0.9 against 11000 s in full mode), and the drain completes every
measured request (no end truncation), so the systematic bias of the means is far below 1e-3
relative. The 1% margin is therefore a multiplicity allowance: there are about ten 95%
intervals per validation, and without a margin one of them would miss by chance in ~40% of
validations; with it the threshold is 1.5-2x the half-width (effective level >= 99% per case
at the quick budget). A simulator bug below 1% of the mean latency is not reliably detectable
at this budget anyway. p99 comes from the log-bucketed
histogram, whose bucket midpoints are within 0.8% of any value in the bucket, hence
TOL_P99 = 1% + 0.8%. Bounds use the same 1%. TOL_RATE = 0.05% for throughput / offered rate
(estimator bias ~1/N < 1e-5; the margin is again about one half-width).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
from scipy import optimize, stats

TOL_MEAN = 0.01      # relative; see the module docstring
TOL_P99 = 0.018      # TOL_MEAN + histogram midpoint error (< 0.8%)
TOL_BOUND = 0.01
TOL_RATE = 5e-4      # throughput / offered rate: bias < 1e-5, the rest a multiplicity margin (~1 CI)
LITTLE_EPS = 1e-9    # relative float-rounding allowance for the sample-path Little identity
LN100 = math.log(100.0)


# --------------------------------------------------------------------------------------------
# Analytic formulas (service rate mu = 1 / mean demand, times in seconds).

def mm1_sojourn(lam: float, mu: float) -> float:
    """M/M/1 mean sojourn time 1 / (mu - lam)."""
    if lam >= mu:
        raise ValueError("M/M/1 needs lam < mu")
    return 1.0 / (mu - lam)


def gim1_sigma(laplace: Callable[[float], float], mu: float) -> float:
    """GI/M/1: the root in (0, 1) of sigma = A*(mu (1 - sigma)), A* the interarrival LST."""
    f = lambda s: laplace(mu * (1.0 - s)) - s
    return optimize.brentq(f, 1e-12, 1.0 - 1e-12, xtol=1e-15, rtol=1e-14)


def en_m1_sojourn(n: int, lam_task: float, mu: float) -> float:
    """E_n/M/1 mean sojourn: a task receiving every n-th arrival of a Poisson stream of rate
    n * lam_task (interarrival Erlang(n, n*lam_task), mean 1/lam_task)."""
    lam = n * lam_task
    sigma = gim1_sigma(lambda s: (lam / (lam + s)) ** n, mu)
    return 1.0 / (mu * (1.0 - sigma))


def erlang_c(c: int, a: float) -> float:
    """Probability of waiting in M/M/c with offered load a = lam/mu < c (Erlang B recursion)."""
    if a >= c:
        raise ValueError("Erlang C needs a < c")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return c * b / (c - a * (1.0 - b))


def mmc_sojourn(c: int, lam: float, mu: float) -> float:
    """M/M/c (one central FIFO queue) mean sojourn: C(c, a) / (c mu - lam) + 1/mu."""
    return erlang_c(c, lam / mu) / (c * mu - lam) + 1.0 / mu


def pk_sojourn(lam: float, mean: float, var: float) -> float:
    """M/G/1 mean sojourn (Pollaczek-Khinchine): rho E[S^2] / (2 E[S] (1 - rho)) + E[S]."""
    rho = lam * mean
    if rho >= 1:
        raise ValueError("M/G/1 needs rho < 1")
    es2 = var + mean * mean
    return rho * es2 / (2.0 * mean * (1.0 - rho)) + mean


def power_of_d_mean_field_sojourn(d: int, rho: float) -> float:
    """Mean-field (n -> infinity) mean sojourn of power-of-d choices, mu = 1 (Mitzenmacher;
    Vvedenskaya et al.): the fraction of queues with >= i jobs is rho^((d^i - 1)/(d - 1)), so
    W = (1/rho) * sum_{i>=1} rho^((d^i - 1)/(d - 1)). d = 1 gives M/M/1."""
    if d == 1:
        return 1.0 / (1.0 - rho)
    total, i = 0.0, 1
    while True:
        term = rho ** ((d**i - 1) / (d - 1))
        total += term
        if term < 1e-300 or i > 200:
            break
        i += 1
    return total / rho


POD_D = 2
POD_SCALE = 10          # power_of_d runs use n = POD_SCALE * cfg.n tasks (100 quick, 200 full)
POD_FINITE_N = 2.0      # allowance for the finite-n gap: W_n / W_inf - 1 <= POD_FINITE_N / n


def power_of_d_cases(cfg: "Config", seeds: int | None = None,
                     progress: Callable[[str], None] | None = None) -> list[dict]:
    """`power_of_d` (d = 2, distinct choices, one central balancer, global information) against
    `power_of_d_mean_field_sojourn`, the n -> infinity limit, at n = POD_SCALE * cfg.n tasks.

    The finite-n system is slower than its limit by O(1/n) (measured with 6 seeds x 300k
    requests: n (W_n / W_inf - 1) = 0.7-0.95 at rho 0.8 and 1.5-1.7 at rho 0.9 for n = 10..100),
    so the row's tolerance is TOL_MEAN + POD_FINITE_N / n (3% at n = 100). A power_of_d that
    behaved like random (d = 1: W = 5 at rho 0.8) or like d = 3 (W = 1.59) fails it by far.
    """
    n = POD_SCALE * cfg.n
    t0 = time.perf_counter()
    sc = theory_scenario(n, cfg.rho, cfg.requests, warmup=cfg.warmup)
    runs = run_group(sc, "power_of_d", group_seeds(cfg, len(theory_groups(cfg)), seeds), little=False)
    if progress:
        progress(f"power_of_d: {len(runs)} runs in {time.perf_counter() - t0:.1f} s")
    w = power_of_d_mean_field_sojourn(POD_D, cfg.rho)
    return [compare("pod_mean", f"power_of_d -> mean field, n={n}", "=", w, [r["latency_mean"] for r in runs],
                    TOL_MEAN + POD_FINITE_N / n,
                    f"d={POD_D} rho={cfg.rho:g}; finite-n gap O(1/n) in tol; M/M/1 = {mm1_sojourn(cfg.rho, 1.0):.3g}")]


PS_CORES = 4            # the c-core case: one task on a node of PS_CORES cores
PS_WORKERS = 200        # a task's workers in the processor-sharing cases: never all busy in practice
PS_CV = 3.0             # the lognormal demand of the insensitivity cases


def ps_scenario(cores: float, rho: float, requests: int, *, dist: str = "exponential", cv: float | None = None,
                warmup: float = 0.1) -> dict:
    """One task of PS_WORKERS workers on one node of `cores` cores (cluster.cores): the requests
    in service share the cores, each at min(1, cores / in service); demand of mean 1, `rho` of
    the node's capacity (cores x speed)."""
    demand = {"dist": dist, "mean": 1.0, **({"cv": cv} if cv is not None else {})}
    return {
        "name": f"ps-c{cores:g}-rho{rho:g}-{dist}",
        "cluster": {"nodes": 1, "cores": cores},
        "services": [{"name": "svc", "port": 80, "replicas": 1, "workers": PS_WORKERS, "demand": demand}],
        "workload": {"rho": rho, "entry": "uniform"},
        "balancer": {"mode": "central", "info": "global", "rr_start": "zero"},
        "run": {"requests": requests, "warmup": warmup},
    }


def ps_cases(cfg: "Config", seeds: int | None = None, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Nodes as shared machines (cluster.cores; docs/model.md, "Nodes as shared machines").

    One task with many workers on a 1-core node is an M/G/1 processor-sharing queue: mean
    sojourn E[S] / (1 - rho), whatever the demand's distribution (insensitivity), checked for
    exponential demand and for lognormal demand of cv PS_CV. On a node of c = PS_CORES cores
    each of m requests in service progresses at min(1, c / m): the number in system is the
    M/M/c queue's birth-death chain, so the mean sojourn is M/M/c's (Erlang C), and the
    queue (a symmetric queue: the c cores shared equally) is insensitive too, so again for
    both distributions. The lognormal groups run cfg.heavy x the requests (their means
    converge more slowly); tolerance TOL_MEAN as for the other means.

    The same runs check the CPU metrics (docs/model.md, "Nodes as shared machines"): the node's
    utilisation (busy core-seconds / cores / time) is rho, and the mean contention (time in
    service beyond the demand, E[S] = 1 here) is the mean sojourn less E[S].
    """
    rho, n_req = cfg.rho, cfg.requests
    first = len(theory_groups(cfg)) + 1        # seed blocks after theory_groups' and power_of_d's
    rows = []
    for i, (key, cores, dist) in enumerate((("ps_mm1_mean", 1, "exponential"), ("ps_mg1_mean", 1, "lognormal"),
                                            ("ps_mmc_mean", PS_CORES, "exponential"),
                                            ("ps_mgc_mean", PS_CORES, "lognormal"))):
        t0 = time.perf_counter()
        logn = dist == "lognormal"
        sc = ps_scenario(cores, rho, int(cfg.heavy * n_req) if logn else n_req, dist=dist,
                         cv=PS_CV if logn else None, warmup=cfg.warmup)
        runs = run_group(sc, "round_robin", group_seeds(cfg, first + i, seeds), little=False)
        if progress:
            progress(f"{key}: {len(runs)} runs in {time.perf_counter() - t0:.1f} s")
        label = f"cv={PS_CV:g}" if logn else "exponential"
        if cores == 1:
            w, case = 1.0 / (1.0 - rho), f"1 core = M/G/1-PS sojourn, {label}"
        else:
            w, case = mmc_sojourn(cores, cores * rho, 1.0), f"{cores} cores = M/M/{cores} sojourn, {label}"
        note = f"one task, {PS_WORKERS} workers, rho={rho:g}; insensitive to the demand's distribution"
        rows.append(compare(key, case, "=", w, [r["latency_mean"] for r in runs], TOL_MEAN, note))
        stem = key.removesuffix("_mean")
        rows.append(compare(f"{stem}_cpu_util", f"{case}: utilisation = rho", "=", rho,
                            [r["cpu_util_mean"] for r in runs], TOL_MEAN, note))
        rows.append(compare(f"{stem}_contention", f"{case}: contention = sojourn - E[S]", "=", w - 1.0,
                            [r["contention_mean"] for r in runs], TOL_MEAN, note))
    return rows


def t_ci(values: Iterable[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and Student-t half-width of the mean over independent replications."""
    x = np.asarray(list(values), dtype=np.float64)
    k = len(x)
    if k < 2:
        return float(x.mean()) if k else math.nan, math.inf
    half = stats.t.ppf(0.5 + level / 2, k - 1) * x.std(ddof=1) / math.sqrt(k)
    return float(x.mean()), float(half)


# --------------------------------------------------------------------------------------------
# Scenarios and runs.

@dataclass(frozen=True)
class Config:
    """One validation budget: n single-worker tasks at load rho, `requests` per run."""

    n: int
    rho: float
    requests: int
    seeds: int
    lognormal_cv: float = 1.5
    heavy: float = 2.5         # request multiplier of the lognormal group (its mean converges slowly)
    warmup: float = 0.1


QUICK = Config(n=10, rho=0.8, requests=400_000, seeds=8)
FULL = Config(n=20, rho=0.9, requests=2_000_000, seeds=12)


def theory_scenario(n: int, rho: float, requests: int, *, dist: str = "exponential",
                    cv: float | None = None, warmup: float = 0.1) -> dict:
    """n single-worker tasks on n nodes, one central balancer, global information, no hop,
    demand of mean 1 (so mu = 1 and each task's arrival rate is rho)."""
    demand = {"dist": dist, "mean": 1.0}
    if cv is not None:
        demand["cv"] = cv
    return {
        "name": f"theory-n{n}-rho{rho:g}-{dist}",
        "cluster": {"nodes": n},
        "services": [{"name": "svc", "port": 80, "replicas": n, "workers": 1, "demand": demand}],
        "workload": {"rho": rho, "entry": "uniform"},
        "network": {"hop": 0.0},
        "balancer": {"mode": "central", "info": "global", "rr_start": "zero"},
        "run": {"requests": requests, "warmup": warmup},
    }


def little_check(res, seed: int) -> dict:
    """Sample-path Little's law for one traced run (hop = 0, drained)."""
    from ..model.cluster import build_cluster
    from ..model.workload import Workload

    sc, row, tr = res.scenario, res.row(), res.trace
    if sc.network.hop != 0 or sc.network.jitter != 0:
        raise ValueError("the Little check assumes no overlay hop")
    n = sc.n_requests
    a = Workload(sc, build_cluster(sc), seed).chunk(n).t          # independent regeneration
    done = tr["done"].to_numpy()
    status = tr["status"].to_numpy()
    w = int(math.floor(sc.run.warmup * n))
    t1, t2 = a[w], a[-1]
    window = t2 - t1
    inside = np.clip(np.minimum(done, t2) - np.maximum(a, t1), 0.0, None)
    integral = float(inside.sum())
    e1 = float(inside[:w].sum())                                  # warm-up requests in window
    e2 = float(np.clip(done[w:] - t2, 0.0, None).sum())           # measured requests after it
    L = integral / window
    lam_w = row["throughput"] * row["latency_mean"]
    identity = abs(lam_w - (L + (e2 - e1) / window)) <= LITTLE_EPS * max(lam_w, 1e-300) \
        and bool(np.all(status == 0)) and row["completed"] == row["arrived"]
    return {"L": L, "lam_w": lam_w, "identity": identity, "boundary": (e1 + e2) / window / max(L, 1e-300)}


def run_group(scenario: dict, strategy: str, seeds: list[int], little: bool = True) -> list[dict]:
    """Simulate `scenario` with `strategy` once per seed; the summary rows (plus the Little
    check in row['_little'] when `little`)."""
    from ..engine.run import simulate

    out = []
    for s in seeds:
        res = simulate(scenario, strategy, seed=s, trace=little, progress=False)
        row = dict(res.row())
        if little:
            row["_little"] = little_check(res, s)
        out.append(row)
    return out


def compare(key: str, case: str, kind: str, analytic: float, values, tol: float, note: str = "") -> dict:
    """One row: the mean over seeds of `values` against `analytic` (pass rules in the module
    docstring)."""
    values = list(values)
    m, hw = t_ci(values)
    if kind == "=":
        ok = abs(m - analytic) <= hw + tol * abs(analytic)
    elif kind == ">=":
        ok = m - hw >= analytic * (1 - tol)
    elif kind == "<=":
        ok = m + hw <= analytic * (1 + tol)
    else:
        raise ValueError(f"kind must be '=', '>=' or '<=', not {kind!r}")
    return {"key": key, "case": case, "kind": kind, "analytic": float(analytic), "simulated": m, "ci": hw,
            "rel_err": (m - analytic) / analytic, "tol": tol, "passed": bool(ok),
            "seeds": len(values), "note": note}


# --------------------------------------------------------------------------------------------
# The cases. Each group of runs gets its own block of seeds, so groups are independent
# (also the throughput samples, which depend only on the arrival stream).

def theory_groups(cfg: Config) -> dict[str, tuple[dict, str]]:
    """name -> (scenario, strategy) of every group of runs the cases need."""
    n, rho, N = cfg.n, cfg.rho, cfg.requests
    return {
        "random": (theory_scenario(n, rho, N, warmup=cfg.warmup), "random"),
        "round_robin": (theory_scenario(n, rho, N, warmup=cfg.warmup), "round_robin"),
        "least_load": (theory_scenario(n, rho, N, warmup=cfg.warmup), "least_load"),
        "random_det": (theory_scenario(n, rho, N, dist="deterministic", warmup=cfg.warmup), "random"),
        "random_logn": (theory_scenario(n, rho, int(cfg.heavy * N), dist="lognormal", cv=cfg.lognormal_cv, warmup=cfg.warmup), "random"),
    }


def group_seeds(cfg: Config, index: int, seeds: int | None = None) -> list[int]:
    k = cfg.seeds if seeds is None else seeds
    return [1000 * (index + 1) + j for j in range(k)]


def run_groups(cfg: Config, seeds: int | None = None, progress: Callable[[str], None] | None = None,
               only: Iterable[str] | None = None) -> dict[str, list[dict]]:
    runs = {}
    for i, (name, (sc, strat)) in enumerate(theory_groups(cfg).items()):
        if only is not None and name not in only:
            continue
        t0 = time.perf_counter()
        runs[name] = run_group(sc, strat, group_seeds(cfg, i, seeds))
        if progress:
            progress(f"{name}: {len(runs[name])} runs in {time.perf_counter() - t0:.1f} s")
    return runs


def theory_rows(cfg: Config, runs: dict[str, list[dict]]) -> list[dict]:
    """The rows of every case whose runs are in `runs`."""
    from ..model.scenario import load_scenario
    from ..model.workload import DemandSampler

    n, rho, mu = cfg.n, cfg.rho, 1.0
    lam = rho * mu                       # per task
    where = f"n={n} rho={rho:g} {cfg.requests // 1000}k req"
    w_mm1 = mm1_sojourn(lam, mu)
    w_en = en_m1_sojourn(n, lam, mu)
    rows = []

    def col(name, key):
        return [r[key] for r in runs[name]]

    if "random" in runs:
        rows.append(compare("mm1_mean", "random = M/M/1 mean sojourn", "=", w_mm1, col("random", "latency_mean"), TOL_MEAN, where))
        rows.append(compare("mm1_p99", "random = M/M/1 p99 sojourn", "=", LN100 * w_mm1, col("random", "latency_p99"), TOL_P99,
                         "sojourn ~ Exp(mu - lambda)"))
    if "round_robin" in runs:
        rows.append(compare("enm1_mean", f"round_robin = E_{n}/M/1 mean sojourn", "=", w_en, col("round_robin", "latency_mean"), TOL_MEAN,
                         "central rr, GI/M/1 sigma by brentq"))
        rows.append(compare("enm1_p99", f"round_robin = E_{n}/M/1 p99 sojourn", "=", LN100 * w_en, col("round_robin", "latency_p99"), TOL_P99,
                         "sojourn ~ Exp(mu (1 - sigma))"))
    if "least_load" in runs:
        w_mmn = mmc_sojourn(n, n * lam, mu)
        ll = col("least_load", "latency_mean")
        rows.append(compare("jsq_lower", f"least_load >= M/M/{n} (Erlang C)", ">=", w_mmn, ll, TOL_BOUND, "JSQ, global info, central"))
        rows.append(compare("jsq_upper", f"least_load <= E_{n}/M/1 (round_robin)", "<=", w_en, ll, TOL_BOUND,
                         f"JSQ optimal (Winston 1977); M/M/1 = {w_mm1:.3g}, JSQ/MM1 = {np.mean(ll) / w_mm1:.2f}"))
    for name, dist, label, key in (("random_det", "deterministic", "M/D/1", "md1_mean"),
                                   ("random_logn", "lognormal", "M/G/1", "mg1_mean")):
        if name not in runs:
            continue
        sc = load_scenario(theory_groups(cfg)[name][0])
        d = sc.services[0].demand
        var = DemandSampler(d, 0, 0).variance()
        extra = f" cv={cfg.lognormal_cv:g}" if dist == "lognormal" else ""
        rows.append(compare(key, f"random = {label} (PK) mean sojourn", "=", pk_sojourn(lam, d.mean, var),
                         col(name, "latency_mean"), TOL_MEAN, f"{dist}{extra}, Var={var:.3g}"))
    return rows


def run_checks(runs: dict[str, list[dict]], rate: float) -> list[dict]:
    """Little's law on every run, and throughput vs the offered rate over every run."""
    every = [r for group in runs.values() for r in group]
    rows = []
    lit = [r["_little"] for r in every if "_little" in r]
    if lit:
        # shown as the ratio (throughput * latency_mean) / L per run, so runs of different
        # groups can be pooled; pass/fail is the exact per-run identity, not this ratio's CI
        ratio = [x["lam_w"] / x["L"] for x in lit]
        m, hw = t_ci(ratio)
        worst = max(abs(q - 1.0) for q in ratio)
        rows.append({"key": "little", "case": "Little: lambda*W / L(time-average)", "kind": "identity",
                     "analytic": 1.0, "simulated": m, "ci": hw, "rel_err": m - 1.0,
                     "tol": LITTLE_EPS, "passed": all(x["identity"] for x in lit), "seeds": len(lit),
                     "note": f"every run; max |ratio-1| {worst:.1e} = boundary terms, identity exact"})
    thr = [r["throughput"] / rate for r in every]
    if thr:
        # throughput = N_m / (t_last - t_first) has bias ~1/N_m < 1e-5; TOL_RATE is, as for
        # the means, a multiplicity margin of about one half-width (CI ~6e-4 over 40 runs)
        rows.append(compare("throughput", "throughput = offered rate (ratio)", "=", 1.0, thr, TOL_RATE, "every run, drain=true"))
    return rows


def run_validation(quick: bool = True, seeds: int | None = None,
                   progress: Callable[[str], None] | None = None, cfg: Config | None = None) -> list[dict]:
    """Run every case; one row per case (see the module docstring)."""
    if cfg is None:
        cfg = QUICK if quick else FULL
    runs = run_groups(cfg, seeds, progress)
    rows = theory_rows(cfg, runs)
    rows += run_checks(runs, rate=cfg.rho * cfg.n)
    rows += power_of_d_cases(cfg, seeds, progress)
    rows += ps_cases(cfg, seeds, progress)
    return rows


def all_passed(rows: list[dict]) -> bool:
    return all(r["passed"] for r in rows)


def format_table(rows: list[dict]) -> str:
    head = f"{'case':<40} {'kind':>8} {'analytic':>10} {'simulated':>10} {'95% CI':>9} {'rel err':>9} {'tol':>7} {'seeds':>5}  {'':4}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['case']:<40} {r['kind']:>8} {r['analytic']:>10.5g} {r['simulated']:>10.5g} "
                     f"{'+-' + format(r['ci'], '.2g'):>9} {r['rel_err']:>+9.2e} {r['tol']:>7.1g} {r['seeds']:>5}  "
                     f"{'PASS' if r['passed'] else 'FAIL':4}  {r['note']}")
    bad = [r["case"] for r in rows if not r["passed"]]
    lines.append(f"{len(rows) - len(bad)}/{len(rows)} cases passed" + (f"; FAILED: {', '.join(bad)}" if bad else ""))
    return "\n".join(lines)


if __name__ == "__main__":   # python -m lbbench.validate [--full]
    import sys
    t0 = time.perf_counter()
    rows = run_validation(quick="--full" not in sys.argv, progress=lambda m: print(m, file=sys.stderr))
    print(format_table(rows))
    print(f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    sys.exit(0 if all_passed(rows) else 1)
