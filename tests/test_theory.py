"""The simulator against queueing theory (lbbench/results/validate.py does the work).

One session fixture runs the quick validation budget once (n = 10 single-worker tasks with
exponential demand of mean 1, rho = 0.8, one central balancer, global information, no hop;
8 fixed seeds per group, 400k requests per run, 1M for the lognormal group): ~7 s with a warm
numba cache. Every group has its own fixed block of seeds, so the outcome is deterministic
(no flakiness) and the groups are independent of each other.

How the tolerances derive from the confidence intervals
-------------------------------------------------------
For a value V measured in k = 8 independent replications (seeds), `ci` is the 95% Student-t
half-width t_{0.975, 7} * s / sqrt(8). A "match" passes when |mean - theory| <= ci + tol *
theory, where `tol` is the model tolerance of validate.py (TOL_MEAN = 1% for means: the
systematic bias of latency_mean, an exact sum over a drained run after a warm-up of ~55
relaxation times, is far below that, so the 1% is a multiplicity allowance over the ~10
intervals; TOL_P99 = 1.8%: the same 1% + the histogram's < 0.8% bucket-midpoint error). A bound
passes when the whole CI is on the right side of it (within 1%). Each test also asserts that
the interval is narrow (ci / theory below a few %), so a pass cannot come from a wide
interval, and the negative controls check that the same rule rejects a wrong theory.
"""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from lbbench.results import validate as V
from lbbench.engine.run import simulate

CFG = V.QUICK
N, RHO = CFG.n, CFG.rho
LAM = RHO           # arrival rate per task (mu = 1)


@pytest.fixture(scope="session")
def runs() -> dict[str, list[dict]]:
    """Summary rows of every group of runs, keyed by group name (random, round_robin,
    least_load, random_det, random_logn); each row carries its Little check."""
    return V.run_groups(CFG)


@pytest.fixture(scope="session")
def rows(runs) -> dict[str, dict]:
    out = V.theory_rows(CFG, runs) + V.run_checks(runs, rate=RHO * N)
    return {r["key"]: r for r in out}


def latencies(runs, group: str, key: str = "latency_mean") -> list[float]:
    return [r[key] for r in runs[group]]


def assert_match(row: dict, max_ci: float) -> None:
    """The row passed and its CI is narrow enough for the pass to mean something."""
    assert row["seeds"] == CFG.seeds
    assert row["ci"] / row["analytic"] < max_ci, f"{row['case']}: CI too wide to test anything ({row})"
    # |mean - theory| <= ci + tol * theory (validate.compare), restated here explicitly
    assert abs(row["simulated"] - row["analytic"]) <= row["ci"] + row["tol"] * row["analytic"], row
    assert row["passed"], row


# --------------------------------------------------------------------------------------------
# The formulas themselves, against closed forms (no simulation).

@pytest.mark.parametrize("rho", [0.3, 0.5, 0.8, 0.95])
def test_formulas_against_closed_forms(rho):
    # E_1/M/1 is M/M/1 (sigma = rho)
    assert V.en_m1_sojourn(1, rho, 1.0) == pytest.approx(1 / (1 - rho), rel=1e-9)
    # E_2/M/1: sigma^2 - (4 rho + 1) sigma + 4 rho^2 = 0 (the cubic with its root 1 removed)
    sigma = ((4 * rho + 1) - math.sqrt(8 * rho + 1)) / 2
    assert V.en_m1_sojourn(2, rho, 1.0) == pytest.approx(1 / (1 - sigma), rel=1e-9)
    # more regular arrivals wait less: E_n/M/1 decreases in n, towards D/M/1, below M/M/1
    w = [V.en_m1_sojourn(n, rho, 1.0) for n in (1, 2, 5, 10, 100)]
    assert all(a > b for a, b in zip(w, w[1:]))
    # M/M/1 = Erlang C with one server; M/M/2: W = 1 / (mu (1 - rho^2)), rho = lam / (2 mu)
    assert V.erlang_c(1, rho) == pytest.approx(rho, rel=1e-12)
    assert V.mmc_sojourn(1, rho, 1.0) == pytest.approx(V.mm1_sojourn(rho, 1.0), rel=1e-12)
    assert V.mmc_sojourn(2, 2 * rho, 1.0) == pytest.approx(1 / (1 - rho**2), rel=1e-12)
    # Pollaczek-Khinchine: exponential service (Var = mean^2) gives M/M/1; M/D/1 closed form
    assert V.pk_sojourn(rho / 2, 2.0, 4.0) == pytest.approx(V.mm1_sojourn(rho / 2, 0.5), rel=1e-12)
    assert V.pk_sojourn(rho, 1.0, 0.0) == pytest.approx(1 + rho / (2 * (1 - rho)), rel=1e-12)
    # the power-of-d mean-field hook: d = 1 is M/M/1, and more choices help
    assert V.power_of_d_mean_field_sojourn(1, rho) == pytest.approx(1 / (1 - rho))
    assert V.power_of_d_mean_field_sojourn(2, rho) < V.power_of_d_mean_field_sojourn(1, rho)


