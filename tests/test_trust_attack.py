"""Edge inputs that are valid and must run to a correct result: odd but legal override paths,
extreme-but-representable values, output folders with spaces and unicode, and sweep axes on
whole tables. (Their invalid neighbours are in tests/hostile/.)"""
from __future__ import annotations

import math

import polars as pl
import pytest

import lbbench
from lbbench.cli import main
from lbbench.experiments.sweep import run_sweep, load_sweep


def invoke(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    return exc.value.code, cap.out, cap.err


def test_a_zero_padded_list_index_is_the_same_index():
    res = lbbench.simulate("seed-mesh", overrides={"run.requests": 2000, "services.00.replicas": 3})
    assert res.row()["tasks"] == 3


def test_an_equals_sign_inside_a_value_belongs_to_the_value(capsys):
    code, out, err = invoke(capsys, "run", "seed-mesh", "--requests", "2000", "--set", "name=a=b", "--no-write")
    assert code == 0, err
    assert out.startswith("a=b / round_robin")


def test_an_empty_scenario_file_is_the_default_scenario(tmp_path):
    f = tmp_path / "empty.toml"
    f.write_text("")
    row = lbbench.simulate(str(f), overrides={"run.requests": 2000}).row()
    assert row["scenario"] == "empty" and row["nodes"] == 1 and row["tasks"] == 1
    assert row["completed"] == row["arrived"] > 0


def test_the_largest_seed_runs():
    row = lbbench.simulate("seed-mesh", seed=2**63 - 1, overrides={"run.requests": 2000}).row()
    assert row["seed"] == 2**63 - 1 and row["completed"] > 0 and math.isfinite(row["latency_p99"])


def test_a_service_with_a_subnormal_weight_gets_no_traffic_and_the_run_is_correct():
    res = lbbench.simulate("seed-mesh", overrides={
        "run.requests": 2000, "workload.rate": 0.5,
        "services": [{"name": "a", "port": 1, "weight": 1e-320}, {"name": "b", "port": 2}]})
    assert res.row()["completed"] == res.row()["arrived"] > 0
    assert res.tasks["served"].to_list()[0] == 0


def test_an_output_folder_with_spaces_and_unicode_holds_the_run(tmp_path, capsys):
    out = tmp_path / "ré sult ✓"
    code, _, err = invoke(capsys, "run", "seed-mesh", "--requests", "2000", "--out", out)
    assert code == 0, err
    runs = pl.read_parquet(out / "runs" / "*.parquet")
    assert runs.height == 1 and runs["completed"][0] > 0


def test_sweep_axes_on_the_name_and_on_the_whole_services_list_run_every_point(tmp_path):
    f = tmp_path / "sw.toml"
    f.write_text("""
scenario = "seed-mesh"
seeds = [1]
[set]
"run.requests" = 2000
[axes]
name = ["a", "b"]
services = [[{name = "x", port = 1, replicas = 2, demand = {mean = 0.01}}],
            [{name = "y", port = 2, replicas = 1, demand = {mean = 0.01}}]]
[zip]
"workload.rho" = [0.3]
[[variants]]
name = "only"
set = {}
""")
    sw = load_sweep(f)
    assert len(sw.runs) == 4
    manifest = run_sweep(sw, tmp_path / "out", workers=1)
    assert manifest["completed"] == 4 and manifest["failed"] == 0
    runs = pl.read_parquet(tmp_path / "out" / "runs" / "*.parquet")
    assert sorted(runs["scenario"].to_list()) == ["a", "a", "b", "b"]
    assert sorted(runs["tasks"].to_list()) == [1, 1, 2, 2]
    assert runs["run_hash"].n_unique() == 4
