"""The report's per-node CPU and deployment sections (lbbench/results/report.py):
present with the right numbers when the store has a nodes/ or an events/ table, absent without.

The synthetic stores (tests/synth_store.py, no simulation) give known figures; one small real
sweep of the rolling-update preset under round_robin (a kernel the golden set compiles) checks
the sections against the store's own tables.
"""
from __future__ import annotations

import math
import re

import numpy as np
import polars as pl
import pytest
from scipy import stats

from lbbench import analysis as A
from lbbench.results.report import write_report

from synth_store import write_part, write_store


def _pm(values, spec=".3f", scale=1.0) -> str:
    """mean ± the half-width of the 95% Student-t CI, as the report writes it."""
    x = np.asarray(values, dtype=float) * scale
    ci = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return f"{format(x.mean(), spec)} ± {format(ci, '.2g')}"


def _section(md: str, title: str) -> str:
    """The text of one `## title` section."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", md, re.S | re.M)
    assert m, f"no section {title!r}"
    return m.group(1)


def _row(text: str, first: str) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith(f"| {first} |")]
    assert len(rows) == 1, (first, rows)
    return [c.strip() for c in rows[0].strip("|").split("|")]


# --------------------------------------------------------------------------------------------
# Synthetic stores


def _cpu_store(out, n_nodes: int, seeds=range(3)):
    """A store whose runs have a nodes/ table: node k's utilisation depends on the strategy,
    the node and the seed; the summary's CPU columns are computed from it."""
    util = {}

    def extra(row):
        k = np.arange(n_nodes)
        u = 0.3 + 0.05 * k + 0.01 * row["seed"] + (0.1 if row["strategy"] == "least_load" else 0.0)
        util[row["run_id"]] = u
        write_part(out, "nodes", row["run_id"], pl.DataFrame({
            "run_id": [row["run_id"]] * n_nodes, "run_hash": [row["run_hash"]] * n_nodes,
            "node": k.astype(np.int32), "cores": [2.0] * n_nodes, "speed": np.where(k == 1, 0.5, 1.0),
            "busy_s": u * 20.0, "cpu_util": u}))
        return {"cpu_util_mean": float(u.mean()), "cpu_util_max": float(u.max()),
                "contention_mean": 0.002 * (1 + row["seed"])}
    write_store(out, seeds=seeds, rhos=(0.5,), speeds=([1.0, 1.0],), n_failed=0, timeseries=False,
                extra_columns=extra)
    return util


def test_per_node_cpu_section_has_the_nodes_table_figures(tmp_path):
    util = _cpu_store(tmp_path, n_nodes=3)
    md_path, pngs = write_report(tmp_path)
    assert "## Deployments" not in md_path.read_text()           # nodes, no events
    cpu = _section(md_path.read_text(), "Per-node CPU")
    assert "0: 2 cores, speed 1; 1: 2 cores, speed 0.5; 2: 2 cores, speed 1." in cpu
    assert "| strategy | ρ | runs | node 0 | node 1 | node 2 | mean over nodes | busiest node | contention (ms) |" in cpu
    for strategy in ("round_robin", "least_load"):
        mine = [u for rid, u in util.items() if rid.startswith(f"synth-{strategy}-")]
        row = _row(cpu, strategy)
        assert row[2] == "3"
        assert row[3:6] == [_pm([u[k] for u in mine]) for k in range(3)]
        assert row[6] == _pm([u.mean() for u in mine]) and row[7] == _pm([u.max() for u in mine])
        assert row[8] == _pm([0.002 * (1 + s) for s in range(3)], ".4g", 1e3)
    assert [p.name for p in pngs if p.name.startswith("node_cpu")] == ["node_cpu.png"]
    assert "![Per-node CPU utilisation per strategy](figures/node_cpu.png)" in cpu