def test_t_ci_matches_textbook():
    x = [1.0, 2.0, 3.0, 4.0]
    m, hw = V.t_ci(x)
    assert m == 2.5
    assert hw == pytest.approx(3.182446305 * np.std(x, ddof=1) / 2, rel=1e-8)


# --------------------------------------------------------------------------------------------
# The required theory tests.

def test_random_is_mm1(rows):
    # random dispatch thins the Poisson stream: n independent M/M/1, W = 1/(mu - lam) = 5.
    # Quick budget: CI ~0.9% of W, tolerance CI + 1% (module docstring); require CI < 3%.
    assert_match(rows["mm1_mean"], max_ci=0.03)
    # M/M/1 FCFS sojourn is Exp(mu - lam): p99 = ln(100) W from the histogram; CI ~2.6%,
    # tolerance CI + 1.8% (1% + < 0.8% bucket midpoint error); require CI < 5%.
    assert_match(rows["mm1_p99"], max_ci=0.05)


def test_round_robin_central_is_en_m1(rows, runs):
    # one central round-robin: each task gets every n-th arrival of a Poisson stream, so
    # Erlang-n interarrivals: E_n/M/1 with sigma from brentq. CI ~0.7%, tolerance CI + 1%.
    row = rows["enm1_mean"]
    assert row["analytic"] == pytest.approx(V.en_m1_sojourn(N, LAM, 1.0))
    assert_match(row, max_ci=0.03)
    # GI/M/1 FCFS sojourn is Exp(mu (1 - sigma)): p99 = ln(100) W; CI ~1.8%, tol CI + 1.8%.
    assert_match(rows["enm1_p99"], max_ci=0.05)
    # and it is not M/M/1: the whole CI is far below 1/(mu - lam) (42% lower at n=10, rho=0.8)
    m, hw = V.t_ci(latencies(runs, "round_robin"))
    assert m + hw < 0.7 * V.mm1_sojourn(LAM, 1.0)


def test_least_load_between_erlang_c_and_random(rows, runs):
    # JSQ with global information can do no better than one central FIFO queue feeding n
    # servers (M/M/n, Erlang C): the whole 95% CI must lie above that bound (within 1%);
    # simulated ~1.36 vs 1.20 with CI ~0.5%, so this has a wide margin yet would catch an
    # engine that let a task serve another's queue.
    lo = rows["jsq_lower"]
    assert lo["analytic"] == pytest.approx(V.mmc_sojourn(N, N * LAM, 1.0))
    assert lo["ci"] / lo["analytic"] < 0.02
    assert lo["simulated"] - lo["ci"] >= lo["analytic"] * (1 - lo["tol"]), lo
    assert lo["passed"]
    # JSQ is optimal among non-anticipating policies for identical exponential servers
    # (Winston 1977), so it is at most round_robin's E_n/M/1: whole CI below it.
    assert rows["jsq_upper"]["passed"], rows["jsq_upper"]
    # "well below random": the upper end of JSQ's CI under half of the lower end of random's
    # CI, and under half of M/M/1 (simulated ratio ~0.27).
    ll_m, ll_hw = V.t_ci(latencies(runs, "least_load"))
    rnd_m, rnd_hw = V.t_ci(latencies(runs, "random"))
    assert ll_m + ll_hw < 0.5 * (rnd_m - rnd_hw)
    assert ll_m + ll_hw < 0.5 * V.mm1_sojourn(LAM, 1.0)


def test_md1_pollaczek_khinchine(rows):
    # deterministic demand: W = rho / (2 (1 - rho)) + 1 = 3. CI ~1.1%, tolerance CI + 1%.
    row = rows["md1_mean"]
    assert row["analytic"] == pytest.approx(1 + RHO / (2 * (1 - RHO)))
    assert_match(row, max_ci=0.03)


