"""The autoscaler's replicas over time for the `autoscale` sweep (benchmarks/autoscale.toml):
the figure and table the sweep's report does not draw.

    lbbench sweep benchmarks/autoscale.toml --report && python benchmarks/autoscale_replicas.py

Reads results/autoscale/ (timeseries/: `replicas`, the web service's tasks in the tables at
each 2 s window's end; events/: the autoscaler's decisions; runs/: strategy and seed) and writes
results/autoscale/figures/replicas_over_time.png and results/autoscale/replicas.md: per
strategy, the replicas over time (each seed, and their mean) against the rule's prediction
(docs/model.md, "Autoscaler": ceil(rate x E[S] / (target x workers)), 2 before the step and 3
after it), and when each run's tasks first reached the prediction after the step.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib
import numpy as np
import polars as pl

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lbbench.analysis import load  # noqa: E402
from lbbench.model.scenario import load_scenario  # noqa: E402

STEP_AT = 120.0


def main(folder: str = "results/autoscale") -> None:
    out = Path(folder)
    sc = load_scenario("autoscale")
    svc, asc = sc.services[0], sc.autoscale[0]
    base = sc.workload.rho * svc.replicas * svc.workers / svc.demand.mean      # requests per second
    step = sc.workload.profile[1].scale
    predict = {when: max(asc.min, math.ceil(r * svc.demand.mean / (asc.target * svc.workers)))
               for when, r in (("before", base), ("after", base * step))}
    runs = load(out).filter(pl.col("status") == "ok").select("run_id", "strategy", "seed").collect()
    ts = (load(out, "timeseries").select("run_id", "t_start", "t_end", pl.col("replicas").list.get(0).alias("n"))
          .collect().join(runs, on="run_id"))
    events = load(out, "events").collect().join(runs, on="run_id")
    strategies = sorted(runs["strategy"].unique())
    fig, axes = plt.subplots(len(strategies), 1, figsize=(8, 2.4 * len(strategies)), sharex=True, squeeze=False)
    rows = []
    for ax, strat in zip(axes[:, 0], strategies):
        mine = ts.filter(pl.col("strategy") == strat).sort("run_id", "t_start")
        for (run_id, seed), g in mine.group_by("run_id", "seed", maintain_order=True):
            ax.step(g["t_end"], g["n"], where="post", lw=0.8, alpha=0.5)
            after = g.filter(pl.col("t_end") > STEP_AT)
            reached = after.filter(pl.col("n") == predict["after"])["t_end"]
            dec = events.filter((pl.col("run_id") == run_id) & (pl.col("kind") == "autoscale"))
            rows.append({"strategy": strat, "seed": seed,
                         "reached_s": float(reached.min() - STEP_AT) if len(reached) else None,
                         "max_replicas": int(g["n"].max()), "final": int(g["n"][-1]),
                         "decisions": dec.height})
        mean = mine.group_by("t_end").agg(pl.col("n").mean()).sort("t_end")
        ax.step(mean["t_end"], mean["n"], where="post", color="black", lw=1.6, label="mean over seeds")
        pred = np.where(mean["t_end"].to_numpy() > STEP_AT, predict["after"], predict["before"])
        ax.step(mean["t_end"], pred, where="post", color="red", ls="--", lw=1, label="the rule's prediction")
        ax.set_ylabel(f"{strat}\nreplicas")
        ax.axvline(STEP_AT, color="grey", lw=0.6)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("time (s); the load triples at t = 120 s")
    fig.suptitle(f"autoscale: HPA on utilisation {asc.target}, window {asc.window:g} s, every {asc.interval:g} s")
    fig.tight_layout()
    (out / "figures").mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "figures" / "replicas_over_time.png", dpi=110)
    table = pl.DataFrame(rows).sort("strategy", "seed")
    lines = ["# The autoscaler's replicas over time", "",
             f"Written by benchmarks/autoscale_replicas.py from this folder's runs (benchmarks/autoscale.toml). "
             f"The rule predicts {predict['before']} tasks before the step and {predict['after']} after it "
             f"(ceil(rate x E[S] / (target x workers)); docs/model.md, \"Autoscaler\").", "",
             "![replicas over time](figures/replicas_over_time.png)", "",
             "| strategy | seed | tasks first at the prediction, s after the step | most tasks | tasks at the end | decisions |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in table.iter_rows(named=True):
        reached = "never" if r["reached_s"] is None else f"{r['reached_s']:.0f}"
        lines.append(f"| {r['strategy']} | {r['seed']} | {reached} | {r['max_replicas']} | {r['final']} | {r['decisions']} |")
    (out / "replicas.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'replicas.md'} and {out / 'figures' / 'replicas_over_time.png'}")


if __name__ == "__main__":
    main(*sys.argv[1:])
