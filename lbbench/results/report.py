"""`lbbench report DIR`: a Markdown report with figures for one sweep output folder.

`write_report(DIR)` reads the store under DIR (runs/, and when present tasks/, histograms/,
timeseries/, nodes/, events/, manifest.json, sweep.toml) and writes `DIR/report.md` and PNGs under
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
from dataclasses import dataclass, field
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


def _suffix(facet: str) -> str:
    """A figure title's or alt text's tail naming the configuration, if there are several."""
    return " -- " + facet if facet else ""


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
    fig.suptitle(f"Latency vs load ({n_seeds} seeds per point){_suffix(facet)}")
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
    fig.suptitle(f"Per-task utilisation spread, all tasks of all seeds{_suffix(facet)}")
    if not drawn:
        return None
    return _save(fig, path)


def _fig_timeseries(ts: pl.DataFrame, chosen: dict, colors: dict, facet: str, rho: float, path: Path,
                    faults: pl.DataFrame | None = None) -> Path | None:
    """Throughput and p99 per window for one run per strategy; the offered load per window
    under the p99 (when the table has it); with failures, a panel of failed requests per window
    and a vertical line at every fault (from the faults/ table)."""
    has_failed = "failed" in ts.columns and (ts["failed"].fill_null(0) > 0).any()
    has_faults = faults is not None and faults.height > 0
    has_offered = "offered_rate" in ts.columns
    n_axes = 2 + has_offered + (has_failed or has_faults)
    fig = Figure(figsize=(10, 6 + 2.5 * (n_axes - 2)), layout="constrained")
    axes_all = list(fig.subplots(n_axes, 1, sharex=True))
    ax1, ax2 = axes_all[:2]
    ax_off = axes_all[2] if has_offered else None
    ax3 = axes_all[-1] if (has_failed or has_faults) else None
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
        if ax_off is not None:
            ax_off.plot(x, s["offered_rate"].to_numpy(), color=colors.get(arm), label=lab, lw=1.2,
                        ls=styles[j % len(styles)], drawstyle="steps-mid")
        if ax3 is not None and "failed" in s.columns:
            ax3.plot(x, s["failed"].fill_null(0).to_numpy(), color=colors.get(arm), label=lab, lw=1.2,
                     ls=styles[j % len(styles)], drawstyle="steps-mid")
    if not drawn:
        return None
    if ax_off is not None:
        ax_off.set_ylabel("offered load (req/s, by arrival window)")
        ax_off.grid(True, alpha=0.3)
    if ax3 is not None:
        ax3.set_ylabel("failed requests per window")
        axes = tuple(axes_all)
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
    axes_all[-1].set_xlabel("simulated time (s, window midpoint)" if has_t else "window index")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    ax1.legend(title="strategy", fontsize="small")
    fig.suptitle(f"Time series of one run per strategy at ρ = {rho:g}{_suffix(facet)}")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# The report: one function per section, each returning its Markdown lines and the figures it wrote

GROUP = ["_facet", "_arm", "rho"]     # one point of a table or a line: configuration, arm, load


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


@dataclass
class _Runs:
    """The runs table of one store, labelled, and what every section needs from it."""

    d: Path
    manifest: dict
    runs: pl.DataFrame       # every run, with `_arm` and `_facet`
    ok: pl.DataFrame
    failed: pl.DataFrame
    facet_cols: list[str]    # the swept keys that split the results into configurations
    facets: list[str]        # the configurations' labels ("" when there is one)
    arms: list[str]          # the baseline first
    colors: dict
    unstable: dict = field(default_factory=dict)   # (facet, arm, rho) -> (unstable runs, runs)

    @property
    def ok_lf(self) -> pl.LazyFrame:
        return self.ok.lazy()

    def fig_path(self, stem: str, i: int, facet: str) -> Path:
        plain = len(self.facets) <= 1
        return self.d / "figures" / (f"{stem}.png" if plain else f"{stem}_{i + 1}_{_slug(facet)}.png")

    def steady(self, arm: str, facet: str, rho) -> bool:
        return (facet, arm, rho) not in self.unstable

    def by_facet(self, df: pl.DataFrame, heading: str = "### {}"):
        """(facet, its rows, its heading lines) for each configuration that has rows."""
        for facet in self.facets:
            sub = df.filter(pl.col("_facet") == facet)
            if sub.height:
                yield facet, sub, [heading.format(facet), ""] if facet else []

    def in_arm_order(self, df: pl.DataFrame, col: str = "_arm") -> pl.DataFrame:
        """Rows sorted by load, then arm in report order."""
        order = {a: k for k, a in enumerate(self.arms)}
        return df.with_columns(pl.col(col).replace_strict(order, default=len(order)).alias("_o")).sort(["rho", "_o"])


Section = tuple[list[str], list[Path]]   # Markdown lines, figures written


def _looped(columns) -> pl.Expr | None:
    """Runs whose load is measured, not set: a closed loop's (`users` > 0) and sessions'
    (`sessions` > 0); None when the store has neither column."""
    parts = [pl.col(c).fill_null(0) > 0 for c in ("users", "sessions") if c in columns]
    if not parts:
        return None
    return parts[0] | parts[1] if len(parts) == 2 else parts[0]


def _closed_loop_load(runs: pl.DataFrame, ok_mask: pl.Series) -> pl.DataFrame:
    """A closed loop's or sessions' `rho` is measured (docs/model.md, "Closed loop", "Sessions"):
    each strategy's run gets its own, and grouping by it would split one configuration into a
    point per run. The report places a configuration's such runs at one load, the median of their
    measured ones (each run keeps its own in the store); `_section_header` says so."""
    looped = _looped(runs.columns)
    if looped is None:
        return runs
    closed = looped & pl.Series(ok_mask)
    if not runs.select(closed.any()).item():
        return runs
    med = runs.filter(closed).group_by("_facet").agg(pl.col("rho").median().round_sig_figs(3).alias("_closed_rho"))
    return (runs.join(med, on="_facet", how="left")
            .with_columns(pl.when(closed).then(pl.col("_closed_rho")).otherwise(pl.col("rho")).alias("rho"))
            .drop("_closed_rho"))


def _read_runs(d: Path) -> _Runs:
    runs = A.load(d, "runs").collect()
    for c in ("strategy", "rho", "seed"):
        if c not in runs.columns:
            raise UserError(f"{str(d / 'runs')!r} has no {c!r} column; it is not an lbbench results store")
    ok_mask = (runs["status"] == "ok").fill_null(False) if "status" in runs.columns else pl.Series([True] * runs.height)
    runs, facet_cols = _label_runs(runs, ok_mask)
    runs = _closed_loop_load(runs, ok_mask)
    ok = runs.filter(ok_mask)
    arms = _arm_order(ok["_arm"].to_list())
    return _Runs(d=d, manifest=_read_manifest(d), runs=runs, ok=ok, failed=runs.filter(~ok_mask),
                 facet_cols=facet_cols, facets=sorted(set(ok["_facet"].to_list())), arms=arms, colors=_colors(arms),
                 unstable=_unstable_points(ok, GROUP))


def _section_header(r: _Runs) -> Section:
    manifest, ok = r.manifest, r.ok
    md = [f"# Sweep report: {_sweep_name(manifest, r.runs, r.d)}", ""]
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    gen = f"Generated by `lbbench report {r.d}` on {now}"
    if manifest.get("lbbench_version"):
        gen += f" from results written by lbbench {manifest['lbbench_version']} (schema {manifest.get('schema_version', '?')})"
    md += [gen + ".", ""]
    facts = [f"{r.runs.height} runs in the store: {ok.height} ok, {r.failed.height} failed"]
    if "grid_size" in manifest:
        facts.append(f"grid size {manifest['grid_size']}")
    if manifest.get("created"):
        facts.append(f"sweep created {manifest['created']}")
    md += ["; ".join(facts) + ".", ""]
    md += [f"Strategies: {', '.join(f'`{a}`' for a in r.arms) or '(none ok)'}. "
           f"Seeds: {ok['seed'].n_unique() if ok.height else 0}. "
           f"Load ρ: {', '.join(f'{x:g}' for x in sorted(ok['rho'].drop_nulls().unique().to_list()))}."]
    if r.facet_cols:
        md += ["", f"Other swept keys ({', '.join(f'`{c}`' for c in r.facet_cols)}) split the results "
               f"into {len(r.facets)} configurations, reported separately."]
    looped = _looped(ok.columns)
    if looped is not None and ok.select(looped.any()).item():
        md += ["", "Closed-loop and sessions runs (`users` > 0 or `sessions` > 0) have a measured load, a little "
               "different for each run: each configuration's such runs are shown at the median of theirs (the "
               "store keeps each run's own `rho`)."]
    md.append("")
    return md, []


def _section_failed_runs(r: _Runs) -> Section:
    failed = r.failed
    md = ["## Failed runs", ""]
    if failed.height:
        md.append(f"**{failed.height} of {r.runs.height} runs failed** (their metrics are excluded from every table and figure).")
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
    return md, []


def _latency_summary(r: _Runs) -> tuple[pl.DataFrame, bool, str]:
    """(summary per point, whether it has `pooled_p99`, a note when pooling failed)."""
    summ = A.summarize(r.ok_lf, GROUP, [m for m, _ in METRICS]).collect()
    hist = _try_load(r.d, "histograms")
    if hist is None or "run_hash" not in r.ok.columns:
        return summ, False, ""
    try:
        pooled = A.pooled_percentiles(hist, GROUP, [0.99], runs=r.ok_lf).collect()
    except (UserError, pl.exceptions.PolarsError) as exc:
        return summ, False, f"(pooled percentiles unavailable: {exc})"
    summ = summ.join(pooled.select(GROUP + ["p99"]).rename({"p99": "pooled_p99"}), on=GROUP, how="left",
                     nulls_equal=True)
    return summ, True, ""


def _section_latency(r: _Runs) -> Section:
    summ, pooled, pooled_note = _latency_summary(r)
    md = ["## Latency by strategy and load", "",
          "Mean over seeds of each run's mean and p99 latency, with the half-width of the 95% "
          "Student-t confidence interval of that mean (t quantile with n - 1 degrees of freedom)."
          + (" *Pooled p99* is the 99th percentile of all latencies of all seeds together "
             "(histogram counts summed over runs; bucket midpoint, < 0.8% error)." if pooled else ""),
          ""]
    if r.unstable:
        md += [f"**{sum(k for k, _ in r.unstable.values())} runs never reached a steady state** (some task's queue "
               "grew for as long as the run lasted: offered load above its capacity, or latency rising "
               "window after window; the `stable` column of runs/). Their mean and percentiles depend on "
               "the run's length, so a point with such a run shows *unstable (k/n runs)* instead of a "
               "figure and is left out of the plots and comparisons.", ""]
    if pooled_note:
        md += [pooled_note, ""]
    pngs = []
    for i, facet in enumerate(r.facets):
        s = summ.filter(pl.col("_facet") == facet)
        if facet:
            md += [f"### {facet}", ""]
        md += [_latency_table(r, r.in_arm_order(s), facet, pooled), ""]
        s = s.filter(pl.struct("_arm", "rho").map_elements(lambda v: r.steady(v["_arm"], facet, v["rho"]),
                                                            return_dtype=pl.Boolean))
        if not s.height:
            md += ["Every point of this configuration is unstable: no latency figure.", ""]
            continue
        n_seeds = s["latency_p99_n"].unique().sort().to_list()
        ns = str(n_seeds[0]) if len(n_seeds) == 1 else f"{min(n_seeds)}-{max(n_seeds)}"
        p = _fig_latency(s, facet, r.colors, r.fig_path("latency_vs_rho", i, facet), ns)
        pngs.append(p)
        md += [_img(f"Mean and p99 latency vs load{_suffix(facet)}", p, r.d), ""]
    return md, pngs


def _latency_table(r: _Runs, s: pl.DataFrame, facet: str, pooled: bool) -> str:
    scale, unit = _latency_unit(s["latency_mean_mean"].to_list() + s["latency_p99_mean"].to_list())
    header = ["strategy", "ρ", "runs", f"mean latency ({unit})", "± 95% CI", f"p99 latency ({unit})", "± 95% CI"]
    if pooled:
        header.append(f"pooled p99 ({unit})")
    rows = []
    for x in s.iter_rows(named=True):
        sc = lambda v: None if v is None else v * scale  # noqa: E731
        row = [x["_arm"], f"{x['rho']:g}", str(x["latency_p99_n"]),
               _num(sc(x["latency_mean_mean"])), _num(sc(x["latency_mean_ci95"]), ".2g"),
               _num(sc(x["latency_p99_mean"])), _num(sc(x["latency_p99_ci95"]), ".2g")]
        if pooled:
            row.append(_num(sc(x.get("pooled_p99"))))
        if not r.steady(x["_arm"], facet, x["rho"]):
            k, n = r.unstable[(facet, x["_arm"], x["rho"])]
            row[3:] = [f"unstable ({k}/{n} runs)"] + ["-"] * (len(row) - 4)
        rows.append(row)
    return _table(header, rows)


FAULT_METRICS = (("failed", "failed"), ("retried", "retried"), ("timed_out", "timed out"),
                 ("availability", "availability"), ("recovery_s", "recovery (s)"))


def _section_failures(r: _Runs) -> Section:
    """Only for a sweep with faults."""
    ok = r.ok
    if "faults" not in ok.columns or not (ok["faults"].fill_null(0) > 0).any():
        return [], []
    fmetrics = [m for m, _ in FAULT_METRICS if m in ok.columns]
    fs = A.summarize(r.ok_lf.with_columns([pl.col(m).cast(pl.Float64) for m in fmetrics]), GROUP, fmetrics).collect()
    md = ["## Failures and recovery", "",
          "Per strategy, mean over seeds with the half-width of the 95% Student-t CI: measured requests "
          "that failed (after any retries), attempts re-sent, availability (fraction of measured requests "
          "that completed within the timeout) and `recovery_s` (per run, the longest time from a fault until "
          "a window with no failure and a p99 within 10% of the pre-fault level; NaN runs never recovered "
          "and are left out of the mean).", ""]
    header = ["strategy", "ρ", "runs"] + [h for m, h in FAULT_METRICS if m in fmetrics]
    for _, f, heading in r.by_facet(fs):
        md += heading
        rows = []
        for x in r.in_arm_order(f).iter_rows(named=True):
            row = [x["_arm"], f"{x['rho']:g}", str(x[f"{fmetrics[0]}_n"])]
            for m in fmetrics:
                spec = ".5f" if m == "availability" else ".4g"
                ci = x.get(f"{m}_ci95")
                row.append(_num(x[f"{m}_mean"], spec) + ("" if ci is None else f" ± {_num(ci, '.2g')}"))
            rows.append(row)
        md += [_table(header, rows), ""]
    return md, []


def _section_comparison(r: _Runs) -> Section:
    md = [f"## Comparison with {BASELINE}", ""]
    if BASELINE not in r.arms:
        return md + [f"No `{BASELINE}` runs in this sweep: no comparison.", ""], []
    if len(r.arms) < 2:
        return md + [f"Only `{BASELINE}` was run: nothing to compare.", ""], []
    md += [f"Paired by seed (common random numbers: the same seed saw the same arrivals under every "
           f"strategy). *Ratio* is the mean over seeds of strategy / {BASELINE} (below 1: lower "
           f"latency than {BASELINE}); *difference* is strategy - {BASELINE} with its 95% paired-t CI; "
           f"the p-value is the two-sided paired t-test (scipy.stats.ttest_rel).", ""]
    for m, label in METRICS:
        try:
            cmp = A.compare(r.ok_lf, BASELINE, m, ["_facet", "rho"], arm="_arm").collect()
        except UserError as exc:
            md += [f"{label}: comparison not possible: {exc}", ""]
            continue
        md += [f"### {label[0].upper() + label[1:]}", ""]
        for facet, c, heading in r.by_facet(cmp, "**{}**"):
            md += heading + [_comparison_table(r, c, facet), ""]
    return md, []


def _comparison_table(r: _Runs, c: pl.DataFrame, facet: str) -> str:
    scale, unit = _latency_unit(c["diff_mean"].to_list() + c["diff_ci95"].to_list())
    rows = []
    for x in r.in_arm_order(c, "strategy").iter_rows(named=True):
        sc = lambda v: None if v is None else v * scale  # noqa: E731
        if not (r.steady(x["strategy"], facet, x["rho"]) and r.steady(BASELINE, facet, x["rho"])):
            which = x["strategy"] if not r.steady(x["strategy"], facet, x["rho"]) else BASELINE
            rows.append([x["strategy"], f"{x['rho']:g}", str(x["n_pairs"]), f"{which} unstable", "-", "-", "-"])
            continue
        rows.append([x["strategy"], f"{x['rho']:g}", str(x["n_pairs"]),
                     _num(x["ratio_mean"], ".3f") + (f" ± {_num(x['ratio_ci95'], '.2g')}" if x["ratio_ci95"] is not None else ""),
                     _num(sc(x["diff_mean"])),
                     "-" if x["diff_ci95"] is None else f"[{_num(sc(x['diff_lo']))}, {_num(sc(x['diff_hi']))}]",
                     _p(x["p_value"])])
    return _table(["strategy", "ρ", "pairs", f"ratio to {BASELINE}", f"difference ({unit})",
                   "95% CI of difference", "p-value"], rows)


def _section_utilisation(r: _Runs) -> Section:
    md = ["## Per-task utilisation", ""]
    tasks = _try_load(r.d, "tasks")
    key = _join_key(tasks.collect_schema().names(), r.ok.columns) if tasks is not None else None
    if tasks is None or key is None or "utilisation" not in tasks.collect_schema().names():
        return md + ["No tasks/ table with utilisation in this store: no utilisation figure.", ""], []
    tk = tasks.select(key, "utilisation").join(r.ok_lf.select(key, "_facet", "_arm", "rho"), on=key, how="inner").collect()
    pngs = []
    for i, facet in enumerate(r.facets):
        p = _fig_util(tk.filter(pl.col("_facet") == facet), facet, r.colors, r.fig_path("utilisation", i, facet))
        if p is not None:
            pngs.append(p)
            md += [_img(f"Per-task utilisation spread per strategy{_suffix(facet)}", p, r.d), ""]
    md += ["Boxes: quartiles of the utilisation of every task of every seed; whiskers 1.5 IQR. "
           "A balanced strategy has a narrow box.", ""]
    return md, pngs


# --------------------------------------------------------------------------------------------
# Per-node CPU: a store with a nodes/ table (cluster.cores; docs/model.md, "Nodes as shared machines")

CPU_METRICS = (("cpu_util_mean", "mean over nodes"), ("cpu_util_max", "busiest node"))
_MAX_NODE_COLUMNS = 12       # more nodes: a row per strategy and node instead of a column per node


def _pm(mean, ci, spec: str = ".3f", scale: float = 1.0) -> str:
    """`mean ± ci` (ci: the half-width of the 95% CI, none with one run)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return _num(mean * scale, spec) + ("" if ci is None else f" ± {_num(ci * scale, '.2g')}")


