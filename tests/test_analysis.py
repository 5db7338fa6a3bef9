"""lbbench.analysis against scipy/numpy on synthetic stores (no simulation)."""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from lbbench import analysis as A
from lbbench.errors import UserError
from lbbench.engine.run import percentiles as run_percentiles

from synth_store import full_counts, histogram, write_part


# ------------------------------------------------------------------------------------------ load


def test_load_nothing_raises_user_error_naming_path(tmp_path):
    with pytest.raises(UserError) as e:
        A.load(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "runs") in msg and "\n" not in msg
    with pytest.raises(UserError, match="histograms"):
        A.load(tmp_path / "does-not-exist", "histograms")
    (tmp_path / "runs").mkdir()
    with pytest.raises(UserError):
        A.load(tmp_path)


def test_load_skips_hidden_parts_and_relaxes_mixed_schemas(tmp_path):
    write_part(tmp_path, "runs", "a", pl.DataFrame({"run_id": ["a"], "status": ["ok"], "latency_p99": [0.5], "x.y": [1]}))
    # a failed run: metric all-null (dtype Null), no swept column
    write_part(tmp_path, "runs", "b", pl.DataFrame({"run_id": ["b"], "status": ["failed"], "latency_p99": [None]}))
    (tmp_path / "runs" / ".tmp-half-written.parquet").write_bytes(b"PAR1 not really")
    lf = A.load(tmp_path)
    df = lf.collect().sort("run_id")
    assert df["run_id"].to_list() == ["a", "b"]
    assert df.schema["latency_p99"] == pl.Float64
    assert df["x.y"].to_list() == [1, None]
    # the table folder itself and a single file are accepted too
    assert A.load(tmp_path / "runs").collect().height == 2
    assert A.load(tmp_path / "runs" / "a.parquet").collect().height == 1


# ------------------------------------------------------------------------------------- summarize


def _summary_frame(rng):
    rows = []
    sizes = {("rr", 0.5): 3, ("rr", 0.9): 7, ("ll", 0.5): 4, ("ll", 0.9): 1}
    for (s, rho), n in sizes.items():
        for k in range(n):
            rows.append({"strategy": s, "rho": rho, "seed": k, "status": "ok",
                         "latency_p99": float(rng.lognormal(-3, 0.5)), "latency_mean": float(rng.normal(1, 0.2))})
    # noise that must be ignored: a failed run and a NaN metric
    rows.append({"strategy": "rr", "rho": 0.5, "seed": 50, "status": "failed", "latency_p99": 1e6, "latency_mean": 1e6})
    rows.append({"strategy": "rr", "rho": 0.9, "seed": 51, "status": "ok", "latency_p99": math.nan, "latency_mean": 1.0})
    return pl.DataFrame(rows)


def test_summarize_matches_scipy_t_interval():
    rng = np.random.default_rng(7)
    df = _summary_frame(rng)
    out = A.summarize(df.lazy(), ["strategy", "rho"], ["latency_p99", "latency_mean"])
    assert isinstance(out, pl.LazyFrame)
    out = out.collect()
    assert out.columns[:2] == ["strategy", "rho"]
    assert {"latency_p99_mean", "latency_p99_std", "latency_p99_n", "latency_p99_ci95", "latency_mean_ci95"} <= set(out.columns)
    assert out.select("strategy", "rho").rows() == [("ll", 0.5), ("ll", 0.9), ("rr", 0.5), ("rr", 0.9)]
    ok = df.filter(pl.col("status") == "ok")
    for r in out.iter_rows(named=True):
        for m in ("latency_p99", "latency_mean"):
            x = ok.filter((pl.col("strategy") == r["strategy"]) & (pl.col("rho") == r["rho"]))[m].to_numpy()
            x = x[~np.isnan(x)]
            assert r[f"{m}_n"] == len(x)
            assert r[f"{m}_mean"] == pytest.approx(x.mean(), rel=1e-12)
            if len(x) < 2:
                assert r[f"{m}_std"] is None and r[f"{m}_ci95"] is None
                continue
            lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
            assert r[f"{m}_std"] == pytest.approx(np.std(x, ddof=1), rel=1e-12)
            assert r[f"{m}_ci95"] == pytest.approx((hi - lo) / 2, rel=1e-9)
    # the t quantile really is per group: n=3 and n=7 groups with equal std would differ
    rr5 = out.filter((pl.col("strategy") == "rr") & (pl.col("rho") == 0.5)).row(0, named=True)
    assert rr5["latency_p99_ci95"] / (rr5["latency_p99_std"] / math.sqrt(3)) == pytest.approx(stats.t.ppf(0.975, 2))
    rr9 = out.filter((pl.col("strategy") == "rr") & (pl.col("rho") == 0.9)).row(0, named=True)
    assert rr9["latency_p99_n"] == 7   # NaN row not counted
    assert rr9["latency_mean_n"] == 8  # but its other metric is


