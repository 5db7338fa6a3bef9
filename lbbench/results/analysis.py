"""Statistics over a results store: polars LazyFrames in, LazyFrames out.

    from lbbench import analysis as A
    runs = A.load("out/sweep1")                                   # the runs table
    A.summarize(runs, by=["strategy", "rho"], metrics=["latency_mean", "latency_p99"]).collect()
    A.compare(runs, baseline="round_robin", metric="latency_p99", by=["rho"]).collect()
    A.pooled_percentiles(A.load("out/sweep1", "histograms"), by=["strategy", "rho"],
                         q=[0.5, 0.99], runs=runs).collect()

Conventions shared by every function here:

* Only successful runs count: when a frame has a `status` column, rows whose status is not
  "ok" are dropped. NaN metric values (e.g. `latency_mean` of a run that completed nothing)
  are treated as missing, like nulls, and are not counted in `n`.
* `by` is a column name or a list of names (possibly empty: one group for everything).
  Output rows are sorted by `by` (and by `strategy` for `compare`) so results are reproducible.
* Confidence intervals are 95% two-sided, from Student's t with n - 1 degrees of freedom; they
  are reported as half-widths (`*_ci95`). A group with n < 2 has a null std, CI and p-value.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from ..errors import UserError

__all__ = ["load", "summarize", "compare", "pooled_percentiles", "quantile_name", "CI_LEVEL"]

CI_LEVEL = 0.95


# --------------------------------------------------------------------------------------------
# Loading


def _parquet_parts(folder: Path) -> list[Path]:
    """Part files of a table folder, skipping hidden/temporary names (`.tmp-*` being written)."""
    return sorted(p for p in folder.glob("*.parquet") if p.is_file() and not p.name.startswith((".", "_")))


def load(path: str | Path, table: str = "runs") -> pl.LazyFrame:
    """Scan one table of a results store as a LazyFrame.

    `path` is a sweep output folder DIR (the table is read from `DIR/<table>/*.parquet`), a
    table folder itself (`DIR/runs`), or a single `.parquet` file. Hidden part files (a writer's
    `.tmp-*` names) are never read. Parts whose schemas differ (e.g. a part of failed runs whose
    metric columns are all-null, or parts with different swept-key columns) are combined with
    missing columns filled with nulls and types relaxed to a common supertype.

    Raises `UserError` (one line naming the path and the fix) if there is nothing to load, or
    naming the part files that cannot be read or that lbbench did not write (no `run_id`).
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".parquet":
        files = [p]
    elif (p / table).is_dir():
        files = _parquet_parts(p / table)
    elif p.is_dir() and p.name == table:
        files = _parquet_parts(p)
    else:
        files = []
    if not files:
        where = p / table if not (p.is_dir() and p.name == table) else p
        raise UserError(
            f"no {table} results under {str(where)!r}: expected Parquet parts in {str(where)!r}; "
            f"give the output folder of a sweep or `lbbench run --out DIR`, or run one first")
    schemas, bad = [], []
    for f in files:
        try:
            schemas.append(pl.read_parquet_schema(f))
        except Exception:  # a corrupt or foreign file: named below
            bad.append(f)
            continue
        if len(files) > 1 and "run_id" not in schemas[-1]:
            bad.append(f)            # a table part lbbench did not write
        elif table == "runs" and _mistyped(schemas[-1]):
            bad.append(f)            # a summary column of another type: edited or foreign
    refuse_parts(bad)
    if all(s == schemas[0] for s in schemas[1:]):
        return pl.scan_parquet([str(f) for f in files], glob=False)
    return pl.concat([pl.scan_parquet(str(f), glob=False) for f in files], how="diagonal_relaxed")


def _mistyped(schema) -> bool:
    """Whether a runs/ part has a summary column of another type than lbbench writes."""
    from ..engine.schema import SUMMARY_SCHEMA
    return any(c in schema and schema[c] not in (t, pl.Null) for c, t in SUMMARY_SCHEMA.items())