def _node_labels(nd: pl.DataFrame) -> list[str]:
    """"node: cores, speed" per node (a range where the runs differ)."""
    def rng(lo, hi) -> str:
        return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
    g = nd.group_by("node").agg(pl.col("cores").min().alias("c0"), pl.col("cores").max().alias("c1"),
                                pl.col("speed").min().alias("s0"), pl.col("speed").max().alias("s1")).sort("node")
    return [f"{x['node']}: {rng(x['c0'], x['c1'])} cores, speed {rng(x['s0'], x['s1'])}" for x in g.iter_rows(named=True)]


def _fig_node_cpu(pn: pl.DataFrame, facet: str, colors: dict, unstable: dict, path: Path) -> Path | None:
    """Each node's CPU utilisation per strategy (mean over seeds, 95% CI), a panel per load;
    hatched: a point with unstable runs."""
    rhos = _pick(sorted(pn["rho"].unique().drop_nulls().to_list()), _MAX_UTIL_PANELS)
    nodes = sorted(pn["node"].unique().to_list())
    if not rhos or not nodes:
        return None
    arms = [a for a in colors if a in set(pn["_arm"].to_list())]
    width = 0.8 / len(arms)
    fig = Figure(figsize=(min(20.0, max(6.0, (0.25 * len(arms) * len(nodes) + 1.5) * len(rhos))), 4.5),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(rhos), sharey=True, squeeze=False)[0])
    for ax, rho in zip(axes, rhos):
        s = pn.filter(pl.col("rho") == rho)
        for j, arm in enumerate(arms):
            sa = s.filter(pl.col("_arm") == arm).sort("node")
            x = np.searchsorted(nodes, sa["node"].to_numpy()) + (j - (len(arms) - 1) / 2) * width
            steady = (facet, arm, rho) not in unstable
            ax.bar(x, sa["cpu_util_mean"].to_numpy(), width, yerr=sa["cpu_util_ci95"].fill_null(0.0).to_numpy(),
                   color=colors[arm], alpha=0.8, capsize=2, hatch=None if steady else "//",
                   label=f"{arm}{'' if steady else ' (unstable)'}" if ax is axes[0] else None)
        ax.set_xticks(np.arange(len(nodes)), [str(n) for n in nodes])
        ax.set_xlabel("node")
        ax.set_title(f"ρ = {rho:g}")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("CPU utilisation (core-seconds per core-second)")
    fig.legend(title="strategy", fontsize="small", loc="outside lower center", ncols=min(len(arms), 3))
    fig.suptitle(f"Per-node CPU utilisation, mean ± 95% CI over seeds{_suffix(facet)}")
    return _save(fig, path)


