"""Sweeps of short runs: a worker runs them in batches and writes one part per table and batch
(lbbench.experiments.sweep, `execute_batch`; docs/architecture.md, "Data flow"). The results are
those of the runs one by one, resume stays exact per run, and a batch part that is damaged,
misnamed, unfinished or holds a run of no grid point is set aside whole, its runs run again."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from lbbench.experiments.sweep import (BATCH_MAX, BATCH_REQUESTS, _batch_limit, load_sweep, run_status,
                                       run_sweep)
from lbbench.results.store import BATCH_PREFIX, TABLES, batch_part

SWEEP = """
name = "many"
scenario = "seed-mesh"
seeds = [1, 2, 3, 4, 5, 6, 7, 8]
[axes]
strategy = ["round_robin", "least_load"]
[set]
"run.requests" = 800
"""
TIMING = ["wall_s", "req_per_s"]


def _write(tmp_path: Path, text: str = SWEEP) -> Path:
    f = tmp_path / "many.toml"
    f.write_text(text)
    return f


def _tables(out: Path) -> dict[str, pl.DataFrame]:
    found = {}
    for t in TABLES:
        files = sorted((out / t).glob("*.parquet"))
        if files:
            df = pl.concat([pl.read_parquet(p) for p in files], how="diagonal_relaxed")
            found[t] = df.drop([c for c in TIMING if c in df.columns])
    return found


def _batches(out: Path) -> list[Path]:
    return sorted((out / "runs").glob(f"{BATCH_PREFIX}*.parquet"))


def _assert_exact(out: Path, grid: set[str]) -> None:
    """Every grid point has one row in runs/, every table holds the grid's runs only."""
    tables = _tables(out)
    runs = tables["runs"]
    assert runs.height == len(grid) and set(runs["run_hash"]) == grid and set(runs["status"]) == {"ok"}
    for t in ("tasks", "histograms", "timeseries"):
        assert set(tables[t]["run_hash"]) == grid
    # tasks: one row per task and run (the seed mesh has 2 tasks)
    assert tables["tasks"].group_by("run_hash").len()["len"].to_list() == [2] * len(grid)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """The sweep run with batches (no --timeout) and one by one (a --timeout), same grid."""
    base = tmp_path_factory.mktemp("batches")
    f = _write(base)
    batched, single = base / "batched", base / "single"
    run_sweep(load_sweep(f), batched, workers=1, progress=False)
    run_sweep(load_sweep(f), single, workers=1, progress=False, timeout=300)
    return f, batched, single


def test_batched_runs_give_the_results_of_runs_one_by_one(done):
    f, batched, single = done
    grid = {r.run_hash for r in load_sweep(f).runs}
    assert _batches(batched), "no batch was formed"
    assert not _batches(single)
    _assert_exact(batched, grid)
    a, b = _tables(batched), _tables(single)
    keys = {"runs": ["run_hash"], "tasks": ["run_hash", "task"], "histograms": ["run_hash", "bucket_lo"],
            "timeseries": ["run_hash", "window"]}
    for t, key in keys.items():
        assert a[t].sort(key).equals(b[t].sort(key)), t
    # a batch part's name is its runs'
    for p in _batches(batched):
        assert batch_part(pl.read_parquet(p)["run_hash"].to_list()) == p.stem


def test_resume_of_a_batched_sweep_runs_nothing(done, tmp_path, capsys):
    f, batched, _ = done
    out = tmp_path / "copy"
    shutil.copytree(batched, out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.parquet")}
    m = run_sweep(load_sweep(f), out, workers=1, resume=True, progress=False)
    assert m["completed"] == 16 and m["failed"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.parquet")} == before
    assert "set aside" not in capsys.readouterr().err


def test_a_batch_with_a_run_no_longer_in_the_grid_is_set_aside_whole(done, tmp_path, capsys):
    f, batched, _ = done
    out = tmp_path / "copy"
    shutil.copytree(batched, out)
    fewer = _write(tmp_path, SWEEP.replace("seeds = [1, 2, 3, 4, 5, 6, 7, 8]", "seeds = [1, 2, 3, 4, 5, 6, 7]"))
    sweep = load_sweep(fewer)
    grid = {r.run_hash for r in sweep.runs}
    dropped = {r.run_hash for r in load_sweep(f).runs} - grid
    holding = [p for p in _batches(out) if set(pl.read_parquet(p)["run_hash"]) & dropped]
    assert holding, "the dropped runs were not batched"
    m = run_sweep(sweep, out, workers=1, resume=True, progress=False)
    err = capsys.readouterr().err
    assert "belong to no point of this sweep" in err and "superseded" in err
    assert m["grid_size"] == 14 and m["completed"] == 14
    _assert_exact(out, grid)
    for p in holding:
        assert (out / "superseded" / "runs" / p.name).exists()


@pytest.mark.parametrize("how", ["truncated", "misnamed", "unfinished", "duplicated"])
def test_a_damaged_misnamed_unfinished_or_duplicated_batch_part_is_set_aside(done, tmp_path, capsys, how):
    f, batched, _ = done
    out = tmp_path / "copy"
    shutil.copytree(batched, out)
    part = _batches(out)[0]
    runs_in = set(pl.read_parquet(part)["run_hash"])
    if how == "truncated":
        part.write_bytes(part.read_bytes()[:200])
    elif how == "misnamed":         # a batch part whose name is not its runs'
        part.rename(part.with_name(BATCH_PREFIX + "0" * 20 + ".parquet"))
    elif how == "unfinished":       # stopped before its runs/ part was written
        part.unlink()
    else:                           # one of its runs also in a part of its own
        one = pl.read_parquet(part).head(1)
        one.write_parquet(out / "runs" / f"{one['run_hash'][0]}.parquet")
    grid = {r.run_hash for r in load_sweep(f).runs}
    assert run_status(out).keys() != grid or how == "duplicated"
    m = run_sweep(load_sweep(f), out, workers=1, resume=True, progress=False)
    err = capsys.readouterr().err
    assert "set aside" in err and "Traceback" not in err
    assert m["completed"] == 16
    _assert_exact(out, grid)
    moved = {p.stem for p in (out / "superseded").rglob("*.parquet")}
    assert moved, "nothing set aside"
    # the set-aside runs ran again and are in the store once
    assert runs_in <= set(_tables(out)["runs"]["run_hash"])


def test_batch_limit():
    sw = load_sweep({"name": "x", "scenario": "seed-mesh", "set": {"run.requests": 1000}, "seeds": [1]})
    run = sw.runs[0]
    assert _batch_limit(run, 10_000, 2, None) == min(BATCH_MAX, BATCH_REQUESTS // 1000)
    assert _batch_limit(run, 10, 2, None) == 2              # a quarter of what is left per worker
    assert _batch_limit(run, 10_000, 2, 30.0) == 1          # a timeout is per run
    big = load_sweep({"name": "x", "scenario": "seed-mesh", "set": {"run.requests": 10 * BATCH_REQUESTS},
                      "seeds": [1]}).runs[0]
    assert _batch_limit(big, 10_000, 2, None) == 1
    timed = load_sweep({"name": "x", "scenario": "seed-mesh", "set": {"run.duration": 5.0}, "seeds": [1]}).runs[0]
    assert _batch_limit(timed, 10_000, 2, None) == 1
    assert os.cpu_count()       # (the pool's size is what limits are computed with)
