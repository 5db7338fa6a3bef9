"""`lbbench report DIR`: a Markdown report with figures for one sweep output folder.

`write_report(DIR)` reads the store under DIR (runs/, and when present tasks/, histograms/,
timeseries/, manifest.json, sweep.toml) and writes `DIR/report.md` and PNGs under
`DIR/figures/`. Figures are drawn with matplotlib's Agg canvas through the object API (no
pyplot, no global backend switch), so it is safe to call from a library or a worker.

Grouping: the x axis is the effective load `rho`. Runs of one strategy are told apart by
`params` when a strategy was run with several parameter sets. Every other swept scenario key
(a dotted column such as "cluster.speeds", `variant`, and `scenario` if several) that takes
more than one value becomes a *facet*: each facet gets its own figures and tables so lines
never mix configurations. A swept key in one-to-one correspondence with rho (e.g.
"workload.rho" or "workload.rate") is the x axis itself, and one in one-to-one correspondence
with `seed`, or determined by (strategy, params), is not a facet either.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from . import analysis as A
from ..errors import UserError
from ..model.faults import REPAIR_KINDS

__all__ = ["write_report", "BASELINE"]

BASELINE = "round_robin"
METRICS = (("latency_mean", "mean latency"), ("latency_p99", "p99 latency"))
_MAX_UTIL_PANELS = 4
_DPI = 110


# --------------------------------------------------------------------------------------------
# Small helpers


def _fmt_value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    if isinstance(v, pl.Series):
        return _fmt_value(v.to_list())
    return str(v)


def _slug(s: str, n: int = 60) -> str:
    s = re.sub(r"[^A-Za-z0-9.]+", "-", s).strip("-")
    return s[:n].strip("-") or "all"


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


def _img(alt: str, path: Path, root: Path) -> str:
    """A Markdown image link; brackets in the alt text would end it early in some renderers."""
    alt = alt.replace("[", "(").replace("]", ")")
    return f"![{alt}]({path.relative_to(root).as_posix()})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _num(x, spec: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def _p(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0:
        return "< 1e-300"
    return f"{x:.3g}" if x >= 1e-4 else f"{x:.1e}"


def _latency_unit(values) -> tuple[float, str]:
    """(scale, unit): milliseconds when every finite value is below 1 s, else seconds."""
    a = np.asarray([v for v in values if v is not None], dtype=float)
    a = a[np.isfinite(a)]
    if a.size and np.max(np.abs(a)) >= 1.0:
        return 1.0, "s"
    return 1e3, "ms"


def _params_label(params: str | None) -> str:
    if not params:
        return ""
    try:
        d = json.loads(params)
    except (TypeError, ValueError):
        return str(params)
    if isinstance(d, dict):
        return ", ".join(f"{k}={_fmt_value(v)}" for k, v in sorted(d.items()))
    return _fmt_value(d)


def _read_manifest(d: Path) -> dict:
    p = d / "manifest.json"
    if not p.is_file():
        return {}
    try:
        m = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return m if isinstance(m, dict) else {}


def _sweep_name(manifest: dict, runs: pl.DataFrame, d: Path) -> str:
    name = manifest.get("sweep")
    if isinstance(name, dict):
        name = name.get("name")
    if not name and "sweep" in runs.columns:
        vals = [v for v in runs["sweep"].unique().to_list() if v]
        if len(vals) == 1:
            name = vals[0]
    if not name:
        name = d.resolve().name
    name = str(name)
    return Path(name).stem if name.endswith(".toml") else name


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, format="png")
    return path


def _colors(arms: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps
    cmap = colormaps["tab10" if len(arms) <= 10 else "tab20"]
    return {a: cmap(i % cmap.N) for i, a in enumerate(arms)}


# --------------------------------------------------------------------------------------------
# Labels: arms (strategy [+ params]) and facets (other swept keys)


def _label_runs(runs: pl.DataFrame, ok_mask: pl.Series) -> tuple[pl.DataFrame, list[str]]:
    """Add `_arm` and `_facet` (strings) to the runs table; return it and the facet columns."""
    ok = runs.filter(ok_mask)
    # arm: strategy, plus its params when the strategy was run with several parameter sets
    multi = set()
    if "params" in runs.columns:
        multi = set(ok.group_by("strategy").agg(pl.col("params").n_unique().alias("k"))
                    .filter(pl.col("k") > 1)["strategy"].to_list())
    arms = []
    for s, prm in zip(runs["strategy"].to_list(),
                      runs["params"].to_list() if "params" in runs.columns else [None] * runs.height):
        arms.append(f"{s} ({_params_label(prm)})" if s in multi else str(s))
    runs = runs.with_columns(pl.Series("_arm", arms, dtype=pl.String))

    cands = [c for c in runs.columns if "." in c and c != "workload.rho"]
    cands += [c for c in ("variant", "scenario") if c in runs.columns]
    facets = []

    def n_distinct(cols: list[str]) -> int:
        cols = [c for c in cols if c in ok.columns]
        try:
            return ok.select(cols).unique().height
        except Exception:  # a type polars cannot hash: compare by text
            return pl.DataFrame({c: [repr(v) for v in ok[c].to_list()] for c in cols}).unique().height

    arm_cols = ["strategy", "params"]
    n_arm = n_distinct(arm_cols) if ok.height else 0
    for c in cands:
        k = n_distinct([c]) if ok.height else 0
        if k <= 1:
            continue
        if k == n_distinct(["rho"]) == n_distinct([c, "rho"]):
            continue  # the key and rho determine each other (e.g. workload.rho): it is the x axis
        if k == n_distinct(["seed"]) == n_distinct([c, "seed"]):
            continue  # a seed key (e.g. run.seed): replications, not a configuration
        if n_distinct([c] + arm_cols) == n_arm:
            continue  # a strategy parameter: already part of the arm label
        facets.append(c)
    if facets:
        labels = [", ".join(f"{c}={_fmt_value(v)}" for c, v in zip(facets, row))
                  for row in runs.select(facets).rows()]
    else:
        labels = [""] * runs.height
    return runs.with_columns(pl.Series("_facet", labels, dtype=pl.String)), facets


def _unstable_points(ok: pl.DataFrame, group: list[str]) -> dict[tuple, tuple[int, int]]:
    """(facet, arm, rho) -> (unstable runs, runs) for every point with a run flagged unstable."""
    if "stable" not in ok.columns:
        return {}
    g = ok.group_by(group).agg((pl.col("stable") == False).sum().alias("k"), pl.len().alias("n"))  # noqa: E712
    return {(f, a, r): (k, n) for f, a, r, k, n in g.select(*group, "k", "n").rows() if k}


def _arm_order(arms) -> list[str]:
    arms = sorted(set(a for a in arms if a is not None))
    if BASELINE in arms:
        arms.remove(BASELINE)
        arms.insert(0, BASELINE)
    return arms


# --------------------------------------------------------------------------------------------
# Figures


def _fig_latency(summ: pl.DataFrame, facet: str, colors: dict, path: Path, n_seeds: str) -> Path:
    fig = Figure(figsize=(11, 4.3), layout="constrained")
    axes = fig.subplots(1, 2)
    vals = []
    for m, _ in METRICS:
        vals += (summ[f"{m}_mean"] + summ[f"{m}_ci95"].fill_null(0.0)).to_list()
    scale, unit = _latency_unit(vals)
    for ax, (m, label) in zip(axes, METRICS):
        all_y = []
        for arm in [a for a in colors if a in set(summ["_arm"].to_list())]:
            s = summ.filter(pl.col("_arm") == arm).sort("rho")
            x = s["rho"].to_numpy()
            y = s[f"{m}_mean"].to_numpy() * scale
            ci = s[f"{m}_ci95"].fill_null(0.0).to_numpy() * scale
            ok = np.isfinite(x) & np.isfinite(y)
            x, y, ci = x[ok], y[ok], ci[ok]
            if not len(x):
                continue
            all_y += list(y)
            ax.plot(x, y, marker="o", ms=4, color=colors[arm], label=arm)
            if len(x) > 1:
                lo = np.maximum(y - ci, y * 1e-2)
                ax.fill_between(x, lo, y + ci, color=colors[arm], alpha=0.2, linewidth=0)
            else:
                ax.errorbar(x, y, yerr=ci, color=colors[arm], capsize=3, fmt="none")
        pos = [v for v in all_y if v > 0]
        if pos and max(pos) / min(pos) > 20:
            ax.set_yscale("log")
        ax.set_xlabel("offered load ρ (arrival rate / service capacity)")
        ax.set_ylabel(f"{label} ({unit})")
        ax.set_title(f"{label} vs load, mean ± 95% CI")
        ax.grid(True, alpha=0.3)
    axes[0].legend(title="strategy", fontsize="small")
    fig.suptitle(f"Latency vs load ({n_seeds} seeds per point){' -- ' + facet if facet else ''}")
    return _save(fig, path)


def _pick(values: list, k: int) -> list:
    if len(values) <= k:
        return values
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, k)).astype(int))
    return [values[i] for i in idx]


def _fig_util(tk: pl.DataFrame, facet: str, colors: dict, path: Path) -> Path | None:
    rhos = _pick(sorted(tk["rho"].unique().drop_nulls().to_list()), _MAX_UTIL_PANELS)
    if not rhos:
        return None
    fig = Figure(figsize=(max(4.5, 3.2 * len(rhos) + 1), 4.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(rhos), sharey=True, squeeze=False)[0])
    drawn = False
    for ax, r in zip(axes, rhos):
        s = tk.filter(pl.col("rho") == r)
        arms = [a for a in colors if a in set(s["_arm"].to_list())]
        data = [s.filter(pl.col("_arm") == a)["utilisation"].drop_nulls().drop_nans().to_numpy() for a in arms]
        keep = [(a, x) for a, x in zip(arms, data) if len(x)]
        if not keep:
            continue
        bp = ax.boxplot([x for _, x in keep], tick_labels=[a for a, _ in keep], patch_artist=True, widths=0.6)
        for patch, (a, _) in zip(bp["boxes"], keep):
            patch.set_facecolor(colors[a])
            patch.set_alpha(0.55)
        drawn = True
        ax.set_title(f"ρ = {r:g}")
        ax.set_xlabel("strategy")
        ax.tick_params(axis="x", labelrotation=30)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("task utilisation (busy fraction of worker time, 0-1)")
    fig.suptitle(f"Per-task utilisation spread, all tasks of all seeds{' -- ' + facet if facet else ''}")
    if not drawn:
        return None
    return _save(fig, path)


def _fig_timeseries(ts: pl.DataFrame, chosen: dict, colors: dict, facet: str, rho: float, path: Path,
                    faults: pl.DataFrame | None = None) -> Path | None:
    """Throughput and p99 per window for one run per strategy; with failures, a third panel of
    failed requests per window and a vertical line at every fault (from the faults/ table)."""
    has_failed = "failed" in ts.columns and (ts["failed"].fill_null(0) > 0).any()
    has_faults = faults is not None and faults.height > 0
    if has_failed or has_faults:
        fig = Figure(figsize=(10, 8.5), layout="constrained")
        ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True)
    else:
        fig = Figure(figsize=(10, 6), layout="constrained")
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        ax3 = None
    has_t = "t_start" in ts.columns and "t_end" in ts.columns
    p99_col = "latency_p99" in ts.columns
    scale, unit = _latency_unit(ts["latency_p99"].to_list() if p99_col else [])
    drawn = False
    styles = ["-", "--", ":", "-."]
    p99_all = []
    for j, (arm, (run_hash, seed)) in enumerate(chosen.items()):
        s = ts.filter(pl.col("_key") == run_hash).sort("window" if "window" in ts.columns else "t_start")
        if not s.height:
            continue
        x = ((s["t_start"] + s["t_end"]) / 2).to_numpy() if has_t else s["window"].to_numpy()
        lab = f"{arm} (seed {seed})"
        if "throughput" in s.columns:
            # identical series (same arrivals) stay visible through distinct line styles
            ax1.plot(x, s["throughput"].to_numpy(), color=colors.get(arm), label=lab, lw=1.2, ls=styles[j % len(styles)])
            drawn = True
        if p99_col:
            y = s["latency_p99"].cast(pl.Float64).to_numpy() * scale
            p99_all += [v for v in y if np.isfinite(v) and v > 0]
            ax2.plot(x, y, color=colors.get(arm), label=lab, lw=1.2, ls=styles[j % len(styles)])
            drawn = True
        if ax3 is not None and "failed" in s.columns:
            ax3.plot(x, s["failed"].fill_null(0).to_numpy(), color=colors.get(arm), label=lab, lw=1.2,
                     ls=styles[j % len(styles)], drawstyle="steps-mid")
    if not drawn:
        return None
    if ax3 is not None:
        ax3.set_ylabel("failed requests per window")
        axes = (ax1, ax2, ax3)
        if has_faults:
            shown = set()
            for r in faults.select("time", "kind", "target").unique().sort("time").iter_rows(named=True):
                lab = f"{r['kind']} {r['target']}"
                for ax in axes:
                    ax.axvline(r["time"], color="seagreen" if r["kind"] in REPAIR_KINDS else "crimson", lw=1.0, ls="--",
                               alpha=0.8, label=None if (ax is not ax3 or lab in shown) else lab)
                shown.add(lab)
            ax3.legend(title="faults", fontsize="small", loc="upper right")
        ax3.grid(True, alpha=0.3)
    if p99_all and max(p99_all) / min(p99_all) > 50:
        ax2.set_yscale("log")
    ax1.set_ylabel("throughput (req/s, by arrival window)")
    ax2.set_ylabel(f"p99 latency per window ({unit})")
    (ax3 if ax3 is not None else ax2).set_xlabel("simulated time (s, window midpoint)" if has_t else "window index")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    ax1.legend(title="strategy", fontsize="small")
    fig.suptitle(f"Time series of one run per strategy at ρ = {rho:g}{' -- ' + facet if facet else ''}")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# The report


def _try_load(d: Path, table: str) -> pl.LazyFrame | None:
    """A table that is there (a damaged part refuses the report); None if it is not."""
    if not (d / table).is_dir() or not any((d / table).glob("*.parquet")):
        return None
    return A.load(d, table)


def _join_key(lf_cols: list[str], runs_cols: list[str]) -> str | None:
    for k in ("run_hash", "run_id"):
        if k in lf_cols and k in runs_cols:
            return k
    return None


def write_report(dir: str | Path) -> tuple[Path, list[Path]]:
    """Write `DIR/report.md` and its figures `DIR/figures/*.png`; return (report path, PNG paths).

    Needs `DIR/runs/*.parquet` (else `UserError`); tasks/, histograms/, timeseries/,
    manifest.json and sweep.toml are used when present. Every PNG returned is linked from
    report.md (relative path `figures/<name>.png`). A part file that cannot be read, or that
    lbbench did not write, refuses the report (`UserError` naming it): a report that skipped it
    would present a partial grid as the whole.
    """
    d = Path(dir)
    try:
        return _write_report(d)
    except pl.exceptions.PolarsError:
        A.refuse_parts(A.damaged_parts(d))      # a part damaged past its footer: name it
        raise


def _write_report(d: Path) -> tuple[Path, list[Path]]:
    runs = A.load(d, "runs").collect()
    for c in ("strategy", "rho", "seed"):
        if c not in runs.columns:
            raise UserError(f"{str(d / 'runs')!r} has no {c!r} column; it is not an lbbench results store")
    manifest = _read_manifest(d)
    name = _sweep_name(manifest, runs, d)
    ok_mask = (runs["status"] == "ok").fill_null(False) if "status" in runs.columns else pl.Series([True] * runs.height)
    runs, facet_cols = _label_runs(runs, ok_mask)
    ok = runs.filter(ok_mask)
    failed = runs.filter(~ok_mask)
    arms = _arm_order(ok["_arm"].to_list())
    colors = _colors(arms)
    facets = sorted(set(ok["_facet"].to_list()))
    fig_dir = d / "figures"
    pngs: list[Path] = []

    def fig_name(stem: str, i: int, facet: str) -> Path:
        return fig_dir / (f"{stem}.png" if len(facets) <= 1 else f"{stem}_{i + 1}_{_slug(facet)}.png")

    md: list[str] = [f"# Sweep report: {name}", ""]
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    gen = f"Generated by `lbbench report {d}` on {now}"
    if manifest.get("lbbench_version"):
        gen += f" from results written by lbbench {manifest['lbbench_version']} (schema {manifest.get('schema_version', '?')})"
    md += [gen + ".", ""]
    facts = [f"{runs.height} runs in the store: {ok.height} ok, {failed.height} failed"]
    if "grid_size" in manifest:
        facts.append(f"grid size {manifest['grid_size']}")
    if manifest.get("created"):
        facts.append(f"sweep created {manifest['created']}")
    md += ["; ".join(facts) + ".", ""]
    md += [f"Strategies: {', '.join(f'`{a}`' for a in arms) or '(none ok)'}. "
           f"Seeds: {ok['seed'].n_unique() if ok.height else 0}. "
           f"Load ρ: {', '.join(f'{r:g}' for r in sorted(ok['rho'].drop_nulls().unique().to_list()))}."]
    if facet_cols:
        md += ["", f"Other swept keys ({', '.join(f'`{c}`' for c in facet_cols)}) split the results "
               f"into {len(facets)} configurations, reported separately."]
    md.append("")

    # ---- failed runs
    md += ["## Failed runs", ""]
    if failed.height:
        md.append(f"**{failed.height} of {runs.height} runs failed** (their metrics are excluded from every table and figure).")
        md.append("")
        show = failed.head(20)
        errs = show["error"].to_list() if "error" in show.columns else [None] * show.height
        ids = show["run_id"].to_list() if "run_id" in show.columns else [""] * show.height
        axes = [c for c in show.columns if "." in c or c == "variant"]
        where = [", ".join(f"{c}={_fmt_value(v)}" for c, v in zip(axes, row)) for row in show.select(axes).rows()]
        md += [f"- `{rid}`{f' ({w})' if w else ''}: {str(e).strip().splitlines()[0] if e else '(no error message)'}"
               for rid, w, e in zip(ids, where, errs)]
        if failed.height > 20:
            md.append(f"- ... and {failed.height - 20} more (see the `error` column of runs/).")
    else:
        md.append("0 failed runs.")
    md.append("")

    if not ok.height:
        md += ["No successful runs: nothing to summarise.", ""]
        return _finish(d, md, pngs)

    ok_lf = ok.lazy()
    group = ["_facet", "_arm", "rho"]
    summ = A.summarize(ok_lf, group, [m for m, _ in METRICS]).collect()

    # pooled p99 from histograms, when present
    pooled = None
    hist = _try_load(d, "histograms")
    pooled_note = ""
    if hist is not None and "run_hash" in ok.columns:
        try:
            pooled = A.pooled_percentiles(hist, group, [0.99], runs=ok_lf).collect()
        except (UserError, pl.exceptions.PolarsError) as exc:
            pooled_note = f"(pooled percentiles unavailable: {exc})"
    if pooled is not None:
        summ = summ.join(pooled.select(group + ["p99"]).rename({"p99": "pooled_p99"}), on=group, how="left",
                         nulls_equal=True)
    unstable = _unstable_points(ok, group)

    def steady(arm, facet, rho) -> bool:
        return (facet, arm, rho) not in unstable

    # ---- latency tables and figures
    md += ["## Latency by strategy and load", "",
           "Mean over seeds of each run's mean and p99 latency, with the half-width of the 95% "
           "Student-t confidence interval of that mean (t quantile with n - 1 degrees of freedom)."
           + (" *Pooled p99* is the 99th percentile of all latencies of all seeds together "
              "(histogram counts summed over runs; bucket midpoint, < 0.8% error)." if pooled is not None else ""),
           ""]
    if unstable:
        md += [f"**{sum(k for k, _ in unstable.values())} runs never reached a steady state** (some task's queue "
               "grew for as long as the run lasted: offered load above its capacity, or latency rising "
               "window after window; the `stable` column of runs/). Their mean and percentiles depend on "
               "the run's length, so a point with such a run shows *unstable (k/n runs)* instead of a "
               "figure and is left out of the plots and comparisons.", ""]
    if pooled_note:
        md += [pooled_note, ""]
    for i, facet in enumerate(facets):
        s = summ.filter(pl.col("_facet") == facet)
        if facet:
            md += [f"### {facet}", ""]
        vals = s["latency_mean_mean"].to_list() + s["latency_p99_mean"].to_list()
        scale, unit = _latency_unit(vals)
        header = ["strategy", "ρ", "runs", f"mean latency ({unit})", "± 95% CI", f"p99 latency ({unit})", "± 95% CI"]
        if pooled is not None:
            header.append(f"pooled p99 ({unit})")
        rows = []
        order = {a: k for k, a in enumerate(arms)}
        s = s.with_columns(pl.col("_arm").replace_strict(order, default=len(order)).alias("_o")).sort(["rho", "_o"])
        for r in s.iter_rows(named=True):
            sc = lambda v: None if v is None else v * scale  # noqa: E731
            row = [r["_arm"], f"{r['rho']:g}", str(r["latency_p99_n"]),
                   _num(sc(r["latency_mean_mean"])), _num(sc(r["latency_mean_ci95"]), ".2g"),
                   _num(sc(r["latency_p99_mean"])), _num(sc(r["latency_p99_ci95"]), ".2g")]
            if pooled is not None:
                row.append(_num(sc(r.get("pooled_p99"))))
            if not steady(r["_arm"], facet, r["rho"]):
                k, n = unstable[(facet, r["_arm"], r["rho"])]
                row[3:] = [f"unstable ({k}/{n} runs)"] + ["-"] * (len(row) - 4)
            rows.append(row)
        md += [_table(header, rows), ""]
        s = s.filter(pl.struct("_arm", "rho").map_elements(lambda v: steady(v["_arm"], facet, v["rho"]),
                                                            return_dtype=pl.Boolean))
        if not s.height:
            md += ["Every point of this configuration is unstable: no latency figure.", ""]
            continue
        n_seeds = s["latency_p99_n"].unique().sort().to_list()
        ns = str(n_seeds[0]) if len(n_seeds) == 1 else f"{min(n_seeds)}-{max(n_seeds)}"
        p = _fig_latency(s, facet, colors, fig_name("latency_vs_rho", i, facet), ns)
        pngs.append(p)
        md += [_img(f"Mean and p99 latency vs load{' -- ' + facet if facet else ''}", p, d), ""]

    # ---- failures and recovery
    if "faults" in ok.columns and (ok["faults"].fill_null(0) > 0).any():
        fmetrics = [m for m in ("failed", "retried", "timed_out", "availability", "recovery_s") if m in ok.columns]
        fs = A.summarize(ok_lf.with_columns([pl.col(m).cast(pl.Float64) for m in fmetrics]), group, fmetrics).collect()
        md += ["## Failures and recovery", "",
               "Per strategy, mean over seeds with the half-width of the 95% Student-t CI: measured requests "
               "that failed (after any retries), attempts re-sent, availability (fraction of measured requests "
               "that completed within the timeout) and `recovery_s` (per run, the longest time from a fault until "
               "a window with no failure and a p99 within 10% of the pre-fault level; NaN runs never recovered "
               "and are left out of the mean).", ""]
        for facet in facets:
            f = fs.filter(pl.col("_facet") == facet)
            if not f.height:
                continue
            if facet:
                md += [f"### {facet}", ""]
            order = {a: k for k, a in enumerate(arms)}
            f = f.with_columns(pl.col("_arm").replace_strict(order, default=len(order)).alias("_o")).sort(["rho", "_o"])
            header = ["strategy", "ρ", "runs"] + [h for m, h in (("failed", "failed"), ("retried", "retried"),
                                                            ("timed_out", "timed out"), ("availability", "availability"),
                                                            ("recovery_s", "recovery (s)")) if m in fmetrics]
            rows = []
            for r in f.iter_rows(named=True):
                row = [r["_arm"], f"{r['rho']:g}", str(r[f"{fmetrics[0]}_n"])]
                for m in fmetrics:
                    spec = ".5f" if m == "availability" else ".4g"
                    ci = r.get(f"{m}_ci95")
                    row.append(_num(r[f"{m}_mean"], spec) + ("" if ci is None else f" ± {_num(ci, '.2g')}"))
                rows.append(row)
            md += [_table(header, rows), ""]

    # ---- comparison with the baseline
    md += [f"## Comparison with {BASELINE}", ""]
    if BASELINE not in arms:
        md += [f"No `{BASELINE}` runs in this sweep: no comparison.", ""]
    elif len(arms) < 2:
        md += [f"Only `{BASELINE}` was run: nothing to compare.", ""]
    else:
        md += [f"Paired by seed (common random numbers: the same seed saw the same arrivals under every "
               f"strategy). *Ratio* is the mean over seeds of strategy / {BASELINE} (below 1: lower "
               f"latency than {BASELINE}); *difference* is strategy - {BASELINE} with its 95% paired-t CI; "
               f"the p-value is the two-sided paired t-test (scipy.stats.ttest_rel).", ""]
        for m, label in METRICS:
            try:
                cmp = A.compare(ok_lf, BASELINE, m, ["_facet", "rho"], arm="_arm").collect()
            except UserError as exc:
                md += [f"{label}: comparison not possible: {exc}", ""]
                continue
            md += [f"### {label[0].upper() + label[1:]}", ""]
            for facet in facets:
                c = cmp.filter(pl.col("_facet") == facet)
                if not c.height:
                    continue
                if facet:
                    md += [f"**{facet}**", ""]
                scale, unit = _latency_unit(c["diff_mean"].to_list() + c["diff_ci95"].to_list())
                order = {a: k for k, a in enumerate(arms)}
                c = c.with_columns(pl.col("strategy").replace_strict(order, default=len(order)).alias("_o")).sort(["rho", "_o"])
                rows = []
                for r in c.iter_rows(named=True):
                    sc = lambda v: None if v is None else v * scale  # noqa: E731
                    if not (steady(r["strategy"], facet, r["rho"]) and steady(BASELINE, facet, r["rho"])):
                        which = r["strategy"] if not steady(r["strategy"], facet, r["rho"]) else BASELINE
                        rows.append([r["strategy"], f"{r['rho']:g}", str(r["n_pairs"]), f"{which} unstable", "-", "-", "-"])
                        continue
                    rows.append([r["strategy"], f"{r['rho']:g}", str(r["n_pairs"]),
                                 _num(r["ratio_mean"], ".3f") + (f" ± {_num(r['ratio_ci95'], '.2g')}" if r["ratio_ci95"] is not None else ""),
                                 _num(sc(r["diff_mean"])),
                                 "-" if r["diff_ci95"] is None else f"[{_num(sc(r['diff_lo']))}, {_num(sc(r['diff_hi']))}]",
                                 _p(r["p_value"])])
                md += [_table(["strategy", "ρ", "pairs", f"ratio to {BASELINE}", f"difference ({unit})",
                               "95% CI of difference", "p-value"], rows), ""]

    # ---- utilisation spread
    md += ["## Per-task utilisation", ""]
    tasks = _try_load(d, "tasks")
    key = _join_key(tasks.collect_schema().names(), ok.columns) if tasks is not None else None
    if tasks is None or key is None or "utilisation" not in tasks.collect_schema().names():
        md += ["No tasks/ table with utilisation in this store: no utilisation figure.", ""]
    else:
        tk = tasks.select(key, "utilisation").join(ok_lf.select(key, "_facet", "_arm", "rho"), on=key, how="inner").collect()
        for i, facet in enumerate(facets):
            p = _fig_util(tk.filter(pl.col("_facet") == facet), facet, colors, fig_name("utilisation", i, facet))
            if p is not None:
                pngs.append(p)
                md += [_img(f"Per-task utilisation spread per strategy{' -- ' + facet if facet else ''}", p, d), ""]
        md += ["Boxes: quartiles of the utilisation of every task of every seed; whiskers 1.5 IQR. "
               "A balanced strategy has a narrow box.", ""]

    # ---- time series
    md += ["## Time series", ""]
    ts_lf = _try_load(d, "timeseries")
    faults_lf = _try_load(d, "faults")
    ts_cols = ts_lf.collect_schema().names() if ts_lf is not None else []
    key = _join_key(ts_cols, ok.columns) if ts_lf is not None else None
    if ts_lf is None or key is None:
        md += ["No timeseries/ table in this store: no time-series figure.", ""]
    else:
        have = set(ts_lf.select(key).unique().collect()[key].to_list())
        wrote = False
        for i, facet in enumerate(facets):
            cand = ok.filter((pl.col("_facet") == facet) & pl.col(key).is_in(list(have)))
            if not cand.height:
                continue
            rho = max(cand["rho"].drop_nulls().to_list())
            cand = cand.filter(pl.col("rho") == rho)
            # the smallest seed every strategy has, so the runs saw the same arrivals
            per_arm = cand.group_by("_arm").agg(pl.col("seed").unique())
            common = None
            for seeds in per_arm["seed"].to_list():
                common = set(seeds) if common is None else common & set(seeds)
            chosen = {}
            for arm in [a for a in arms if a in set(cand["_arm"].to_list())]:
                ca = cand.filter(pl.col("_arm") == arm)
                seed = min(common) if common else min(ca["seed"].to_list())
                row = ca.filter(pl.col("seed") == seed).row(0, named=True)
                chosen[arm] = (row[key], seed)
            ts = ts_lf.filter(pl.col(key).is_in([v[0] for v in chosen.values()])).with_columns(
                pl.col(key).alias("_key")).collect()
            fl = None
            if faults_lf is not None and key in faults_lf.collect_schema().names():
                fl = faults_lf.filter(pl.col(key).is_in([v[0] for v in chosen.values()])).collect()
            p = _fig_timeseries(ts, chosen, colors, facet, rho, fig_name("timeseries", i, facet), fl)
            if p is not None:
                pngs.append(p)
                wrote = True
                md += [_img(f"Throughput and p99 latency over time{' -- ' + facet if facet else ''}", p, d), ""]
        if not wrote:
            md += ["The timeseries/ table has no windows for the successful runs.", ""]

    return _finish(d, md, pngs)


def _finish(d: Path, md: list[str], pngs: list[Path]) -> tuple[Path, list[Path]]:
    sweep = d / "sweep.toml"
    if sweep.is_file():
        try:
            text = sweep.read_text()
        except OSError:
            text = ""
        if text and len(text) < 20_000:
            md += ["## Sweep file", "", "`sweep.toml` as given:", "", "```toml", text.rstrip(), "```", ""]
    if pngs:
        md += ["## Figures", ""] + [f"- [{p.name}]({p.relative_to(d).as_posix()})" for p in pngs] + [""]
    out = d / "report.md"
    tmp = out.with_name(".report.md.tmp")
    tmp.write_text("\n".join(md))
    tmp.replace(out)
    return out, pngs