def _cpu_tables(r: _Runs, pn: pl.DataFrame, summ: pl.DataFrame, facet: str) -> list[str]:
    """A row per strategy and load: each node's utilisation (a column per node, up to
    _MAX_NODE_COLUMNS; more nodes get a table of their own, a row per strategy and node), the
    summary's cpu_util_mean, cpu_util_max and contention_mean."""
    nodes = sorted(pn["node"].unique().to_list())
    wide = len(nodes) <= _MAX_NODE_COLUMNS
    scale, unit = _latency_unit(summ["contention_mean_mean"].to_list())
    util = {(x["_arm"], x["rho"], x["node"]): x for x in pn.iter_rows(named=True)}
    header = (["strategy", "ρ", "runs"] + ([f"node {n}" for n in nodes] if wide else [])
              + [h for _, h in CPU_METRICS] + [f"contention ({unit})"])
    rows = []
    for x in r.in_arm_order(summ).iter_rows(named=True):
        arm, rho = x["_arm"], x["rho"]
        label = arm
        if not r.steady(arm, facet, rho):
            k, n = r.unstable[(facet, arm, rho)]
            label += f" (unstable {k}/{n})"
        row = [label, f"{rho:g}", str(x["cpu_util_mean_n"])]
        if wide:
            row += ["-" if (u := util.get((arm, rho, node))) is None else _pm(u["cpu_util_mean"], u["cpu_util_ci95"])
                    for node in nodes]
        row += [_pm(x[f"{m}_mean"], x[f"{m}_ci95"]) for m, _ in CPU_METRICS]
        row.append(_pm(x["contention_mean_mean"], x["contention_mean_ci95"], ".4g", scale))
        rows.append(row)
    md = [_table(header, rows), ""]
    if not wide:
        per_node = r.in_arm_order(pn).sort(["rho", "_o", "node"])
        md += [_table(["strategy", "ρ", "node", "runs", "CPU utilisation"],
                      [[x["_arm"], f"{x['rho']:g}", str(x["node"]), str(x["cpu_util_n"]),
                        _pm(x["cpu_util_mean"], x["cpu_util_ci95"])] for x in per_node.iter_rows(named=True)]), ""]
    return md


