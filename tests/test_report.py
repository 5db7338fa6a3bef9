"""lbbench.results.report.write_report on synthetic stores (no simulation)."""
from __future__ import annotations

import re
import shutil

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from lbbench import analysis as A
from lbbench.errors import UserError
from lbbench.results.report import write_report

from synth_store import write_store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_pngs(out, pngs):
    assert pngs, "no figures written"
    assert len(set(pngs)) == len(pngs)
    for p in pngs:
        assert p.parent == out / "figures" and p.suffix == ".png"
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000
        img = imread(p)
        assert img.shape[0] > 200 and img.shape[1] > 200
        assert float(np.std(img[..., :3])) > 0.02  # something was drawn, not a blank canvas
    # nothing written that is not returned
    assert sorted(out.glob("figures/*.png")) == sorted(pngs)


def _linked_images(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    write_store(out, seeds=range(4))
    md_path, pngs = write_report(out)
    return out, md_path, pngs


def test_report_writes_figures_and_links_every_one(full_report):
    out, md_path, pngs = full_report
    assert md_path == out / "report.md"
    md = md_path.read_text()
    _check_pngs(out, pngs)
    linked = _linked_images(md)
    assert sorted(linked) == sorted(p.relative_to(out).as_posix() for p in pngs)
    for p in pngs:
        assert (out / p.relative_to(out)).is_file()
    names = [p.name for p in pngs]
    # two speeds variants -> latency, utilisation and time-series figures for each, never mixed
    assert sum(n.startswith("latency_vs_rho") for n in names) == 2
    assert sum(n.startswith("utilisation") for n in names) == 2
    assert sum(n.startswith("timeseries") for n in names) == 2


def test_report_content(full_report):
    out, md_path, _ = full_report
    md = md_path.read_text()
    assert md.startswith("# Sweep report: synthetic-sweep\n")
    assert f"`lbbench report {out}`" in md
    assert "1 of 49 runs failed" in md and "synthetic failure" in md and "second line" not in md
    assert "## Comparison with round_robin" in md
    assert "cluster.speeds=[1, 1]" in md and "cluster.speeds=[1, 2]" in md
    assert '"workload.rho" = [0.5, 0.8]' in md  # the sweep file is quoted
    # the numbers in the tables are the analysis functions' numbers
    runs = A.load(out).collect().filter(pl.col("status") == "ok")
    sel = runs.filter((pl.col("strategy") == "least_load") & (pl.col("rho") == 0.8)
                      & (pl.col("cluster.speeds").list.get(1) == 2.0))
    mean_ms = sel["latency_mean"].mean() * 1e3
    assert f"| least_load | 0.8 | 4 | {mean_ms:.4g} |" in md
    cmp = A.compare(runs.lazy(), "round_robin", "latency_p99", ["rho", "cluster.speeds"]).collect()
    r = cmp.filter((pl.col("strategy") == "least_load") & (pl.col("rho") == 0.8)
                   & (pl.col("cluster.speeds").list.get(1) == 2.0)).row(0, named=True)
    p = r["p_value"]
    p_txt = f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"
    assert f"| least_load | 0.8 | 4 | {r['ratio_mean']:.3f}" in md and f"| {p_txt} |" in md


def test_report_without_timeseries_or_baseline(tmp_path):
    write_store(tmp_path, strategies=("least_load", "power_of_d"), seeds=range(3), speeds=([1.0, 1.0],),
                timeseries=False, n_failed=0)
    md_path, pngs = write_report(tmp_path)
    _check_pngs(tmp_path, pngs)
    names = sorted(p.name for p in pngs)
    assert names == ["latency_vs_rho.png", "utilisation.png"]  # one configuration: plain names
    md = md_path.read_text()
    assert "No timeseries/ table" in md
    assert "No `round_robin` runs" in md
    assert "0 failed runs." in md
    assert sorted(_linked_images(md)) == ["figures/latency_vs_rho.png", "figures/utilisation.png"]


def test_a_report_of_fewer_figures_removes_the_ones_it_no_longer_draws(tmp_path):
    write_store(tmp_path, strategies=("least_load", "power_of_d"), seeds=range(3), speeds=([1.0, 1.0],), n_failed=0)
    _, first = write_report(tmp_path)
    mine = tmp_path / "figures" / "mine.png"          # a file lbbench did not write: kept
    mine.write_bytes(b"x")
    shutil.rmtree(tmp_path / "timeseries")             # the time-series figures go from the report
    _, second = write_report(tmp_path)
    gone = {p.name for p in first} - {p.name for p in second}
    assert gone, "the second report draws the same figures: nothing to check"
    on_disk = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert on_disk == {p.name for p in second} | {"mine.png"}
    mine.unlink()
    _check_pngs(tmp_path, second)


def test_report_facets_ignore_seed_and_strategy_parameter_keys(tmp_path):
    # run.seed varies with the seed and params.d with the strategy: neither is a configuration
    write_store(tmp_path, seeds=range(3), speeds=([1.0, 1.0],), n_failed=0, timeseries=False,
                extra_columns=lambda r: {"run.seed": r["seed"], "params.d": 2 if r["strategy"] == "power_of_d" else None})
    _, pngs = write_report(tmp_path)
    assert sorted(p.name for p in pngs) == ["latency_vs_rho.png", "utilisation.png"]


def test_report_facets_by_variant(tmp_path):
    write_store(tmp_path, seeds=range(3), speeds={"equal": [1.0, 1.0], "slow-node": [1.0, 0.5]}, n_failed=0,
                timeseries=False)
    md_path, pngs = write_report(tmp_path)
    assert sorted(p.name for p in pngs if p.name.startswith("latency")) == [
        "latency_vs_rho_1_variant-equal.png", "latency_vs_rho_2_variant-slow-node.png"]
    md = md_path.read_text()
    assert "### variant=equal" in md and "### variant=slow-node" in md


def test_report_only_runs_table_and_rerun(tmp_path):
    write_store(tmp_path, seeds=range(3), speeds=([1.0, 1.0],), n_failed=0)
    for t in ("tasks", "histograms", "timeseries"):
        shutil.rmtree(tmp_path / t)
    (tmp_path / "manifest.json").unlink()
    md_path, pngs = write_report(tmp_path)
    assert [p.name for p in pngs] == ["latency_vs_rho.png"]
    md = md_path.read_text()
    assert "synthetic-sweep" in md.splitlines()[0]  # name from the runs' sweep column
    assert "pooled p99" not in md
    # a second run overwrites in place
    md_path2, pngs2 = write_report(tmp_path)
    assert md_path2 == md_path and pngs2 == pngs


def test_report_on_empty_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="runs"):
        write_report(tmp_path)