def test_many_nodes_get_a_row_each(tmp_path):
    util = _cpu_store(tmp_path, n_nodes=13, seeds=range(2))
    cpu = _section(write_report(tmp_path)[0].read_text(), "Per-node CPU")
    headers = [line for line in cpu.splitlines() if line.startswith("| strategy |")]
    assert headers == ["| strategy | ρ | runs | mean over nodes | busiest node | contention (ms) |",
                       "| strategy | ρ | node | runs | CPU utilisation |"]
    mine = [u for rid, u in util.items() if rid.startswith("synth-power_of_d-")]
    assert _row(cpu, "power_of_d | 0.5 | 12") == ["power_of_d", "0.5", "12", "2", _pm([u[12] for u in mine])]


def _deploy_store(out, seeds=range(3)):
    """A store whose runs had an update of web from t = 3 s to 5.2 s (one run per strategy
    never ended it) and a scale of api to 2; time series of 0.5 s windows with failures and
    replicas. Returns {run_id: (failed per window, update's end or NaN)}."""
    truth = {}
    rng = np.random.default_rng(7)

    def extra(row):
        rid, w = row["run_id"], 20
        done = math.nan if row["seed"] == 0 and row["strategy"] == "power_of_d" else 5.2
        failed = rng.integers(0, 4, w)
        truth[rid] = (failed, done)
        t0 = np.arange(w) * 0.5
        replicas = [[4 - (3.0 <= t < 5.2), 2 if t >= 7.0 else 3] for t in t0 + 0.5]
        write_part(out, "timeseries", rid, pl.DataFrame({
            "run_hash": [row["run_hash"]] * w, "run_id": [rid] * w, "window": np.arange(w, dtype=np.int32),
            "t_start": t0, "t_end": t0 + 0.5, "completed": np.full(w, 50), "failed": failed,
            "latency_mean": np.full(w, 0.01), "latency_p99": 0.02 + 0.001 * np.arange(w),
            "throughput": np.full(w, 100.0), "replicas": pl.Series(replicas, dtype=pl.List(pl.Int64))}))
        write_part(out, "events", rid, pl.DataFrame({
            "run_id": [rid] * 2, "event": np.arange(2, dtype=np.int32), "time": [3.0, 7.0],
            "service": ["web", "api"], "kind": ["update", "scale"], "before": [0, 3], "after": [1, 2],
            "done": [done, math.nan], "duration_s": [done - 3.0, math.nan], "run_hash": [row["run_hash"]] * 2}))
        return {"update_s": done - 3.0, "failed": int(failed.sum())}
    write_store(out, seeds=seeds, rhos=(0.5,), speeds=([1.0, 1.0],), n_failed=0, timeseries=False,
                extra_columns=extra)
    return truth


def _failed_during(failed, done, t_end_last=10.0):
    t0 = np.arange(len(failed)) * 0.5
    end = t_end_last if math.isnan(done) else done
    return failed[(t0 + 0.5 > 3.0 - 0.5) & (t0 < end)].sum()     # from the window before the update


def test_deployment_section_has_the_events_and_the_failures_during_the_update(tmp_path):
    truth = _deploy_store(tmp_path)
    md_path, pngs = write_report(tmp_path)
    assert "## Per-node CPU" not in md_path.read_text()          # events, no nodes
    dep = _section(md_path.read_text(), "Deployments")
    assert "| 3 | update | web | v0 -> v1 | 2.2; not over in 1/9 runs |" in dep
    assert "| 7 | scale | api | 3 -> 2 | - |" in dep
    for strategy in ("round_robin", "least_load", "power_of_d"):
        mine = {rid: v for rid, v in truth.items() if rid.startswith(f"synth-{strategy}-")}
        row = _row(dep, strategy)
        assert row[2] == "3"
        assert row[4] == _pm([_failed_during(*v) for v in mine.values()], ".4g")
        assert row[7] == _pm([v[0].sum() for v in mine.values()], ".4g")
        assert row[5] == _pm([10.0] * 3, ".4g") == "10 ± 0"       # every window's mean is 10 ms
        p99 = [20 + (10 if not math.isnan(done) else 19) for _, done in mine.values()]   # its last window's
        assert row[6] == _pm(p99, ".4g")
    assert _row(dep, "power_of_d")[3] == "2.2 ± 0 (not over in 1/3 runs)"
    assert [p.name for p in pngs if p.name.startswith("deploy")] == ["deploy.png"]