def _section_node_cpu(r: _Runs) -> Section:
    """Only for a store with a nodes/ table (a sweep with cluster.cores)."""
    nodes = _try_load(r.d, "nodes")
    cols = nodes.collect_schema().names() if nodes is not None else []
    key = _join_key(cols, r.ok.columns)
    need = ["node", "cores", "speed", "cpu_util"] + [m for m, _ in CPU_METRICS] + ["contention_mean"]
    if key is None or not set(need) <= set(cols) | set(r.ok.columns):
        return [], []
    nd = (nodes.select(key, "node", "cores", "speed", "cpu_util")
          .join(r.ok_lf.select(key, "_facet", "_arm", "rho"), on=key, how="inner").collect())
    if not nd.height:
        return [], []
    pn = A.summarize(nd.lazy(), GROUP + ["node"], ["cpu_util"]).collect()
    with_cores = r.ok_lf.filter(pl.col(key).is_in(nd[key].unique().implode()))
    summ = A.summarize(with_cores, GROUP, [m for m, _ in CPU_METRICS] + ["contention_mean"]).collect()
    md = ["## Per-node CPU", "",
          "With `cluster.cores`, each node's CPU utilisation (the `nodes/` table's `cpu_util`): the "
          "core-seconds its measured completed requests held, per core and second of the measured window; "
          "the background load's are not counted (docs/model.md, \"Nodes as shared machines\"). Per strategy "
          "and node, the mean over seeds with the half-width of the 95% Student-t CI; *mean over nodes* and "
          "*busiest node* are the summary's `cpu_util_mean` and `cpu_util_max` (per run, the mean and the "
          "maximum over the nodes), *contention* its `contention_mean` (per run, the mean time a measured "
          "request waited for a core), each a mean over seeds ± CI. A strategy marked *unstable* (hatched "
          "in the figure) has runs that never reached a steady state: their figures depend on the run's "
          "length, and a saturated node's utilisation can exceed 1 (the backlog it completes after the last "
          "arrival counts).", ""]
    pngs = []
    for i, facet in enumerate(r.facets):
        p_f, s_f = pn.filter(pl.col("_facet") == facet), summ.filter(pl.col("_facet") == facet)
        if not p_f.height:
            continue
        if facet:
            md += [f"### {facet}", ""]
        md += ["Nodes (cores, speed at the end of the run): "
               + "; ".join(_node_labels(nd.filter(pl.col("_facet") == facet))) + ".", ""]
        md += _cpu_tables(r, p_f, s_f, facet)
        p = _fig_node_cpu(p_f, facet, r.colors, r.unstable, r.fig_path("node_cpu", i, facet))
        if p is not None:
            pngs.append(p)
            md += [_img(f"Per-node CPU utilisation per strategy{_suffix(facet)}", p, r.d), ""]
    return md, pngs