def test_summarize_without_groups_and_bad_metric():
    df = pl.DataFrame({"latency_p99": [1.0, 2.0, 4.0]})
    r = A.summarize(df.lazy(), [], "latency_p99").collect().row(0, named=True)
    assert r["latency_p99_mean"] == pytest.approx(7 / 3)
    assert r["latency_p99_ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * np.std([1, 2, 4], ddof=1) / math.sqrt(3))
    with pytest.raises(UserError, match="nope"):
        A.summarize(df.lazy(), [], ["nope"])


# --------------------------------------------------------------------------------------- compare


def _paired_frame(rng):
    rows = []
    for rho in (0.5, 0.9):
        for seed in range(8):
            common = rng.normal(0, 0.3)
            for s, eff in (("round_robin", 1.0), ("least_load", 0.7), ("power_of_d", 0.85)):
                if s == "power_of_d" and seed == 3:
                    continue  # missing run: that seed has no pair
                rows.append({"strategy": s, "rho": rho, "seed": seed, "status": "ok",
                             "latency_p99": float(np.exp(common) * eff * (1 + rng.normal(0, 0.05)) / (1 - rho))})
    rows.append({"strategy": "least_load", "rho": 0.5, "seed": 1, "status": "failed", "latency_p99": None})
    rows[4]["status"] = "failed"  # drop one least_load run: pair seed 1 at rho 0.5 vanishes
    df = pl.DataFrame(rows)
    return df.sample(fraction=1.0, shuffle=True, seed=3)  # pairing must be by seed, not by order


def test_compare_matches_ttest_rel():
    rng = np.random.default_rng(11)
    df = _paired_frame(rng)
    out = A.compare(df.lazy(), "round_robin", "latency_p99", by=["rho"])
    assert isinstance(out, pl.LazyFrame)
    out = out.collect()
    assert out.select("rho", "strategy").rows() == [(0.5, "least_load"), (0.5, "power_of_d"), (0.9, "least_load"), (0.9, "power_of_d")]
    ok = df.filter(pl.col("status") == "ok")
    for r in out.iter_rows(named=True):
        a = ok.filter((pl.col("strategy") == r["strategy"]) & (pl.col("rho") == r["rho"])).select("seed", "latency_p99")
        b = ok.filter((pl.col("strategy") == "round_robin") & (pl.col("rho") == r["rho"])).select("seed", pl.col("latency_p99").alias("b"))
        j = a.join(b, on="seed").sort("seed")
        x, y = j["latency_p99"].to_numpy(), j["b"].to_numpy()
        assert r["n_pairs"] == len(x)
        res = stats.ttest_rel(x, y)
        assert r["p_value"] == pytest.approx(res.pvalue, rel=1e-9)
        assert r["t_stat"] == pytest.approx(res.statistic, rel=1e-9)
        lo, hi = res.confidence_interval(0.95)
        assert r["diff_lo"] == pytest.approx(lo, rel=1e-9)
        assert r["diff_hi"] == pytest.approx(hi, rel=1e-9)
        assert r["diff_mean"] == pytest.approx(np.mean(x - y), rel=1e-12)
        assert r["ratio_mean"] == pytest.approx(np.mean(x / y), rel=1e-12)
        assert r["baseline_mean"] == pytest.approx(y.mean()) and r["strategy_mean"] == pytest.approx(x.mean())
        assert r["baseline"] == "round_robin" and r["metric"] == "latency_p99"
    n = dict(zip(zip(out["rho"], out["strategy"]), out["n_pairs"]))
    assert n[(0.5, "power_of_d")] == 7 and n[(0.9, "power_of_d")] == 7
    assert n[(0.5, "least_load")] == 7 and n[(0.9, "least_load")] == 8
    # the effects written into the data are found: least_load ~0.7x, significant
    ll = out.filter(pl.col("strategy") == "least_load")
    assert ll["ratio_mean"].to_numpy() == pytest.approx([0.7, 0.7], abs=0.05)
    assert (ll["p_value"] < 1e-3).all()


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
def test_compare_constant_difference_and_single_pair_follow_scipy():
    df = pl.DataFrame({"strategy": ["round_robin"] * 3 + ["x"] * 3 + ["y"],
                       "seed": [0, 1, 2, 0, 1, 2, 0],
                       "m": [1.0, 2.0, 3.0, 2.0, 3.0, 4.0, 5.0]})
    out = {r["strategy"]: r for r in A.compare(df.lazy(), "round_robin", "m").collect().iter_rows(named=True)}
    assert out["x"]["p_value"] == stats.ttest_rel([2.0, 3, 4], [1.0, 2, 3]).pvalue == 0.0
    assert out["x"]["diff_ci95"] == 0.0
    assert out["y"]["n_pairs"] == 1 and out["y"]["p_value"] is None and out["y"]["diff_ci95"] is None


def test_compare_refuses_ambiguous_pairs():
    df = pl.DataFrame({"strategy": ["round_robin", "power_of_d", "power_of_d"], "seed": [0, 0, 0],
                       "params": ["{}", '{"d": 2}', '{"d": 3}'], "m": [1.0, 0.5, 0.4]})
    with pytest.raises(UserError, match="by"):
        A.compare(df.lazy(), "round_robin", "m")
    # telling the arms apart works: compare over an arm label column
    lab = df.with_columns((pl.col("strategy") + pl.col("params")).alias("arm"))
    lab = lab.with_columns(pl.when(pl.col("strategy") == "round_robin").then(pl.lit("round_robin")).otherwise("arm").alias("arm"))
    out = A.compare(lab.lazy(), "round_robin", "m", arm="arm").collect()
    assert sorted(out["strategy"].to_list()) == ['power_of_d{"d": 2}', 'power_of_d{"d": 3}']
    assert sorted(out["ratio_mean"].to_list()) == pytest.approx([0.4, 0.5])


# ---------------------------------------------------------------------------- pooled percentiles


def _hist_store(tmp_path, rng):
    samples = {}
    runs = []
    for strat, scale in (("rr", 0.02), ("ll", 0.01)):
        for seed in range(4):
            rid = f"{strat}-{seed}"
            lat = scale * rng.lognormal(0, 0.8, 3000 + 500 * seed)  # unequal run sizes: pooling weights by count
            samples[rid] = lat
            lo, hi, c = histogram(lat)
            write_part(tmp_path, "histograms", rid, pl.DataFrame(
                {"run_hash": [f"h{rid}"] * len(c), "run_id": [rid] * len(c), "bucket_lo": lo, "bucket_hi": hi, "count": c}))
            runs.append({"run_id": rid, "run_hash": f"h{rid}", "strategy": strat, "seed": seed, "status": "ok"})
    # a failed run's histogram must not be pooled when runs say it failed
    bad = np.full(1000, 50.0)
    lo, hi, c = histogram(bad)
    write_part(tmp_path, "histograms", "bad", pl.DataFrame(
        {"run_hash": ["hbad"] * len(c), "run_id": ["bad"] * len(c), "bucket_lo": lo, "bucket_hi": hi, "count": c}))
    runs.append({"run_id": "bad", "run_hash": "hbad", "strategy": "rr", "seed": 9, "status": "failed"})
    write_part(tmp_path, "runs", "all", pl.DataFrame(runs))
    return samples


def test_pooled_percentiles_match_engine_rule_and_raw_quantiles(tmp_path):
    rng = np.random.default_rng(5)
    samples = _hist_store(tmp_path, rng)
    hist, runs = A.load(tmp_path, "histograms"), A.load(tmp_path)
    qs = [0.5, 0.9, 0.99, 0.999]
    out = A.pooled_percentiles(hist, "strategy", qs, runs=runs)
    assert isinstance(out, pl.LazyFrame)
    out = out.collect()
    assert out.columns == ["strategy", "count", "p50", "p90", "p99", "p999"]
    assert out["strategy"].to_list() == ["ll", "rr"]
    for r in out.iter_rows(named=True):
        pooled = np.concatenate([v for k, v in samples.items() if k.startswith(r["strategy"] + "-")])
        assert r["count"] == len(pooled)
        counts = sum(full_counts(v) for k, v in samples.items() if k.startswith(r["strategy"] + "-"))
        expect = run_percentiles(counts, qs)  # the engine's own single-histogram rule
        got = [r[A.quantile_name(q)] for q in qs]
        assert got == pytest.approx(expect, rel=1e-12)
        # and within the bucket resolution (< 0.8%) of the raw sample quantile
        for q, g in zip(qs, got):
            ref = np.quantile(pooled, q, method="inverted_cdf")
            assert abs(g - ref) / ref < 0.008
    # per run (a column already in hist_lf, no join): same as the single-run rule
    per_run = A.pooled_percentiles(hist, "run_id", 0.99).collect()
    assert per_run.height == 9  # includes the failed run's histogram: no runs given
    got = dict(zip(per_run["run_id"], per_run["p99"]))
    for rid, lat in samples.items():
        assert got[rid] == pytest.approx(run_percentiles(full_counts(lat), [0.99])[0], rel=1e-12)
    # with runs given, the failed run drops out even though no column is needed from runs
    assert A.pooled_percentiles(hist, "run_id", 0.99, runs=runs).collect().height == 8
    # everything pooled
    allq = A.pooled_percentiles(hist, [], [0.5], runs=runs).collect()
    assert allq["count"][0] == sum(len(v) for v in samples.values())


def test_pooled_percentiles_needs_runs_for_missing_columns(tmp_path):
    _hist_store(tmp_path, np.random.default_rng(1))
    with pytest.raises(UserError, match="runs="):
        A.pooled_percentiles(A.load(tmp_path, "histograms"), "strategy", 0.5)
    with pytest.raises(UserError, match=r"\(0, 1\]"):
        A.pooled_percentiles(A.load(tmp_path, "histograms"), "run_id", 1.5)


def test_quantile_names():
    assert [A.quantile_name(q) for q in (0.5, 0.9, 0.99, 0.999, 0.05, 0.9999, 1.0)] == \
        ["p50", "p90", "p99", "p999", "p5", "p9999", "p100"]