def refuse_parts(bad: Sequence[Path]) -> None:
    """One `UserError` line naming the part files that cannot be read or are not lbbench's."""
    if not bad:
        return
    names = ", ".join(str(f) for f in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    raise UserError(f"{len(bad)} part file(s) cannot be read or are not lbbench results: {names}; move them away "
                    "(a sweep's --resume sets its own aside and runs them again)")


def damaged_parts(path: str | Path) -> list[Path]:
    """The part files of a results store (every table) that cannot be read in full."""
    bad = []
    for folder in sorted(p for p in Path(path).iterdir() if p.is_dir()):
        for f in _parquet_parts(folder):
            try:
                pl.read_parquet(f)
            except Exception:
                bad.append(f)
    return bad


# --------------------------------------------------------------------------------------------
# Helpers


def _as_list(x: str | Sequence[str] | None) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return list(x)


def _columns(lf: pl.LazyFrame) -> list[str]:
    return lf.collect_schema().names()


def _require(lf: pl.LazyFrame, cols: Sequence[str], what: str) -> None:
    have = set(_columns(lf))
    missing = [c for c in cols if c not in have]
    if missing:
        raise UserError(f"{what}: no column(s) {missing} in the table; available: {sorted(have)}")


def _ok_only(lf: pl.LazyFrame) -> pl.LazyFrame:
    if "status" in _columns(lf):
        return lf.filter(pl.col("status") == "ok")
    return lf


def _num(col: str) -> pl.Expr:
    """A metric as Float64 with NaN turned into null (so it is skipped, not propagated)."""
    return pl.col(col).cast(pl.Float64).fill_nan(None)


def _t_crit(n: pl.Expr, level: float = CI_LEVEL) -> pl.Expr:
    """Two-sided Student t critical value for n observations (df = n - 1); null when n < 2."""
    def f(s: pl.Series) -> pl.Series:
        n_ = s.cast(pl.Float64).to_numpy()
        out = np.full(len(n_), np.nan)
        ok = np.isfinite(n_) & (n_ >= 2)
        out[ok] = stats.t.ppf(0.5 + level / 2, n_[ok] - 1)
        return pl.Series(s.name, out, dtype=pl.Float64).fill_nan(None)
    return n.map_batches(f, return_dtype=pl.Float64, is_elementwise=True)


def _t_pvalue(t: pl.Expr, n: pl.Expr) -> pl.Expr:
    """Two-sided p-value of a t statistic with n - 1 degrees of freedom (ttest semantics:
    |t| = inf gives 0, NaN t gives null, n < 2 gives null)."""
    def f(s: pl.Series) -> pl.Series:
        tt = s.struct.field("t").cast(pl.Float64).fill_null(np.nan).to_numpy()
        nn = s.struct.field("n").cast(pl.Float64).fill_null(np.nan).to_numpy()
        out = np.full(len(tt), np.nan)
        ok = np.isfinite(nn) & (nn >= 2) & ~np.isnan(tt)
        out[ok] = 2.0 * stats.t.sf(np.abs(tt[ok]), nn[ok] - 1)
        return pl.Series("p", out, dtype=pl.Float64).fill_nan(None)
    return pl.struct(t.alias("t"), n.alias("n")).map_batches(f, return_dtype=pl.Float64, is_elementwise=True)


def _group_agg(lf: pl.LazyFrame, by: list[str], aggs: list[pl.Expr]) -> pl.LazyFrame:
    if by:
        return lf.group_by(by).agg(aggs).sort(by, nulls_last=True)
    return lf.select(aggs)


# --------------------------------------------------------------------------------------------
# summarize


def summarize(lf: pl.LazyFrame, by: str | Sequence[str], metrics: str | Sequence[str]) -> pl.LazyFrame:
    """Per group of `by`: mean, std, n and 95% CI half-width of each metric.

    Output: the `by` columns, then for each metric `m`: `m_mean`, `m_std` (sample std, ddof=1),
    `m_n` (number of non-null, non-NaN values, UInt32) and `m_ci95` = t(0.975, n-1) * std /
    sqrt(n), the half-width of the 95% Student-t confidence interval of the mean. std and
    ci95 are null when n < 2. Only rows with status == "ok" count (if `status` exists).
    """
    by, metrics = _as_list(by), _as_list(metrics)
    if not metrics:
        raise UserError("summarize: give at least one metric, e.g. metrics=['latency_p99']")
    _require(lf, by + metrics, "summarize")
    lf = _ok_only(lf)
    aggs = []
    for m in metrics:
        x = _num(m)
        aggs += [x.mean().alias(f"{m}_mean"), x.std(ddof=1).alias(f"{m}_std"), x.count().alias(f"{m}_n")]
    out = _group_agg(lf, by, aggs)
    return out.with_columns([
        (_t_crit(pl.col(f"{m}_n")) * pl.col(f"{m}_std") / pl.col(f"{m}_n").cast(pl.Float64).sqrt()).alias(f"{m}_ci95")
        for m in metrics
    ]).select(by + [f"{m}_{s}" for m in metrics for s in ("mean", "std", "n", "ci95")])


# --------------------------------------------------------------------------------------------
# compare


def compare(lf: pl.LazyFrame, baseline: str, metric: str, by: str | Sequence[str] = (),
            *, arm: str = "strategy", seed: str = "seed") -> pl.LazyFrame:
    """Paired comparison of every strategy against `baseline`, seed by seed.

    Common random numbers: the run of strategy S with seed k and the baseline run with the same
    seed k and the same `by` values saw the same arrivals, so they form a pair. For each
    strategy S != baseline and each `by` group, over the pairs where both runs have the metric:

    * `n_pairs`        number of pairs
    * `baseline_mean`, `strategy_mean`   means of the metric over the paired runs
    * `diff_mean`      mean of d_k = S_k - baseline_k
    * `diff_ci95`      half-width of its 95% paired-t CI: t(0.975, n-1) * sd(d) / sqrt(n);
                       `diff_lo`, `diff_hi` the interval itself
    * `ratio_mean`     mean of r_k = S_k / baseline_k (< 1: S is lower than the baseline);
                       `ratio_ci95` its 95% t CI half-width
    * `t_stat`, `p_value`  the paired t-test of scipy.stats.ttest_rel(S, baseline) (two-sided);
                       p is 0 when every d_k is the same nonzero value, null when n < 2 or all
                       d_k are 0

    Output columns: `by`..., `strategy` (named after `arm`), `baseline`, `metric`, then the
    above; sorted by `by` then strategy. `arm` is the column naming the compared arms and
    `seed` the pairing column. Each (arm, by..., seed) must identify at most one ok run: if
    not (e.g. a strategy run with several parameter values), a `UserError` says which column
    to add to `by`. Strategies with no pair (or the baseline absent) yield no rows.
    """
    by = _as_list(by)
    keys = by + [seed]
    _require(lf, [arm, metric] + keys, "compare")
    if arm in keys:
        raise UserError(f"compare: {arm!r} cannot be in `by`; it is the column the arms are compared across")
    lf = _ok_only(lf).select([arm] + keys + [_num(metric).alias("_x")])
    dup = lf.group_by([arm] + keys).agg(pl.len().alias("_k")).filter(pl.col("_k") > 1).head(1).collect()
    if dup.height:
        row = {k: v for k, v in dup.row(0, named=True).items() if k != "_k"}
        raise UserError(
            f"compare: {dup['_k'][0]} runs share {row}; add the column that tells them apart "
            f"(e.g. 'params' or a swept key) to `by`")
    base = lf.filter(pl.col(arm) == baseline).select(keys + [pl.col("_x").alias("_b")])
    other = lf.filter(pl.col(arm) != baseline)
    pairs = other.join(base, on=keys, how="inner", nulls_equal=True).filter(
        pl.col("_x").is_not_null() & pl.col("_b").is_not_null())
    pairs = pairs.with_columns((pl.col("_x") - pl.col("_b")).alias("_d"), (pl.col("_x") / pl.col("_b")).alias("_r"))
    n = pl.len().alias("n_pairs")
    g = pairs.group_by(by + [arm]).agg(
        n,
        pl.col("_b").mean().alias("baseline_mean"),
        pl.col("_x").mean().alias("strategy_mean"),
        pl.col("_d").mean().alias("diff_mean"),
        pl.col("_d").std(ddof=1).alias("_dsd"),
        pl.col("_r").mean().alias("ratio_mean"),
        pl.col("_r").std(ddof=1).alias("_rsd"),
    )
    sqrt_n = pl.col("n_pairs").cast(pl.Float64).sqrt()
    tc = _t_crit(pl.col("n_pairs"))
    g = g.with_columns(
        (tc * pl.col("_dsd") / sqrt_n).alias("diff_ci95"),
        (tc * pl.col("_rsd") / sqrt_n).alias("ratio_ci95"),
        # float division: sd 0 with nonzero mean gives +-inf (p = 0), 0/0 gives NaN (p null)
        pl.when(pl.col("n_pairs") >= 2).then(pl.col("diff_mean") / (pl.col("_dsd") / sqrt_n)).alias("t_stat"),
    ).with_columns(
        (pl.col("diff_mean") - pl.col("diff_ci95")).alias("diff_lo"),
        (pl.col("diff_mean") + pl.col("diff_ci95")).alias("diff_hi"),
        _t_pvalue(pl.col("t_stat"), pl.col("n_pairs")).alias("p_value"),
        pl.lit(baseline).alias("baseline"),
        pl.lit(metric).alias("metric"),
    )
    cols = by + [pl.col(arm).alias("strategy") if arm != "strategy" else pl.col("strategy")] + [
        "baseline", "metric", "n_pairs", "baseline_mean", "strategy_mean", "diff_mean", "diff_ci95",
        "diff_lo", "diff_hi", "ratio_mean", "ratio_ci95", "t_stat", "p_value"]
    return g.select(cols).sort(by + ["strategy"], nulls_last=True)


# --------------------------------------------------------------------------------------------
# pooled percentiles


def quantile_name(q: float) -> str:
    """Column name of quantile q: 0.5 -> 'p50', 0.99 -> 'p99', 0.999 -> 'p999', 0.05 -> 'p5'."""
    s = f"{round(q * 100, 9):g}"
    return "p" + s.replace(".", "")


def pooled_percentiles(hist_lf: pl.LazyFrame, by: str | Sequence[str], q: float | Sequence[float],
                       runs: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """Quantiles of the latency distribution pooled over all runs of each `by` group.

    `hist_lf` is the histograms table (run_hash, bucket_lo, bucket_hi, count; only nonzero
    buckets; identical bucket edges in every run). Counts are summed per (group, bucket) and
    the q-quantile is the midpoint (bucket_lo + bucket_hi) / 2 of the first bucket whose
    cumulative count reaches q * total -- the same rule as `lbbench.simulation.percentiles` on a
    single run's histogram (without its cap at the run's maximum). q is in (0, 1].

    `by` columns missing from `hist_lf` are taken from `runs`, joined on `run_hash` (only
    status == "ok" runs, so histogram rows of other runs drop out). A `UserError` is raised if
    they are needed and `runs` is not given or lacks them.

    Output: the `by` columns, `count` (pooled number of latencies, Int64) and one Float64
    column per q named by `quantile_name` (p50, p99, p999, ...); sorted by `by`.
    """
    by, qs = _as_list(by), ([float(q)] if isinstance(q, (int, float)) else [float(x) for x in q])
    if not qs:
        raise UserError("pooled_percentiles: give at least one quantile, e.g. q=[0.5, 0.99]")
    bad = [x for x in qs if not (0.0 < x <= 1.0) or math.isnan(x)]
    if bad:
        raise UserError(f"pooled_percentiles: quantiles must be in (0, 1], got {bad}")
    names = [quantile_name(x) for x in qs]
    if len(set(names)) != len(names):
        raise UserError(f"pooled_percentiles: duplicate quantiles {qs}")
    _require(hist_lf, ["bucket_lo", "bucket_hi", "count"], "pooled_percentiles (histograms)")
    have = set(_columns(hist_lf))
    missing = [c for c in by if c not in have]
    if missing:
        if runs is None:
            raise UserError(f"pooled_percentiles: histograms have no column(s) {missing}; pass runs=load(DIR) to join them on run_hash")
        _require(hist_lf, ["run_hash"], "pooled_percentiles (histograms)")
        _require(runs, ["run_hash"] + missing, "pooled_percentiles (runs)")
        r = _ok_only(runs).select(["run_hash"] + missing).unique(subset=["run_hash"], keep="first", maintain_order=True)
        hist_lf = hist_lf.join(r, on="run_hash", how="inner")
    elif runs is not None and "run_hash" in have and "run_hash" in _columns(runs):
        # keep only histograms of ok runs even when no column is needed from runs
        hist_lf = hist_lf.join(_ok_only(runs).select("run_hash").unique(), on="run_hash", how="semi")
    h = hist_lf.group_by(by + ["bucket_lo", "bucket_hi"]).agg(pl.col("count").cast(pl.Int64).sum().alias("count"))
    h = h.filter(pl.col("count") > 0).sort(by + ["bucket_lo"], nulls_last=True)
    over = (lambda e: e.over(by)) if by else (lambda e: e)
    h = h.with_columns(
        over(pl.col("count").cum_sum()).alias("_cum"),
        over(pl.col("count").sum()).alias("_tot"),
        ((pl.col("bucket_lo") + pl.col("bucket_hi")) / 2).alias("_mid"),
    )
    aggs = [pl.col("count").sum().alias("count")] + [
        pl.col("_mid").filter(pl.col("_cum") >= x * pl.col("_tot")).first().alias(nm) for x, nm in zip(qs, names)]
    if by:
        # first() after a filter inside a group keeps the within-group (bucket) order
        return h.group_by(by, maintain_order=True).agg(aggs).sort(by, nulls_last=True)
    return h.select(aggs)