def _timeseries_runs(r: _Runs, cand: pl.DataFrame, key: str) -> dict:
    """arm -> (key, seed): one run per arm, with the smallest seed every arm has, so the runs saw
    the same arrivals."""
    per_arm = cand.group_by("_arm").agg(pl.col("seed").unique())
    common = None
    for seeds in per_arm["seed"].to_list():
        common = set(seeds) if common is None else common & set(seeds)
    chosen = {}
    for arm in [a for a in r.arms if a in set(cand["_arm"].to_list())]:
        ca = cand.filter(pl.col("_arm") == arm)
        seed = min(common) if common else min(ca["seed"].to_list())
        row = ca.filter(pl.col("seed") == seed).row(0, named=True)
        chosen[arm] = (row[key], seed)
    return chosen


def _section_timeseries(r: _Runs) -> Section:
    md = ["## Time series", ""]
    ts_lf = _try_load(r.d, "timeseries")
    faults_lf = _try_load(r.d, "faults")
    key = _join_key(ts_lf.collect_schema().names(), r.ok.columns) if ts_lf is not None else None
    if ts_lf is None or key is None:
        return md + ["No timeseries/ table in this store: no time-series figure.", ""], []
    have = set(ts_lf.select(key).unique().collect()[key].to_list())
    pngs = []
    for i, facet in enumerate(r.facets):
        cand = r.ok.filter((pl.col("_facet") == facet) & pl.col(key).is_in(list(have)))
        if not cand.height:
            continue
        rho = max(cand["rho"].drop_nulls().to_list())
        chosen = _timeseries_runs(r, cand.filter(pl.col("rho") == rho), key)
        keys = [v[0] for v in chosen.values()]
        ts = ts_lf.filter(pl.col(key).is_in(keys)).with_columns(pl.col(key).alias("_key")).collect()
        fl = None
        if faults_lf is not None and key in faults_lf.collect_schema().names():
            fl = faults_lf.filter(pl.col(key).is_in(keys)).collect()
        p = _fig_timeseries(ts, chosen, r.colors, facet, rho, r.fig_path("timeseries", i, facet), fl)
        if p is not None:
            pngs.append(p)
            md += [_img(f"Throughput and p99 latency over time{_suffix(facet)}", p, r.d), ""]
    if not pngs:
        md += ["The timeseries/ table has no windows for the successful runs.", ""]
    return md, pngs


# --------------------------------------------------------------------------------------------
# Deployments: a store with an events/ table (deploy.events; docs/model.md, "Deployments")

DEPLOY_METRICS = (("update_s", "update_s (s)"), ("upd_failed", "failed during the update"),
                  ("upd_latency_mean", "mean latency during the update"),
                  ("upd_p99_max", "worst window p99 during the update"))