def test_sections_absent_without_cores_or_deployments(tmp_path):
    write_store(tmp_path, seeds=range(2), rhos=(0.5,), speeds=([1.0, 1.0],), n_failed=0)
    md_path, pngs = write_report(tmp_path)
    md = md_path.read_text()
    assert "## Per-node CPU" not in md and "## Deployments" not in md
    assert not [p for p in pngs if p.name.startswith(("node_cpu", "deploy"))]


# --------------------------------------------------------------------------------------------
# A real sweep


@pytest.fixture(scope="module")
def rolling(tmp_path_factory):
    """rolling-update under round_robin, 2 seeds, 100 s, no grace (a stopped task's requests
    fail: every failure of the run is the update's); with and without cores (2 per node: the
    start-first task shares them)."""
    from lbbench.experiments.sweep import load_sweep, run_sweep
    out = tmp_path_factory.mktemp("rolling")
    sw = load_sweep({"name": "rolling", "scenario": "rolling-update", "seeds": [1, 2],
                     "set": {"run.duration": 100.0, "health.grace": 0.0},
                     "axes": {"strategy": ["round_robin"]},
                     "variants": [{"name": "plain", "set": {}},
                                  {"name": "cores", "set": {"cluster.cores": 2.0,
                                                            "deploy.events.0.order": "start-first"}}]})
    run_sweep(sw, out, workers=1, progress=False)
    md_path, pngs = write_report(out)
    return out, md_path.read_text(), pngs


def test_a_real_sweeps_sections(rolling):
    out, md, pngs = rolling
    runs, nodes, ts, ev = (A.load(out, t).collect() for t in ("runs", "nodes", "timeseries", "events"))
    # the CPU section: only the variant with cores; each node's figure is the nodes/ table's
    cpu = _section(md, "Per-node CPU")
    assert "### variant=cores" in cpu and "variant=plain" not in cpu
    with_cores = runs.filter(pl.col("variant") == "cores")["run_hash"]
    unstable = (runs.filter(pl.col("variant") == "cores")["stable"] == False).sum()  # noqa: E712
    row = _row(cpu, "round_robin" + (f" (unstable {unstable}/2)" if unstable else ""))
    for k in range(3):
        u = nodes.filter(pl.col("run_hash").is_in(with_cores.implode()) & (pl.col("node") == k))["cpu_util"]
        assert row[3 + k] == _pm(u.to_numpy()), k
    assert row[6] == _pm(runs.filter(pl.col("variant") == "cores")["cpu_util_mean"].to_numpy())
    # the deployment section: the update's windows hold every failure of the run (no grace)
    dep = _section(md, "Deployments")
    for variant in ("plain", "cores"):
        part = dep.split(f"### variant={variant}")[1].split("###")[0]
        mine = runs.filter(pl.col("variant") == variant).sort("seed")
        during = []
        for rh in mine["run_hash"]:
            e = ev.filter(pl.col("run_hash") == rh).row(0, named=True)
            w = ts.filter(pl.col("run_hash") == rh)
            during.append(w.filter((pl.col("t_end") > e["time"] - 1.0) & (pl.col("t_start") < e["done"]))["failed"].sum())
        assert during == mine["failed"].to_list() and min(during) > 0, (variant, during)
        row = _row(part, "round_robin")          # (unstable or not, the deployment's row is the strategy's)
        assert row[3] == _pm(mine["update_s"].to_numpy(), ".4g")
        assert row[4] == _pm(during, ".4g")
    assert sorted(p.name for p in pngs if p.name.startswith(("node_cpu", "deploy"))) == [
        "deploy_1_variant-cores.png", "deploy_2_variant-plain.png", "node_cpu_1_variant-cores.png"]
