"""Files that are not scenario files, paths the system refuses, stores edited by hand."""
from __future__ import annotations

import polars as pl
import pytest

from lbbench import UserError
from lbbench.analysis import load
from lbbench.cli import main
from lbbench.results.report import write_report
from lbbench.engine.run import simulate
from lbbench.experiments.sweep import load_sweep, run_sweep


def test_a_toml_nested_beyond_the_parser_is_one_line(tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(UserError, match="nests arrays or tables too deeply"):
        simulate(str(deep), progress=False)
    sweep = tmp_path / "deep_sweep.toml"
    sweep.write_text(deep.read_text())
    with pytest.raises(UserError, match="nests arrays or tables too deeply"):
        load_sweep(sweep)


def test_a_file_too_large_to_be_a_scenario_is_refused_unread(tmp_path, monkeypatch):
    import lbbench.model.scenario as S
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 200)
    monkeypatch.setattr(S, "MAX_FILE_BYTES", 1000)
    with pytest.raises(UserError, match="more than 1,000"):
        S.read_toml(big)


def test_drained_nodes_listed_twice_count_once():
    row = simulate("seed-mesh", overrides={"cluster.drained": [0, 0, 0], "run.requests": 3000}, progress=False).row()
    same = simulate("seed-mesh", overrides={"run.requests": 3000}, progress=False).row()
    assert row["completed"] == same["completed"] and row["latency_mean"] == same["latency_mean"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store")
    run_sweep(load_sweep({"name": "small", "scenario": "seed-mesh", "seeds": [1, 2],
                          "set": {"run.requests": 3000}}), out, workers=1, progress=False)
    return out


def test_a_part_edited_to_another_column_type_is_named_not_a_traceback(store, tmp_path, capsys):
    import shutil
    out = tmp_path / "edited"
    shutil.copytree(store, out)
    part = sorted((out / "runs").glob("*.parquet"))[0]
    df = pl.read_parquet(part)
    df.with_columns(pl.col("latency_p99").cast(pl.String)).write_parquet(part)
    with pytest.raises(UserError, match=part.name):
        load(out).collect()
    with pytest.raises(SystemExit) as exc:
        main(["report", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and part.name in err[0]
    # the untouched store reports
    md, _ = write_report(store)
    assert md.exists()