def test_report_when_every_run_failed(tmp_path):
    write_store(tmp_path, seeds=range(0), n_failed=2)
    md_path, pngs = write_report(tmp_path)
    assert pngs == [] and not list(tmp_path.glob("figures/*.png"))
    md = md_path.read_text()
    assert "2 of 2 runs failed" in md and "No successful runs" in md and "![" not in md


def test_a_closed_loops_runs_are_one_point_per_strategy(tmp_path):
    """A closed loop's rho is measured, so it differs by run; the report shows a configuration's
    closed-loop runs at one load (their median) instead of a row per run."""
    from lbbench.experiments.sweep import load_sweep, run_sweep
    sw = load_sweep({"name": "closed", "scenario": "closed-loop", "seeds": [1, 2],
                     "set": {"run.requests": 3000}, "axes": {"strategy": ["round_robin", "least_load"]}})
    run_sweep(sw, tmp_path / "o", workers=1, progress=False)
    runs = pl.read_parquet(tmp_path / "o" / "runs" / "*.parquet")
    assert runs["rho"].n_unique() > 1            # measured: each run its own
    md = write_report(tmp_path / "o")[0].read_text()
    rows = [line for line in md.splitlines() if re.match(r"\| (round_robin|least_load) \| [0-9.]+ \| 2 \|", line)]
    assert len(rows) >= 2 and len({line.split("|")[2] for line in rows}) == 1, md
    assert "Closed-loop and sessions runs" in md


def test_sessions_runs_are_placed_at_their_median_load_like_a_closed_loops():
    """Sessions' rho is measured too (docs/model.md, "Sessions"): within a configuration, their
    runs get one load, the median of theirs; an open-loop run keeps its own."""
    from lbbench.results.report import _closed_loop_load
    runs = pl.DataFrame({"_facet": ["a", "a", "a", "a"], "users": [0, 0, 0, 0], "sessions": [40, 38, 41, 0],
                         "rho": [0.5962, 0.6066, 0.6086, 0.6]})
    out = _closed_loop_load(runs, pl.Series([True, True, True, True]))
    assert out["rho"].to_list() == [0.607, 0.607, 0.607, 0.6]