def test_mg1_lognormal_pollaczek_khinchine(rows):
    # lognormal demand, cv 1.5: E[S^2] = Var + mean^2 = 3.25, W = rho E[S^2] / (2 (1-rho)) + 1
    # = 7.5. The heavier tail makes run means noisier (1M requests per run): CI ~2%,
    # tolerance CI + 1%; require CI < 4%.
    row = rows["mg1_mean"]
    cv = CFG.lognormal_cv
    assert row["analytic"] == pytest.approx(RHO * (cv * cv + 1) / (2 * (1 - RHO)) + 1)
    assert_match(row, max_ci=0.04)


def test_little_and_throughput_on_every_run(rows):
    # Sample-path Little's law on all 40 runs: throughput * latency_mean equals the
    # time-average number in system rebuilt from the trace and independently regenerated
    # arrival times, up to the boundary terms, to 1e-9 (an identity: no statistical tolerance).
    lit = rows["little"]
    assert lit["seeds"] == 5 * CFG.seeds and lit["passed"], lit
    assert abs(lit["simulated"] - 1) < 1e-3          # the boundary terms are small
    # throughput / offered rate over the 40 runs (independent arrival streams): CI ~0.06%,
    # tolerance CI + 5e-4 (the estimator's bias is ~1/(measured requests) < 1e-5; the rest is
    # the same multiplicity margin as for the means, about one half-width).
    thr = rows["throughput"]
    assert thr["ci"] < 2e-3 and thr["passed"], thr


# --------------------------------------------------------------------------------------------
# Negative controls: the same rules reject a wrong theory on the same data.

def test_rules_reject_wrong_theories(runs):
    ll = latencies(runs, "least_load")
    wrong = [
        # random dispatch with deterministic demand is not M/M/1 (3 vs 5)
        V.compare("x", "M/D/1 data vs M/M/1", "=", V.mm1_sojourn(LAM, 1.0), latencies(runs, "random_det"), V.TOL_MEAN),
        # lognormal cv 1.5 is not exponential (7.5 vs 5): the second moment matters
        V.compare("x", "lognormal data vs PK with Var = 1", "=", V.pk_sojourn(LAM, 1.0, 1.0), latencies(runs, "random_logn"), V.TOL_MEAN),
        # central round-robin is not M/M/1
        V.compare("x", "E_n/M/1 data vs M/M/1", "=", V.mm1_sojourn(LAM, 1.0), latencies(runs, "round_robin"), V.TOL_MEAN),
        # JSQ is not below the M/M/n bound, nor above E_n/M/1 (bounds the other way round)
        V.compare("x", "JSQ <= M/M/n", "<=", V.mmc_sojourn(N, N * LAM, 1.0), ll, V.TOL_BOUND),
        V.compare("x", "JSQ >= E_n/M/1", ">=", V.en_m1_sojourn(N, LAM, 1.0), ll, V.TOL_BOUND),
        # a 5% error in M/M/1 would be caught (W = 5 -> 5.25)
        V.compare("x", "M/M/1 + 5%", "=", 1.05 * V.mm1_sojourn(LAM, 1.0), latencies(runs, "random"), V.TOL_MEAN),
        # an arrival rate 0.5% off would be caught
        V.compare("x", "rate + 0.5%", "=", 1.005, [r["throughput"] / (RHO * N) for g in runs.values() for r in g], V.TOL_RATE),
    ]
    for r in wrong:
        assert not r["passed"], r


def test_little_check_detects_a_wrong_completion_time():
    sc = V.theory_scenario(N, RHO, 20_000)
    res = simulate(sc, "random", seed=7, trace=True, progress=False)
    assert V.little_check(res, 7)["identity"]
    # move one measured request's completion by 1 s: the engine's latency sum no longer
    # matches the reconstruction
    done = res.trace["done"].to_numpy().copy()
    done[15_000] += 1.0
    res.trace = res.trace.with_columns(pl.Series("done", done))
    assert not V.little_check(res, 7)["identity"]
    # and the wrong seed (other arrival times) is caught too
    res2 = simulate(sc, "random", seed=7, trace=True, progress=False)
    assert not V.little_check(res2, 8)["identity"]
