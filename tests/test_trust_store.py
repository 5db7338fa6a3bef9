"""The results store keeps every result, never mixes two, and every sweep key means what it
says: run identity, exact resume, the folder lock, safe names, damaged stores."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from lbbench import analysis as A
from lbbench.cli import main
from lbbench.errors import UserError
from lbbench.engine.identity import run_identity
from lbbench.model.scenario import load_scenario
from lbbench.results.store import LOCK_NAME, FolderLock, safe_name
from lbbench.strategy import name_clash, resolve
from lbbench.experiments.sweep import load_sweep, run_status, run_sweep

SMALL = """
name = "small"
scenario = "seed-mesh"
replications = 2
[axes]
strategy = ["round_robin", "random"]
[set]
"run.requests" = 3000
"""

PLUGIN = '''
from numba import njit
from lbbench.strategy import Strategy

@njit
def select(cands, view, state, rng):
    return cands[0]  # VERSION

STRATEGY = Strategy(name="NAME", select=select, reads_load=False)
'''


def invoke(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    return exc.value.code, cap.out, cap.err


def one_line_error(code, err, *expect):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lbbench: error:"), err
    for e in expect:
        assert e in lines[0], lines[0]
    assert "Traceback" not in err


def write(folder: Path, text: str, name: str = "sweep.toml") -> Path:
    p = folder / name
    p.write_text(text)
    return p


def runs_of(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "runs" / "*.parquet")


def plugin(folder: Path, name: str, version: str = "1", file: str = "my_lb.py") -> Path:
    p = folder / file
    p.write_text(PLUGIN.replace("NAME", name).replace("VERSION", version))
    return p


# --------------------------------------------------------------------------------------------
# Run identity: `lbbench run`


def test_two_different_runs_into_one_out_are_both_kept_and_the_same_run_is_one_row(tmp_path, capsys):
    out = tmp_path / "o"
    base = ["run", "seed-mesh", "-s", "power_of_d", "--requests", "3000", "--out", out]
    assert invoke(capsys, *base, "-p", "d=1")[0] == 0
    assert invoke(capsys, *base, "-p", "d=2", "--set", "workload.rho=0.9")[0] == 0
    runs = runs_of(out)
    assert runs.height == 2
    assert sorted(runs["params"].to_list()) == ['{"d": 1.0}', '{"d": 2.0}']
    assert runs["run_id"].n_unique() == 2 and runs["run_hash"].n_unique() == 2
    # the same run again: its own part, replaced
    code, stdout, _ = invoke(capsys, *base, "-p", "d=1")
    assert code == 0
    again = runs_of(out)
    assert again.height == 2 and set(again["run_hash"]) == set(runs["run_hash"])
    assert len(list((out / "tasks").glob("*.parquet"))) == 2
    assert {p.stem for p in (out / "runs").glob("*.parquet")} == set(runs["run_hash"])
    assert not (out / LOCK_NAME).exists()


def test_runs_without_out_in_the_same_second_get_their_own_folders(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frozen = time.localtime(1_700_000_000)
    real = time.strftime
    monkeypatch.setattr(time, "strftime", lambda fmt, t=None: real(fmt, frozen))
    for d in ("1", "2", "1"):
        assert invoke(capsys, "run", "seed-mesh", "-s", "power_of_d", "-p", f"d={d}", "--requests", "2000")[0] == 0
    folders = sorted((tmp_path / "results").iterdir())
    assert len(folders) == 2                                # the third run is the first one again
    assert all(runs_of(f).height == 1 for f in folders)


def test_the_identity_covers_seed_params_strategy_source_engine_and_trace_content(tmp_path, monkeypatch):
    import lbbench.engine.identity as I
    sc = load_scenario("seed-mesh", {"run.requests": 1000})
    rr = resolve("round_robin")
    h = run_identity(sc, rr, {}, 0)[0]
    assert run_identity(sc, rr, {}, 0)[0] == h
    assert run_identity(sc, rr, {}, 1)[0] != h
    assert run_identity(load_scenario("seed-mesh", {"run.requests": 1001}), rr, {}, 0)[0] != h
    pod = resolve("power_of_d")
    assert run_identity(sc, pod, {"d": 1.0}, 0)[0] != run_identity(sc, pod, {"d": 2.0}, 0)[0]
    # the same plugin name from two sources
    a = resolve(f"{plugin(tmp_path, 'mine', '1', 'a.py')}:STRATEGY")
    b = resolve(f"{plugin(tmp_path, 'mine', '2', 'b.py')}:STRATEGY")
    assert a.name == b.name and run_identity(sc, a, {}, 0)[0] != run_identity(sc, b, {}, 0)[0]
    # another engine
    monkeypatch.setattr(I, "engine_version", lambda: "other")
    assert run_identity(sc, rr, {}, 0)[0] != h
    monkeypatch.undo()
    # a trace: its content, not its path
    trace = tmp_path / "t.csv"
    trace.write_text("time\n0.1\n0.2\n0.3\n")
    moved = tmp_path / "sub" / "t.csv"
    moved.parent.mkdir()
    moved.write_text(trace.read_text())
    with_trace = lambda p: load_scenario("seed-mesh", {"workload.trace": str(p)})  # noqa: E731
    ht = run_identity(with_trace(trace), rr, {}, 0)[0]
    assert run_identity(with_trace(moved), rr, {}, 0)[0] == ht
    trace.write_text("time\n0.1\n0.2\n0.4\n")
    os.utime(trace, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert run_identity(with_trace(trace), rr, {}, 0)[0] != ht


def test_rows_carry_the_run_id_and_hash_of_the_identity(tmp_path):
    sw = load_sweep(write(tmp_path, SMALL))
    run_sweep(sw, tmp_path / "o", workers=1, progress=False)
    runs = runs_of(tmp_path / "o")
    for r in sw.runs:
        row = runs.filter(pl.col("run_hash") == r.run_hash).row(0, named=True)
        assert row["run_id"].startswith(f"seed-mesh-{row['strategy']}-{r.seed}-") and row["run_id"].endswith(r.run_hash[:8])
        assert row["scenario"] == "seed-mesh"
        assert r.scenario["run"]["seed"] == r.seed == row["seed"]


# --------------------------------------------------------------------------------------------
# Resume is exact


def test_resume_after_an_edit_runs_the_new_grid_and_sets_the_old_runs_aside(tmp_path, capsys):
    f = write(tmp_path, SMALL)
    out = tmp_path / "o"
    run_sweep(load_sweep(f), out, workers=1, progress=False)
    old = set(runs_of(out)["run_hash"])
    f.write_text(SMALL.replace("3000", "4000"))
    capsys.readouterr()
    m = run_sweep(load_sweep(f), out, workers=1, resume=True, progress=False)
    err = capsys.readouterr().err
    assert "4 belong to no point of this sweep" in err and "superseded" in err
    assert m["grid_size"] == 4 and m["completed"] == 4
    runs = runs_of(out)
    assert runs.height == 4 and set(runs["requests"]) == {4000}
    assert {p.stem for p in (out / "superseded" / "runs").glob("*.parquet")} == old
    for table in ("tasks", "histograms", "timeseries"):
        assert {p.stem for p in (out / table).glob("*.parquet")} == set(runs["run_hash"])
    code, stdout, _ = invoke(capsys, "report", out)
    assert code == 0
    assert "4 runs in the store" in (out / "report.md").read_text()
    assert A.load(out).collect().height == 4


def test_a_part_copied_from_another_sweep_is_set_aside(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    run_sweep(load_sweep(write(tmp_path, SMALL)), a, workers=1, progress=False)
    other = SMALL.replace('name = "small"', 'name = "other"').replace("replications = 2", "seeds = [3]")
    run_sweep(load_sweep(write(tmp_path, other, "other.toml")), b, workers=1, progress=False)
    # a part of another sweep, and one with the same run under another sweep's name
    for p in (b / "runs").glob("*.parquet"):
        (a / "runs" / p.name).write_bytes(p.read_bytes())
    same = SMALL.replace('name = "small"', 'name = "twin"')
    run_sweep(load_sweep(write(tmp_path, same, "twin.toml")), tmp_path / "t", workers=1, progress=False)
    twin = sorted((tmp_path / "t" / "runs").glob("*.parquet"))[0]
    (a / "runs" / twin.name).write_bytes(twin.read_bytes())
    assert runs_of(a).height == 6
    capsys.readouterr()
    m = run_sweep(load_sweep(tmp_path / "sweep.toml"), a, workers=1, resume=True, progress=False)
    assert "3 belong to no point of this sweep" in capsys.readouterr().err
    runs = runs_of(a)
    assert m["completed"] == 4 and runs.height == 4 and set(runs["sweep"]) == {"small"}


def test_an_edited_plugin_is_run_again_not_mixed(tmp_path):
    p = plugin(tmp_path, "mine", "1")
    f = write(tmp_path, SMALL.replace('["round_robin", "random"]', '["round_robin", "my_lb.py:STRATEGY"]'))
    out = tmp_path / "o"
    run_sweep(load_sweep(f), out, workers=1, progress=False)
    before = runs_of(out).filter(pl.col("strategy") == "mine")["strategy_hash"].unique().to_list()
    p.write_text(PLUGIN.replace("NAME", "mine").replace("VERSION", "2"))
    m = run_sweep(load_sweep(f), out, workers=1, resume=True, progress=False)
    runs = runs_of(out)
    assert m["completed"] == 4 and runs.height == 4
    after = runs.filter(pl.col("strategy") == "mine")["strategy_hash"].unique().to_list()
    assert len(after) == 1 and after != before


def test_a_plugin_edited_while_the_sweep_runs_is_recorded_failed_not_filed_under_the_old_hash(tmp_path):
    from lbbench.experiments.sweep import execute
    p = plugin(tmp_path, "mine", "1")
    f = write(tmp_path, SMALL.replace('["round_robin", "random"]', '["my_lb.py:STRATEGY"]'))
    sw = load_sweep(f)
    p.write_text(PLUGIN.replace("NAME", "mine").replace("VERSION", "2"))
    res = execute(sw.runs[0], str(tmp_path / "o"))
    assert not res["ok"] and "changed after the sweep was read" in res["error"]
    assert not (tmp_path / "o" / "runs").exists()


# --------------------------------------------------------------------------------------------
# Every key means what it says


@pytest.mark.parametrize("section", [
    '[set]\n"run.seed" = 5\n',
    '[set]\nrun.seed = 5\n',
    '[axes]\n"run.seed" = [1, 2, 3]\n',
    '[zip]\n"run.seed" = [1, 2]\n"workload.rho" = [0.5, 0.6]\n',
    '[[variants]]\nname = "a"\nset = { "run.seed" = 4 }\n',
])
def test_run_seed_in_a_sweep_points_to_seeds(tmp_path, section):
    with pytest.raises(UserError, match="seeds = ") as exc:
        load_sweep(write(tmp_path, 'scenario = "seed-mesh"\n' + section))
    assert "run.seed" in str(exc.value)


def test_sweep_keys_clear_their_alternatives_like_set(tmp_path):
    text = """
