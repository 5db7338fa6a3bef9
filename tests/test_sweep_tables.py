"""A sweep's tables are those of its runs simulated one by one: a batch of short runs makes one
frame per table from its runs' columns (lbbench.experiments.batch), and every row of every table
is what `simulate`'s frames give, with the run's hash, the sweep's columns and its axes added to
each (docs/architecture.md, "Data flow"). Only the timing columns differ."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest

from lbbench.engine.run import simulate
from lbbench.experiments.sweep import execute, execute_batch, failed_row, load_sweep
from lbbench.results.store import TABLES, batch_part

TIMING = ["wall_s", "req_per_s"]

# reference with the kernels the suite compiles anyway (round_robin, random); the axes change
# the tasks' number (a batch's runs of different lengths) and the type of an axis' value (0, an
# integer literal, then 0.2, a float: the runs table's column is Float64 once joined)
SWEEP = {
    "name": "tables",
    "scenario": "reference",
    "seeds": [3, 4],
    "set": {"run.requests": 400},
    "axes": {"strategy": ["round_robin", "random"], "services.0.replicas": [100, 40], "run.warmup": [0, 0.2]},
}


def _expected(run) -> dict[str, pl.DataFrame]:
    """A run's tables from `simulate`, each frame with the sweep's columns added as literals."""
    res = simulate(run.scenario, run.strategy, run.params, seed=run.seed, progress=False)
    assert res.extra["run_hash"] == run.run_hash
    extra = {"sweep": run.sweep, "run_hash": run.run_hash, "status": "ok", "error": None}
    tables = {"runs": res.summary.with_columns(**{k: pl.lit(v, dtype=pl.String) for k, v in extra.items()},
                                               **{k: pl.lit(v) for k, v in run.axes.items()})}
    for name, df in (("tasks", res.tasks), ("histograms", res.histogram()), ("timeseries", res.timeseries),
                     ("faults", res.faults), ("events", res.events), ("nodes", res.nodes)):
        if df is not None:
            tables[name] = df.with_columns(run_hash=pl.lit(run.run_hash))
    return tables


def _read(out: Path, part: str) -> dict[str, pl.DataFrame]:
    return {t: pl.read_parquet(out / t / f"{part}.parquet") for t in TABLES if (out / t / f"{part}.parquet").exists()}


def _same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name, df in want.items():
        a, b = got[name], df
        if name == "runs":
            a, b = a.drop(TIMING), b.drop(TIMING)
        assert a.schema == b.schema, name
        assert a.equals(b), name        # nulls and NaNs where they were, every value to the bit


@pytest.fixture(scope="module")
def grid():
    runs = load_sweep(SWEEP).runs
    assert len(runs) == 16
    return runs


def test_a_batch_holds_the_tables_of_its_runs_simulated_one_by_one(grid, tmp_path):
    for strategy in ("round_robin", "random"):
        runs = [r for r in grid if r.strategy == strategy]
        # a run that fails in the middle of the batch: recorded as failed, the others kept
        bad = dataclasses.replace(runs[3], run_hash="0" * 40)
        batch = runs[:3] + [bad] + runs[3:]
        results = execute_batch(batch, str(tmp_path))
        assert [r["ok"] for r in results] == [True] * 3 + [False] + [True] * 5
        assert "changed after the sweep was read" in results[3]["error"]
        want = [_expected(r) for r in runs]
        want.insert(3, {"runs": failed_row(bad, results[3]["error"])})
        joined = {name: pl.concat([w[name] for w in want if name in w], how="diagonal_relaxed")
                  for name in want[0]}
        _same(_read(tmp_path, batch_part([r.run_hash for r in batch])), joined)
        assert joined["runs"]["run.warmup"].dtype == pl.Float64


def test_a_run_alone_writes_the_tables_of_simulate(grid, tmp_path):
    run = grid[-1]
    assert execute(run, str(tmp_path))["ok"]
    _same(_read(tmp_path, run.run_hash), _expected(run))
