"""The command line: the issue's commands work, bad input is one line with exit code 2."""
from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lbbench.cli import main


def invoke(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_strategies_lists_the_reference_plugins(capsys):
    code, out, _ = invoke(capsys, "strategies")
    assert code == 0
    lines = out.strip().splitlines()
    for name in ("round_robin", "least_load", "random"):
        assert sum(line.startswith(name + " ") for line in lines) == 1


def test_run_writes_runs_and_tasks(tmp_path, capsys):
    out_dir = tmp_path / "try"
    code, out, err = invoke(capsys, "run", "reference", "--strategy", "least_load", "--set", "workload.rho=0.95",
                            "--requests", "20000", "--seed", "7", "--out", str(out_dir))
    assert code == 0, err
    assert "latency" in out and "p99" in out and "imbalance" in out
    runs = pl.read_parquet(out_dir / "runs" / "*.parquet")
    tasks = pl.read_parquet(out_dir / "tasks" / "*.parquet")
    assert runs.height == 1 and tasks.height == 100
    row = runs.row(0, named=True)
    assert row["strategy"] == "least_load" and row["seed"] == 7 and row["rho"] == pytest.approx(0.95)
    assert row["requests"] == 20000
    assert row["arrived"] == row["completed"] + row["rejected"] + row["failed"] + row["in_flight"]


def test_one_thread_gives_the_same_run(tmp_path, capsys):
    """`--one-thread` draws the arrivals on the run's own thread: the same results."""
    rows = []
    for flag in ((), ("--one-thread",)):
        out_dir = tmp_path / f"run{len(flag)}"
        code, out, err = invoke(capsys, "run", "reference", "--strategy", "round_robin", "--requests", "200000",
                                "--seed", "3", "--out", str(out_dir), *flag)
        assert code == 0, err
        rows.append(pl.read_parquet(out_dir / "runs" / "*.parquet").drop("wall_s", "req_per_s"))
    assert_frame_equal(rows[0], rows[1])        # (NaN equal to NaN)
    assert rows[0]["requests"][0] == 200000 and rows[0]["completed"][0] > 150000


def test_run_a_toml_file_with_overrides(tmp_path, capsys):
    f = tmp_path / "my_cluster.toml"
    f.write_text('[cluster]\nnodes = 4\n[[services]]\nname = "api"\nport = 8080\nreplicas = 3\n'
                 '[workload]\nrho = 0.6\n[run]\nrequests = 5000\n')
    code, out, err = invoke(capsys, "run", str(f), "--strategy", "random", "--set", "services.0.replicas=12",
                            "--set", "balancer.info=local", "--out", str(tmp_path / "o"))
    assert code == 0, err
    row = pl.read_parquet(tmp_path / "o" / "runs" / "*.parquet").row(0, named=True)
    assert row["tasks"] == 12 and row["info"] == "local" and row["scenario"] == "my_cluster"


BAD_RUNS = [
    (["run", "reference", "--set", "services.0.replicas=0"], "services.0.replicas"),
    (["run", "reference", "--set", "workload.rho=-1"], "workload.rho"),
    (["run", "reference", "--set", "workload.rho=1.2"], "workload.rho"),
    (["run", "reference", "--set", "workload.rhox=0.5"], "workload.rhox"),
    (["run", "reference", "--set", "services.5.replicas=2"], "index 5"),
    (["run", "reference", "--set", "noequals"], "KEY=VALUE"),
    (["run", "reference", "--set", "balancer.info=stale:0"], "balancer.info"),
    (["run", "reference", "--set", "balancer.mode=mesh"], "balancer.mode"),
    (["run", "reference", "--set", "cluster.speeds=[1,2]"], "cluster.speeds"),
    (["run", "reference", "--set", "workload.entry=single:200"], "workload.entry"),
    (["run", "does-not-exist.toml"], "does-not-exist.toml"),
    (["run", "reference", "--strategy", "no_such_strategy"], "no_such_strategy"),
    (["run", "reference", "--strategy", "round_robin", "--param", "d=2"], "d"),
    (["run", "reference", "--requests", "0"], "run.requests"),
    (["run", "reference", "--bogus"], "--bogus"),
]


@pytest.mark.parametrize("args,names", BAD_RUNS, ids=[" ".join(a[1:]) for a, _ in BAD_RUNS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, names):
    out_dir = tmp_path / "out"
    code, out, err = invoke(capsys, *args, "--out", str(out_dir)) if args[-1] != "--bogus" else invoke(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lbbench: error:") and names in lines[0]
    assert "Traceback" not in err
    assert not out_dir.exists()


def test_bad_scenario_file(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text("[cluster]\nnodes = 'three'\n")
    code, _, err = invoke(capsys, "run", str(f), "--out", str(tmp_path / "o"))
    assert code == 2 and "cluster.nodes" in err and len(err.strip().splitlines()) == 1
    f.write_text("[cluster\nnodes = 3\n")
    code, _, err = invoke(capsys, "run", str(f), "--out", str(tmp_path / "o"))
    assert code == 2 and "not valid TOML" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_unwritable_out_is_a_user_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = invoke(capsys, "run", "reference", "--requests", "1000", "--out", str(blocker / "sub"))
    assert code == 2 and "--out" in err


def test_python_dash_m_entry_point(cli):
    p = cli("strategies")
    assert p.returncode == 0 and "round_robin" in p.stdout
    p = cli("run", "seed-mesh", "--set", "workload.rho=abc")
    assert p.returncode == 2 and "workload.rho" in p.stderr and "Traceback" not in p.stderr