scenario = "seed-mesh"
[set]
"workload.rate" = 50.0
[axes]
"run.duration" = [5.0, 10.0]
[[variants]]
name = "by-rho"
set = { "workload.rho" = 0.6 }
[[variants]]
name = "by-rate"
"""
    sw = load_sweep(write(tmp_path, text))
    for r in sw.runs:
        assert r.scenario["run"]["requests"] is None and r.scenario["run"]["duration"] in (5.0, 10.0)
        w = r.scenario["workload"]
        assert (w["rho"], w["rate"]) == ((0.6, None) if r.axes["variant"] == "by-rho" else (None, 50.0))


def test_a_trace_path_is_relative_to_the_file_that_names_it(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "t.csv").write_text("time\n" + "".join(f"{i * 0.01}\n" for i in range(1, 400)))
    # 100 requests a second on one task of mean demand 1 ms: utilisation 0.1
    (data / "sc.toml").write_text('name = "traced"\n[workload]\ntrace = "t.csv"\n[run]\nrequests = 300\n'
                                  '[[services]]\n[services.demand]\nmean = 0.001\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert invoke(capsys, "run", data / "sc.toml", "--no-write")[0] == 0
    # a sweep's [set] names it relative to the sweep file
    sweep = write(data, 'scenario = "seed-mesh"\n[set]\n"workload.trace" = "t.csv"\n"run.requests" = 300\n', "s.toml")
    sw = load_sweep(sweep)
    assert sw.runs[0].scenario["workload"]["trace"] == str(data / "t.csv")
    assert sw.runs[0].scenario["workload"]["rho"] is None
    # --set: relative to the current folder
    code, _, err = invoke(capsys, "run", "seed-mesh", "--set", "workload.trace=t.csv", "--no-write")
    one_line_error(code, err, "workload.trace", str(elsewhere / "t.csv"))
    monkeypatch.chdir(data)
    assert invoke(capsys, "run", "seed-mesh", "--set", "workload.trace=t.csv", "--requests", "300", "--no-write")[0] == 0


def test_two_variants_with_one_name_are_refused(tmp_path):
    text = 'scenario = "seed-mesh"\n[[variants]]\nname = "a"\n[[variants]]\nname = "a"\nset = { "network.hop" = 0.1 }\n'
    with pytest.raises(UserError, match="two variants are named 'a'"):
        load_sweep(write(tmp_path, text))


def test_a_plugin_named_like_a_registered_strategy_is_refused_in_a_sweep_and_warned_by_check(tmp_path, capsys,
                                                                                            monkeypatch):
    plugin(tmp_path, "round_robin")
    f = write(tmp_path, SMALL.replace('["round_robin", "random"]', '["round_robin", "my_lb.py:STRATEGY"]'))
    with pytest.raises(UserError, match="like the registered strategy"):
        load_sweep(f)

    class Clean:        # the behavioural checks are tests/test_plugins.py's; this is about the name
        ok = True

        def format(self):
            return "no contract faults found"
    monkeypatch.setattr("lbbench.experiments.checker.check_strategy", lambda *a, **k: Clean())
    code, out, _ = invoke(capsys, "check", f"{tmp_path / 'my_lb.py'}:STRATEGY")
    assert code == 0 and "warning:" in out and "round_robin" in out.split("warning:")[1]
    assert name_clash("round_robin") is None


def test_two_plugin_files_with_one_name_are_refused_in_a_sweep(tmp_path):
    plugin(tmp_path, "mine", "1", "a.py")
    plugin(tmp_path, "mine", "2", "b.py")
    f = write(tmp_path, SMALL.replace('["round_robin", "random"]', '["a.py:STRATEGY", "b.py:STRATEGY"]'))
    with pytest.raises(UserError, match="two plugins are named 'mine'"):
        load_sweep(f)


def test_a_huge_grid_is_refused_before_it_is_expanded(tmp_path, capsys):
    f = write(tmp_path, 'scenario = "seed-mesh"\nreplications = 1000000000000\n[axes]\n"workload.rho" = [0.5, 0.6]\n')
    t0 = time.perf_counter()
    code, _, err = invoke(capsys, "sweep", f, "--out", tmp_path / "o")
    one_line_error(code, err, "2,000,000,000,000 runs", "--yes")
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "o").exists()
    f.write_text('scenario = "seed-mesh"\nreplications = 10001\n[set]\n"run.requests" = 100\n')
    assert len(load_sweep(f, max_runs=None).runs) == 10001


# --------------------------------------------------------------------------------------------
# Names are names


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "a\\u0000b", "x" * 300, "ünï/cødé ☃", ".", "", "a\\nb"])
def test_a_scenario_name_never_becomes_a_path(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "deep" / "o"
    code, _, err = invoke(capsys, "run", "seed-mesh", "--requests", "2000", "--set", f'name="{name}"', "--out", out)
    assert code == 0, err
    written = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert all(out in p.parents for p in written), written
    real = json.loads(f'"{name}"')
    assert runs_of(out)["scenario"].to_list() == [real]
    assert all(len(p.name.encode()) < 100 for p in written)


@pytest.mark.parametrize("name", ["../x", "/abs", "a\\u0000b", "y" * 300, "ünïcødé", "..", " "])
def test_a_sweep_name_is_data_and_its_default_folder_is_safe(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    f = write(tmp_path, SMALL.replace('name = "small"', f'name = "{name}"').replace("replications = 2", "seeds = [1]"))
    code, out, err = invoke(capsys, "sweep", f, "--workers", "1")
    real = json.loads(f'"{name}"')
    if not real.strip():
        one_line_error(code, err, "name")
        return
    assert code == 0, err
    folders = list((tmp_path / "results").iterdir())
    assert len(folders) == 1 and folders[0].name == safe_name(real)
    assert set(runs_of(folders[0])["sweep"]) == {real}
    assert json.loads((folders[0] / "manifest.json").read_text())["sweep"] == real
    assert {p for p in tmp_path.rglob("*") if p.is_file()} <= {f} | set(folders[0].rglob("*"))


def test_safe_name_is_bounded_and_distinct():
    names = ["a/b", "a_b", "a\\b", "../a", "..", ".", "", "x" * 500, "é" * 300, "nul\x00", "tab\tx", "ok name"]
    mapped = [safe_name(n) for n in names]
    assert len(set(mapped)) == len(names)
    for m in mapped:
        assert m and "/" not in m and "\\" not in m and not m.startswith(".") and len(m.encode()) <= 96
        assert all(ord(c) >= 32 for c in m)
    assert safe_name("seed_mesh") == "seed_mesh" and safe_name("ok name") == "ok name"


# --------------------------------------------------------------------------------------------
# One writer at a time

HOLD = """
import sys, time
from lbbench.results.store import FolderLock
lock = FolderLock(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_writer_is_refused_while_another_holds_the_folder(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (out / "runs").mkdir()
        tmp = out / "runs" / ".tmp-someone-elses.parquet"
        tmp.write_bytes(b"in progress")
        code, _, err = invoke(capsys, "sweep", write(tmp_path, SMALL), "--out", out, "--workers", "1", "--resume")
        one_line_error(code, err, str(out), "another lbbench process")
        assert tmp.exists()                                 # its temporaries untouched
        code, _, err = invoke(capsys, "run", "seed-mesh", "--requests", "2000", "--out", out)
        one_line_error(code, err, str(out), "another lbbench process")
        assert [p.name for p in (out / "runs").iterdir()] == [tmp.name]
    finally:
        holder.kill()                                       # SIGKILL: the OS releases the lock
        holder.wait(timeout=60)
    m = run_sweep(load_sweep(tmp_path / "sweep.toml"), out, workers=1, progress=False)
    assert m["completed"] == 4 and not tmp.exists() and not (out / LOCK_NAME).exists()


def test_two_sweeps_started_together_into_one_folder_give_one_sweep(tmp_path):
    out = tmp_path / "o"
    a = load_sweep(write(tmp_path, SMALL))
    b = load_sweep(write(tmp_path, SMALL.replace('name = "small"', 'name = "other"').replace("3000", "2000"), "b.toml"))
    results, barrier = {}, threading.Barrier(2)

    def go(sw):
        barrier.wait(timeout=60)
        try:
            results[sw.name] = run_sweep(sw, out, workers=1, progress=False)
        except UserError as exc:
            results[sw.name] = exc
    threads = [threading.Thread(target=go, args=(sw,)) for sw in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    errors = [r for r in results.values() if isinstance(r, UserError)]
    done = [r for r in results.values() if isinstance(r, dict)]
    assert len(errors) == 1 and len(done) == 1, results
    winner = done[0]["sweep"]
    runs = runs_of(out)
    assert set(runs["sweep"]) == {winner} and runs.height == 4


def test_a_folder_of_another_sweep_is_refused_with_or_without_resume(tmp_path, capsys):
    out = tmp_path / "o"
    run_sweep(load_sweep(write(tmp_path, SMALL)), out, workers=1, progress=False)
    other = write(tmp_path, SMALL.replace('name = "small"', 'name = "other"'), "other.toml")
    for extra in ((), ("--resume",)):
        code, _, err = invoke(capsys, "sweep", other, "--out", out, "--workers", "1", *extra)
        one_line_error(code, err, "sweep 'small'", "another --out")
    code, _, err = invoke(capsys, "run", "seed-mesh", "--requests", "2000", "--out", out)
    one_line_error(code, err, "holds a sweep's results")
    assert runs_of(out).height == 4


KILL_SWEEP = """
name = "slow"
scenario = "reference"
seeds = [1, 2, 3, 4]
[set]
"run.requests" = 2000000
[axes]
strategy = ["least_load"]
"""


def test_a_killed_sweep_leaves_the_folder_free(tmp_path):
    f = write(tmp_path, KILL_SWEEP)
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "lbbench", "sweep", str(f), "--out", str(out), "--workers", "1"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / LOCK_NAME).exists() and proc.poll() is None:
        time.sleep(0.02)
    assert (out / LOCK_NAME).exists()
    with pytest.raises(UserError, match="another lbbench process"):
        FolderLock(out)
    os.kill(proc.pid, signal.SIGKILL)                      # the sweep alone: its workers hold no lock
    proc.wait(timeout=60)
    FolderLock(out).release()                               # free again, the lock file left behind or not
    try:
        os.killpg(proc.pid, signal.SIGKILL)                 # its workers end with it in any case
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------------------------
# Damaged stores


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"not a parquet file\n" * 10)
    elif how == "middle":
        b = bytearray(data)
        for i in range(8, len(b) // 2):
            b[i] ^= 0xFF
        path.write_bytes(bytes(b))
    elif how == "foreign":
        pl.DataFrame({"x": [1, 2]}).write_parquet(path)


@pytest.fixture
def done_sweep(tmp_path):
    f = write(tmp_path, SMALL)
    out = tmp_path / "o"
    run_sweep(load_sweep(f), out, workers=1, progress=False)
    return f, out


@pytest.mark.parametrize("table,how", [("runs", "truncated"), ("runs", "empty"), ("runs", "garbage"),
                                       ("runs", "foreign"), ("tasks", "middle"), ("timeseries", "truncated")])
def test_resume_runs_a_damaged_run_again(done_sweep, capsys, table, how):
    f, out = done_sweep
    part = sorted((out / table).glob("*.parquet"))[1]
    _damage(part, how)
    code, _, err = invoke(capsys, "sweep", f, "--out", out, "--workers", "1", "--resume")
    assert code == 0, err
    assert "Traceback" not in err and "set aside" in err
    assert (out / "superseded" / table / part.name).exists()
    runs = runs_of(out)
    assert runs.height == 4 and set(runs["status"]) == {"ok"} and runs["run_hash"].n_unique() == 4
    for t in ("runs", "tasks", "timeseries", "histograms"):
        for p in (out / t).glob("*.parquet"):
            pl.read_parquet(p)
    assert json.loads((out / "manifest.json").read_text())["completed"] == 4


@pytest.mark.parametrize("text", ["garbage{", "", "[]", '{"created": 5, "sweep": "small"}', "\x00\xff"])
def test_resume_rebuilds_a_damaged_manifest(done_sweep, capsys, text):
    f, out = done_sweep
    (out / "manifest.json").write_text(text, encoding="utf-8", errors="surrogateescape")
    code, _, err = invoke(capsys, "sweep", f, "--out", out, "--workers", "1", "--resume")
    assert code == 0, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["sweep"] == "small" and m["grid_size"] == 4 and m["completed"] == 4 and isinstance(m["created"], str)


@pytest.mark.parametrize("table,how", [("runs", "truncated"), ("runs", "garbage"), ("runs", "foreign"),
                                       ("tasks", "middle"), ("histograms", "empty")])
def test_report_and_load_name_a_damaged_part(done_sweep, capsys, table, how):
    f, out = done_sweep
    part = sorted((out / table).glob("*.parquet"))[0]
    _damage(part, how)
    code, _, err = invoke(capsys, "report", out)
    one_line_error(code, err, part.name)
    assert not (out / "report.md").exists()
    if how != "middle":         # a lazy scan reads footers; the data is read when collected
        with pytest.raises(UserError, match=part.name):
            A.load(out, table)
    assert part in A.damaged_parts(out) or how == "foreign"


def test_run_status_skips_an_unreadable_part(done_sweep):
    f, out = done_sweep
    _damage(sorted((out / "runs").glob("*.parquet"))[0], "garbage")
    assert len(run_status(out)) == 3


def test_a_part_being_written_is_not_read_by_a_glob_of_the_parts(tmp_path, monkeypatch):
    # polars' glob matches hidden names (as pathlib's does): a writer's temporary file named
    # *.parquet was read by pl.scan_parquet("DIR/runs/*.parquet") while being written, or
    # after a killed writer left it
    from lbbench.results.store import write_atomic
    runs = tmp_path / "runs"
    write_atomic(pl.DataFrame({"a": [1]}), runs / "p1.parquet")
    during = []
    real = pl.DataFrame.write_parquet

    def spy(self, file, *args, **kw):
        real(self, file, *args, **kw)           # the temporary is complete, not yet in place
        during.append((sorted(p.name for p in runs.glob("*.parquet")),
                       pl.scan_parquet(str(runs / "*.parquet")).collect()["a"].to_list()))

    monkeypatch.setattr(pl.DataFrame, "write_parquet", spy)
    write_atomic(pl.DataFrame({"a": [2]}), runs / "p2.parquet")
    assert during == [(["p1.parquet"], [1])]
    assert sorted(pl.scan_parquet(str(runs / "*.parquet")).collect()["a"].to_list()) == [1, 2]
    assert sorted(p.name for p in runs.iterdir()) == ["p1.parquet", "p2.parquet"]