def _update_windows(ev: pl.DataFrame, ts: pl.DataFrame, key: str) -> pl.DataFrame:
    """Per run with an update, from the time-series windows (of arrival time) that overlap an
    update, [its time, its `done`] (to the end of the last window when it was not over; the
    window holding its time when it took no time): the mean latency and the largest window p99;
    and the failed requests of those windows and of the window before (a request the update
    fails may have arrived before it began, queued at the first task it stops). A window
    overlapping several updates counts once."""
    upd = ev.filter(pl.col("kind") == "update").select(key, pl.col("time").alias("_a"), pl.col("done").alias("_b"))
    ends = ts.group_by(key).agg(pl.col("t_end").max().alias("_end"))
    upd = upd.join(ends, on=key, how="left").with_columns(
        pl.when(pl.col("_b").is_null() | pl.col("_b").is_nan()).then(pl.col("_end")).otherwise(pl.col("_b")).alias("_b"))
    during = ((pl.col("t_end") > pl.col("_a")) & (pl.col("t_start") < pl.col("_b"))) | (
        (pl.col("t_start") <= pl.col("_a")) & (pl.col("_a") < pl.col("t_end")))
    lead_in = (pl.col("t_end") > pl.col("_a") - (pl.col("t_end") - pl.col("t_start"))) & (pl.col("t_start") < pl.col("_b"))
    win = (ts.join(upd.select(key, "_a", "_b"), on=key, how="inner")
           .with_columns(during.alias("_in"), (during | lead_in).alias("_fail"))
           .group_by(key, "window").agg(pl.col("failed", "completed", "latency_mean", "latency_p99").first(),
                                        pl.col("_in").any(), pl.col("_fail").any()))
    lat = pl.col("latency_mean").cast(pl.Float64).fill_nan(None).filter(pl.col("_in"))
    got = win.group_by(key).agg(
        pl.col("failed").filter(pl.col("_fail")).sum().cast(pl.Float64).alias("upd_failed"),
        ((lat * pl.col("completed").filter(pl.col("_in"))).sum()
         / pl.col("completed").filter(pl.col("_in") & pl.col("latency_mean").cast(pl.Float64).fill_nan(None).is_not_null()).sum()
         ).alias("upd_latency_mean"),
        pl.col("latency_p99").cast(pl.Float64).fill_nan(None).filter(pl.col("_in")).max().alias("upd_p99_max"))
    # an update with no window (after the last arrival): nothing failed in one
    return upd.select(key).unique().join(got, on=key, how="left").with_columns(pl.col("upd_failed").fill_null(0.0))


def _event_rows(ev: pl.DataFrame) -> list[list[str]]:
    """The deploy events of one configuration, a row each: what every run saw (before and after
    as a range where the runs differ) and an update's duration (its mean over the runs, their
    range, and how many were not over)."""
    def rng(s: pl.Series, fmt) -> str:
        lo, hi = s.min(), s.max()
        return fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}"
    rows = []
    for (_, t, kind, service), g in ev.group_by(["event", "time", "kind", "service"], maintain_order=True):
        ver = (lambda v: f"v{v}") if kind == "update" else str
        dur = "-"
        if kind == "update":
            d = g["duration_s"].cast(pl.Float64).fill_nan(None)
            done = d.drop_nulls()
            dur = ("not over" if not done.len() else
                   (f"{done.mean():.4g}" if done.min() == done.max() else f"{done.mean():.4g} ({done.min():.4g}-{done.max():.4g})"))
            if done.len() and done.len() < d.len():
                dur += f"; not over in {d.len() - done.len()}/{d.len()} runs"
        rows.append([f"{t:g}", kind, service, f"{rng(g['before'], ver)} -> {rng(g['after'], ver)}", dur])
    return sorted(rows, key=lambda row: float(row[0]))


def _service_names(tasks: pl.LazyFrame | None, key: str, keys: list, n: int) -> list[str]:
    """The services in scenario order (the order of their first task slots), or "service k"."""
    if tasks is not None and {"task", "service"} <= set(tasks.collect_schema().names()):
        t = tasks.filter(pl.col(key) == keys[0]).select("task", "service").collect().sort("task")
        names = list(dict.fromkeys(t["service"].to_list()))
        if len(names) == n:
            return names
    return [f"service {k}" for k in range(n)]


def _fig_deploy(ts: pl.DataFrame, ev: pl.DataFrame, services: list[str], colors: dict, facet: str, rho: float,
                path: Path) -> Path | None:
    """Three panels over time, a line per strategy (the mean over its seeds of each window):
    p99 latency, failed requests, each service's tasks in the tables; a vertical line at each
    deployment and a band over each update, from its time to its end (the mean over the runs)."""
    arms = [a for a in colors if a in set(ts["_arm"].to_list())]
    if not arms:
        return None
    has_rep = "replicas" in ts.columns and ts["replicas"].null_count() < ts.height
    agg = [pl.col("t_start").mean(), pl.col("t_end").mean(),
           pl.col("latency_p99").cast(pl.Float64).fill_nan(None).mean(), pl.col("failed").cast(pl.Float64).mean()]
    if has_rep:
        agg += [pl.col("replicas").list.get(k, null_on_oob=True).cast(pl.Float64).mean().alias(f"_rep{k}")
                for k in range(len(services))]
    per = ts.group_by("_arm", "window").agg(agg).sort("window")
    scale, unit = _latency_unit(per["latency_p99"].to_list())
    fig = Figure(figsize=(10, 9 if has_rep else 6.5), layout="constrained")
    axes = list(fig.subplots(3 if has_rep else 2, 1, sharex=True))
    styles = ["-", "--", ":", "-."]
    p99_all = []
    for j, arm in enumerate(arms):
        s = per.filter(pl.col("_arm") == arm)
        x = ((s["t_start"] + s["t_end"]) / 2).to_numpy()
        y = s["latency_p99"].to_numpy() * scale
        p99_all += [v for v in y if np.isfinite(v) and v > 0]
        lw = 1.0 + 1.2 * (len(arms) - 1 - j) / max(len(arms) - 1, 1)   # identical lines stay visible
        axes[0].plot(x, y, color=colors[arm], lw=1.2, label=arm)
        axes[1].plot(x, s["failed"].to_numpy(), color=colors[arm], lw=lw, drawstyle="steps-mid", label=arm)
        if has_rep:
            for k, name in enumerate(services):
                axes[2].plot(x, s[f"_rep{k}"].to_numpy(), color=colors[arm], lw=lw, ls=styles[k % len(styles)],
                             drawstyle="steps-mid", label=f"{arm}: {name}" if len(services) > 1 else arm)
    if p99_all and max(p99_all) / min(p99_all) > 50:
        axes[0].set_yscale("log")
    marks = ev.group_by("event", "time", "kind", "service").agg(pl.col("done").fill_nan(None).mean()).sort("time")
    for m in marks.iter_rows(named=True):
        for ax in axes:
            ax.axvline(m["time"], color="purple" if m["kind"] == "update" else "teal", lw=1.0, ls="--", alpha=0.8)
            if m["kind"] == "update" and m["done"] is not None and m["done"] > m["time"]:
                ax.axvspan(m["time"], m["done"], color="purple", alpha=0.07, lw=0)
    axes[0].set_ylabel(f"p99 latency per window ({unit})")
    axes[1].set_ylabel("failed requests per window")
    axes[1].set_ylim(bottom=0)
    if not (per["failed"].fill_null(0.0) > 0).any():
        axes[1].text(0.5, 0.5, "no failed request in any window", transform=axes[1].transAxes, ha="center",
                     va="center", color="gray")
    if has_rep:
        from matplotlib.ticker import MaxNLocator
        axes[2].yaxis.set_major_locator(MaxNLocator(integer=True))
        axes[2].set_ylabel("tasks in the tables")
        axes[2].legend(title="strategy" + (": service" if len(services) > 1 else ""), fontsize="small")
    axes[0].legend(title="strategy", fontsize="small")
    axes[-1].set_xlabel("simulated time (s, window midpoint; dashed: deployments, shaded: updates)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"Deployments over time, mean over seeds per window, ρ = {rho:g}{_suffix(facet)}")
    return _save(fig, path)


def _deploy_table(r: _Runs, summ: pl.DataFrame) -> str:
    scale, unit = _latency_unit(summ["upd_latency_mean_mean"].to_list() + summ["upd_p99_max_mean"].to_list())
    rows = []
    for x in r.in_arm_order(summ).iter_rows(named=True):
        row = [x["_arm"], f"{x['rho']:g}", str(x["upd_failed_n"]), _pm(x["update_s_mean"], x["update_s_ci95"], ".4g")]
        if x["update_s_n"] < x["upd_failed_n"]:
            row[-1] += f" (not over in {x['upd_failed_n'] - x['update_s_n']}/{x['upd_failed_n']} runs)"
        row += [_pm(x["upd_failed_mean"], x["upd_failed_ci95"], ".4g"),
                _pm(x["upd_latency_mean_mean"], x["upd_latency_mean_ci95"], ".4g", scale),
                _pm(x["upd_p99_max_mean"], x["upd_p99_max_ci95"], ".4g", scale),
                _pm(x["failed_mean"], x["failed_ci95"], ".4g")]
        rows.append(row)
    return _table(["strategy", "ρ", "runs", "update_s (s)", "failed during the update",
                   f"mean latency during the update ({unit})", f"worst window p99 during the update ({unit})",
                   "failed in the run (measured)"], rows)


def _autoscale_table(r: _Runs, runs: pl.DataFrame, acts: pl.DataFrame, key: str) -> str:
    """Per strategy, load and service: the autoscalers' decisions per run, the first one's time
    and the replicas after the last (means over the runs)."""
    per_run = (acts.sort("time").group_by(key, "service")
               .agg(pl.len().alias("n"), pl.col("time").first().alias("first"), pl.col("after").last().alias("last")))
    rows = []
    for x in r.in_arm_order(runs.select(key, "_arm", "rho")).group_by("_arm", "rho", maintain_order=True).agg(
            pl.col(key)).iter_rows(named=True):
        mine = per_run.filter(pl.col(key).is_in(x[key]))
        for service in sorted(mine["service"].unique().to_list()):
            m = mine.filter(pl.col("service") == service)
            rows.append([x["_arm"], f"{x['rho']:g}", service, str(len(x[key])), f"{m['n'].sum() / len(x[key]):.3g}",
                         f"{m['first'].mean():.4g}", f"{m['last'].cast(pl.Float64).mean():.3g}"])
    return _table(["strategy", "ρ", "service", "runs", "decisions per run", "first decision (s)",
                   "replicas after the last"], rows)


def _section_deploy(r: _Runs) -> Section:
    """Only for a store with an events/ table (a sweep with deploy.events or autoscale)."""
    ev_lf, ts_lf = _try_load(r.d, "events"), _try_load(r.d, "timeseries")
    key = _join_key(ev_lf.collect_schema().names(), r.ok.columns) if ev_lf is not None else None
    if key is None:
        return [], []
    ev = ev_lf.join(r.ok_lf.select(key, "_facet", "_arm", "rho"), on=key, how="inner").collect()
    # the deployments (a row per deploy.events entry) and the autoscalers' decisions; the
    # tasks started, stopped and replaced for them are the table's other rows, not shown here
    acts = ev.filter(pl.col("kind") == "autoscale") if "kind" in ev.columns else ev.clear()
    ev = ev.filter(pl.col("kind").is_in(["scale", "update"])) if "kind" in ev.columns else ev.clear()
    if not ev.height and not acts.height:
        return [], []
    md = ["## Deployments", "",
          "The deployments (`deploy.events`; the `events/` table, docs/model.md, \"Deployments\") of each "
          "configuration: when, what (*before -> after*: a scale's replicas, an update's versions) and an "
          "update's duration, from its time to its last new task's join (mean over the runs, with their "
          "range when they differ). Per strategy, mean over seeds ± the half-width of the 95% Student-t CI: "
          "`update_s` (the summary's: a run's longest update), and from the time series the requests of the "
          "windows (of arrival time, warm-up included) that overlap an update, from its time to its end (or to "
          "the run's last window if it was not over): their mean latency (the windows' mean latencies weighted "
          "by their completions) and their largest window p99; and the requests that failed in those windows "
          "and in the window before (a request the update fails may have arrived before it began, queued at the "
          "first task it stops). The last column is the summary's `failed` over the whole measured run, for "
          "scale." + (" With autoscalers, per strategy and service: their decisions that changed the replicas "
                      "(`autoscale` rows of `events/`), per run (mean over the runs), the time of the first and "
                      "the replicas after the last (mean over the runs that made one)." if acts.height else ""), ""]
    ts = None
    upd = pl.DataFrame()
    if ts_lf is not None and key in ts_lf.collect_schema().names():
        keys = pl.concat([ev[key], acts[key]]).unique().implode()
        cols = [c for c in ("window", "t_start", "t_end", "failed", "completed", "latency_mean", "latency_p99", "replicas")
                if c in ts_lf.collect_schema().names()]
        ts = ts_lf.filter(pl.col(key).is_in(keys)).select(key, *cols).collect()
        if ts.height and (ev["kind"] == "update").any():
            upd = _update_windows(ev, ts, key)
    tasks = _try_load(r.d, "tasks")
    pngs = []
    for i, facet in enumerate(r.facets):
        e_f = ev.filter(pl.col("_facet") == facet)
        a_f = acts.filter(pl.col("_facet") == facet)
        if not e_f.height and not a_f.height:
            continue
        if facet:
            md += [f"### {facet}", ""]
        if e_f.height:
            md += [_table(["time (s)", "kind", "service", "before -> after", "update duration (s)"], _event_rows(e_f)), ""]
        runs_f = r.ok.filter(pl.col(key).is_in(pl.concat([e_f[key], a_f[key]]).unique().implode()))
        if a_f.height:
            md += [_autoscale_table(r, runs_f, a_f, key), ""]
        if upd.height and runs_f.join(upd, on=key, how="semi").height:
            with_upd = runs_f.join(upd, on=key, how="inner")
            summ = A.summarize(with_upd.lazy().with_columns(pl.col("failed").cast(pl.Float64)), GROUP,
                               [m for m, _ in DEPLOY_METRICS] + ["failed"]).collect()
            md += [_deploy_table(r, summ), ""]
        rhos = runs_f["rho"].drop_nulls().to_list()
        if ts is None or not rhos:
            continue
        rho = max(rhos)
        at = runs_f.filter(pl.col("rho") == rho).select(key, "_arm")
        ts_f = ts.join(at, on=key, how="inner")
        if not ts_f.height:
            continue
        n_svc = max((len(v) for v in ts_f["replicas"].drop_nulls().to_list()), default=0) if "replicas" in ts_f.columns else 0
        services = _service_names(tasks, key, at[key].to_list(), n_svc) if n_svc else []
        p = _fig_deploy(ts_f, e_f.filter(pl.col("rho") == rho), services, r.colors, facet, rho,
                        r.fig_path("deploy", i, facet))
        if p is not None:
            pngs.append(p)
            md += [_img(f"Latency, failures and replicas over time{_suffix(facet)}", p, r.d), ""]
    if ts is not None:
        md += ["Figures: at each configuration's highest load, per strategy and window of arrival time, the "
               "mean over seeds of the window's p99 latency, of its failed requests and of each service's tasks "
               "in the tables at its end (the time series' `replicas`); dashed lines at the deployments, shaded "
               "from an update's time to its end (mean over the runs).", ""]
    return md, pngs


def _section_sweep_file(d: Path) -> Section:
    sweep = d / "sweep.toml"
    if not sweep.is_file():
        return [], []
    try:
        text = sweep.read_text()
    except OSError:
        text = ""
    if not text or len(text) >= 20_000:
        return [], []
    return ["## Sweep file", "", "`sweep.toml` as given:", "", "```toml", text.rstrip(), "```", ""], []


def _section_figures(d: Path, pngs: list[Path]) -> list[str]:
    if not pngs:
        return []
    return ["## Figures", ""] + [f"- [{p.name}]({p.relative_to(d).as_posix()})" for p in pngs] + [""]


def write_report(dir: str | Path) -> tuple[Path, list[Path]]:
    """Write `DIR/report.md` and its figures `DIR/figures/*.png`; return (report path, PNG paths).

    Needs `DIR/runs/*.parquet` (else `UserError`); tasks/, histograms/, timeseries/, nodes/,
    events/, manifest.json and sweep.toml are used when present. Every PNG returned is linked from
    report.md (relative path `figures/<name>.png`). A part file that cannot be read, or that
    lbbench did not write, refuses the report (`UserError` naming it): a report that skipped it
    would present a partial grid as the whole.
    """
    d = Path(dir)
    try:
        r = _read_runs(d)
        sections = [_section_header(r), _section_failed_runs(r)]
        if r.ok.height:
            sections += [_section_latency(r), _section_failures(r), _section_comparison(r),
                         _section_utilisation(r), _section_node_cpu(r), _section_timeseries(r),
                         _section_deploy(r)]
        else:
            sections.append((["No successful runs: nothing to summarise.", ""], []))
    except pl.exceptions.PolarsError:
        A.refuse_parts(A.damaged_parts(d))      # a part damaged past its footer: name it
        raise
    sections.append(_section_sweep_file(d))
    md = [line for lines, _ in sections for line in lines]
    pngs = [p for _, figs in sections for p in figs]
    md += _section_figures(d, pngs)
    out = d / "report.md"
    tmp = out.with_name(".report.md.tmp")
    tmp.write_text("\n".join(md))
    tmp.replace(out)
    _prune_figures(d / "figures", pngs)
    return out, pngs


FIGURES_WRITTEN = ".written"     # in DIR/figures/: the names of the PNGs the last report wrote


def _prune_figures(folder: Path, pngs: list[Path]) -> None:
    """Remove the figures an earlier report wrote that this one did not (the figure set changes
    with the runs: a variant or the time series gone), so that DIR/figures/ holds the report's
    figures only; a file lbbench did not write there (not in FIGURES_WRITTEN) is left alone."""
    listing = folder / FIGURES_WRITTEN
    keep = {p.name for p in pngs}
    try:
        before = listing.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        before = []
    for name in before:
        # only plain names of PNGs in this folder: the listing is a file a user could edit
        if name not in keep and name.endswith(".png") and Path(name).name == name and not name.startswith("."):
            (folder / name).unlink(missing_ok=True)
    if pngs or listing.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{FIGURES_WRITTEN}.tmp"
        tmp.write_text("".join(f"{n}\n" for n in sorted(keep)))
        tmp.replace(listing)
