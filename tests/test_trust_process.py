"""Processes: a run that crashes, hangs or raises costs that run only; Ctrl-C and SIGTERM stop
`lbbench run`, `check` and `sweep` at once (a plugin's endless loop included) with one line,
leaving every finished run recorded; `--timeout` stops a run that takes too long.

The plugin below misbehaves on demand, in compiled code, after t = 1 s of simulated time; it
is written once per session so that its kernel compiles once."""
from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from lbbench.experiments import pool
from lbbench.experiments.sweep import load_sweep, run_status, run_sweep

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process supervision is tested on Linux")

PLUGIN = '''
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    mode = int(view.params[0])
    if mode and view.now > 1.0:
        if mode == 1:
            state[1 << 40] = 1.0            # far outside its row, unchecked: SIGSEGV
        elif mode == 2:
            print("looping")
            while state[0] >= 0.0:
                state[0] += 1.0
        else:
            raise ValueError("boom")
    state[0] += 1.0
    return cands[int(state[0]) % cands.shape[0]]


STRATEGY = Strategy(name="hostile", select=select, reads_load=False, boundscheck=False,
                    params=(Param("mode", 0, 0, 3, integer=True),))
'''
OK, SEGFAULT, LOOP, RAISE = 0, 1, 2, 3
# --timeout of the sweeps with a plugin in an endless loop: its other runs must finish within it
# with the suite's other process busy on the second core (a worker's first run loads the kernels
# the `plugin` fixture compiled; the endless loop holds a core for this long, in each such sweep)
TIMEOUT = 4


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> str:
    """FILE.py:STRATEGY of the hostile plugin, its kernel and the baseline's compiled (and cached on
    disk): a sweep's run that compiled one could pass the --timeout."""
    import lbbench
    f = tmp_path_factory.mktemp("plugin") / "hostile_lb.py"
    f.write_text(PLUGIN)
    ref = f"{f}:STRATEGY"
    lbbench.simulate("seed-mesh", ref, {"mode": OK}, overrides={"run.requests": 500}, progress=False)
    lbbench.simulate("seed-mesh", "round_robin", overrides={"run.requests": 500}, progress=False)
    return ref


def _sweep(tmp_path: Path, plugin: str, modes: list[int], seeds=(1,), requests=2000, scenario="seed-mesh",
           file="hostile.toml", baseline=True) -> Path:
    """A sweep of round-robin (with `baseline`) and the plugin in each of `modes`."""
    strategies = ", ".join(['"round_robin"'] * baseline + [f'{{ name = "{plugin}", params = {{ mode = {m} }} }}' for m in modes])
    f = tmp_path / file
    f.write_text(f'name = "hostile"\nscenario = "{scenario}"\nseeds = {list(seeds)}\n'
                 f'[set]\n"run.requests" = {requests}\n[axes]\nstrategy = [{strategies}]\n')
    return f


def _lbbench(*args) -> subprocess.Popen:
    """The command in its own process group, as a terminal runs it."""
    return subprocess.Popen([sys.executable, "-m", "lbbench", *map(str, args)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)


def _wait_for(proc: subprocess.Popen, marker: str, timeout: float = 180) -> None:
    """Read the command's output until `marker` (a plugin in its endless loop says so)."""
    deadline = time.monotonic() + timeout
    while select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
        line = proc.stdout.readline()
        if marker in line:
            return
        assert line, proc.stderr.read()
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"no {marker!r} within {timeout} s")


def _stop(proc: subprocess.Popen, sig: int) -> tuple[int, str, float]:
    """Send `sig` to the command's process group (as Ctrl-C does); the exit code, stderr and
    the seconds until the command exited."""
    t = time.monotonic()
    os.killpg(proc.pid, sig)
    try:
        _out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the command did not stop within 60 s")
    return proc.returncode, err, time.monotonic() - t


def _one_line(err: str, text: str) -> None:
    assert err.strip().splitlines() == [f"lbbench: error: {text}"], err
    assert "Traceback" not in err


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _gone(pid: int, timeout: float = 30) -> bool:
    """Whether process `pid` has ended (exited, or a zombie no one has reaped yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _manifest_agrees(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    status = list(run_status(out).values())
    assert manifest["completed"] == status.count("ok") and manifest["failed"] == status.count("failed"), manifest
    assert not list(out.rglob(".tmp-*"))
    return manifest


# --------------------------------------------------------------------------------------------
# The local workers: a call that kills its worker, hangs or raises is one failed call

CRASHES = {
    "exit code": ((os._exit, 3), "worker died: exit code 3"),
    "SIGKILL (as the out-of-memory killer sends)": ((signal.raise_signal, signal.SIGKILL), "worker died: SIGKILL"),
    "segfault": ((ctypes.string_at, 0), "worker died: SIGSEGV"),
    "abort": ((os.abort,), "worker died: SIGABRT"),
    "raises": ((int, "x"), "ValueError: invalid literal for int() with base 10: 'x'"),
}


@pytest.mark.parametrize("case", list(CRASHES))
def test_a_call_that_kills_its_worker_is_one_failed_call(case):
    call, error = CRASHES[case]
    with pool.Workers(2) as ws:
        ws.submit("bad", *call)
        ws.submit("good", sum, [1, 2, 3])
        ended = {}
        while len(ended) < 2:
            ended.update((key, (result, err)) for key, result, err in ws.results())
        assert ended == {"bad": (None, error), "good": (6, None)}
        # the pool goes on at full size, the dead worker replaced
        ws.submit(1, os.getpid)
        ws.submit(2, os.getpid)
        pids = {r for _ in range(2) for _, r, _ in ws.results()}
        assert len(pids) == 2 and ws.idle == 2


def test_a_call_past_the_timeout_is_stopped_and_its_worker_replaced():
    with pool.Workers(1, timeout=0.5) as ws:
        t = time.monotonic()
        ws.submit("slow", time.sleep, 600)
        assert ws.results() == [("slow", None, "timed out after 0.5 s")]
        assert time.monotonic() - t < 30
        ws.submit("next", sum, [2, 2])
        assert ws.results() == [("next", 4, None)]


WORKER_OF_A_KILLED_PARENT = """
import os, sys, time
from lbbench.experiments import pool
pool.prepare()
ws = pool.Workers(2)
ws.submit(0, os.getpid)
ws.submit(1, os.getpid)
pids = sorted(r for _ in range(2) for _, r, _ in ws.results())
ws.submit(0, time.sleep, 600)
ws.submit(1, time.sleep, 600)
print(*pids, flush=True)
time.sleep(600)
"""


def test_workers_die_with_their_parent_even_when_it_is_killed():
    proc = subprocess.Popen([sys.executable, "-c", WORKER_OF_A_KILLED_PARENT], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2 and not any(_gone(w, 0.1) for w in workers)
        proc.kill()
        proc.wait()
        assert all(_gone(w) for w in workers)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# Sweeps

def test_crashing_hanging_and_raising_runs_are_failed_runs_and_resume_reruns_only_them(tmp_path, plugin):
    f = _sweep(tmp_path, plugin, [OK, SEGFAULT, LOOP, RAISE])
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "lbbench", "sweep", f, "--out", out, "--workers", "2",
                        "--timeout", str(TIMEOUT)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stderr
    assert "sweep hostile: 2/5 runs ok, 3 failed" in p.stdout
    assert "Traceback" not in p.stderr
    runs = pl.read_parquet(out / "runs" / "*.parquet")
    assert dict(zip(runs["params"], zip(runs["status"], runs["error"]))) == {
        "{}": ("ok", None),
        '{"mode": 0.0}': ("ok", None),
        '{"mode": 1.0}': ("failed", "worker died: SIGSEGV"),
        '{"mode": 2.0}': ("failed", f"timed out after {TIMEOUT} s"),
        '{"mode": 3.0}': ("failed", "StrategyError: strategy 'hostile' raised during the run: ValueError: boom")}
    assert runs["latency_mean"].null_count() == 3
    # the good runs' results are those of a sweep without the bad ones
    alone = tmp_path / "alone"
    run_sweep(load_sweep(_sweep(tmp_path, plugin, [OK], file="good.toml")), alone, workers=1, progress=False)
    timing = ["wall_s", "req_per_s"]
    ok = runs.filter(pl.col("status") == "ok").drop(timing).sort("run_hash")
    assert ok.equals(pl.read_parquet(alone / "runs" / "*.parquet").drop(timing).sort("run_hash"))
    for table in ("tasks", "histograms", "timeseries"):
        assert {p.stem for p in (out / table).glob("*.parquet")} == set(ok["run_hash"])
    manifest = _manifest_agrees(out)
    assert (manifest["completed"], manifest["failed"]) == (2, 3)

    # resumed: only the three failed runs run again (and fail again, the plugin being the same;
    # an edited plugin would make every one of its runs a new grid point: tests/test_trust_store.py)
    # inode and modification time: a rewritten part may reuse the inode its predecessor freed
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "runs").glob("*.parquet")}
    p = subprocess.run([sys.executable, "-m", "lbbench", "sweep", f, "--out", out, "--workers", "2", "--resume",
                        "--timeout", str(TIMEOUT)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stderr
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "runs").glob("*.parquet")}
    assert set(after) == set(before)
    rerun = {name for name in after if after[name] != before[name]}
    assert rerun == {f"{h}.parquet" for h in runs.filter(pl.col("status") == "failed")["run_hash"]}
    assert (_manifest_agrees(out)["completed"], _manifest_agrees(out)["failed"]) == (2, 3)


def test_a_worker_that_dies_in_a_batch_of_short_runs_costs_only_the_run_that_killed_it(tmp_path, plugin):
    """Short runs go to a worker in batches (no --timeout): a batch whose worker died runs
    again run by run, so the crashing runs alone are failed and the others are kept once."""
    f = _sweep(tmp_path, plugin, [OK, SEGFAULT, RAISE], seeds=range(1, 5), requests=600)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "lbbench", "sweep", f, "--out", out, "--workers", "1"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stderr
    assert "sweep hostile: 8/16 runs ok, 8 failed" in p.stdout and "Traceback" not in p.stderr
    assert list((out / "runs").glob("batch-*.parquet")), "no batch was formed"     # round-robin's, at least
    runs = pl.read_parquet(out / "runs" / "*.parquet")
    assert runs.height == 16 and runs["run_hash"].n_unique() == 16
    got = runs.group_by("params", "status", "error").len().sort("params")
    assert got.rows() == [('{"mode": 0.0}', "ok", None, 4), ('{"mode": 1.0}', "failed", "worker died: SIGSEGV", 4),
                          ('{"mode": 3.0}', "failed", "StrategyError: strategy 'hostile' raised during the run: "
                                                      "ValueError: boom", 4), ("{}", "ok", None, 4)]
    ok = set(runs.filter(pl.col("status") == "ok")["run_hash"])
    for table in ("tasks", "histograms", "timeseries"):
        rows = pl.read_parquet(out / table / "*.parquet")
        assert set(rows["run_hash"]) == ok
    assert pl.read_parquet(out / "tasks" / "*.parquet").height == 2 * len(ok)
    _manifest_agrees(out)


def test_one_worker_runs_in_a_process_of_its_own_with_a_timeout_too(tmp_path, plugin):
    f = _sweep(tmp_path, plugin, [SEGFAULT, LOOP])
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "lbbench", "sweep", f, "--out", out, "--workers", "1",
                        "--timeout", str(TIMEOUT)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stderr
    assert "sweep hostile: 1/3 runs ok, 2 failed" in p.stdout
    runs = pl.read_parquet(out / "runs" / "*.parquet")
    assert sorted(runs["error"].drop_nulls()) == [f"timed out after {TIMEOUT} s", "worker died: SIGSEGV"]
    _manifest_agrees(out)


def test_ctrl_c_stops_a_sweep_that_resume_then_completes(tmp_path):
    f = _sweep(tmp_path, "", [], seeds=range(1, 9), requests=1_500_000, scenario="reference")
    out = tmp_path / "out"
    proc = _lbbench("sweep", f, "--out", out, "--workers", "2")
    deadline = time.monotonic() + 300
    while not list((out / "runs").glob("*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _children(proc.pid)
    code, err, seconds = _stop(proc, signal.SIGINT)
    assert code == 130 and seconds < 5, (code, seconds)
    _one_line(err, "interrupted")
    assert workers and all(_gone(w) for w in workers)
    manifest = _manifest_agrees(out)
    assert 1 <= manifest["completed"] < 8 and manifest["failed"] == 0
    p = subprocess.run([sys.executable, "-m", "lbbench", "sweep", f, "--out", out, "--workers", "2", "--resume"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert _manifest_agrees(out)["completed"] == 8
    assert pl.read_parquet(out / "runs" / "*.parquet")["run_hash"].n_unique() == 8 == len(run_status(out))


def test_sigterm_stops_a_sweep_whose_worker_is_in_an_endless_loop(tmp_path, plugin):
    f = _sweep(tmp_path, plugin, [LOOP])
    out = tmp_path / "out"
    proc = _lbbench("sweep", f, "--out", out, "--workers", "2")
    _wait_for(proc, "looping")
    workers = _children(proc.pid)
    code, err, seconds = _stop(proc, signal.SIGTERM)
    assert code == 143 and seconds < 5, (code, seconds)
    _one_line(err, "terminated")
    assert len(workers) == 2 and all(_gone(w) for w in workers)
    manifest = _manifest_agrees(out)
    assert manifest["failed"] == 0 and manifest["completed"] <= 1


# --------------------------------------------------------------------------------------------
# A single run, and the check

@pytest.mark.parametrize("verb", ["run", "check"])
def test_ctrl_c_stops_a_plugin_in_an_endless_loop(tmp_path, plugin, verb):
    out = tmp_path / "out"
    args = (["run", "seed-mesh", "-n", "2000", "--strategy", plugin, "--out", out] if verb == "run" else ["check", plugin])
    proc = _lbbench(*args, "--param", f"mode={LOOP}")
    _wait_for(proc, "looping")
    code, err, seconds = _stop(proc, signal.SIGINT)
    assert code == 130 and seconds < 2, (code, seconds)
    _one_line(err, "interrupted")
    assert not out.exists() or not any(out.iterdir())


def test_dask_records_a_run_whose_worker_died_as_failed(tmp_path, plugin):
    import dask
    import distributed  # noqa: F401  (its defaults in dask.config first: set() below would hide them on exit)
    # one attempt (Dask's default is to try a run on four workers before it gives up)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        m = run_sweep(load_sweep(_sweep(tmp_path, plugin, [SEGFAULT], baseline=False)), tmp_path / "out", workers=1,
                      executor="dask", progress=False)
    assert (m["completed"], m["failed"]) == (0, 1)
    [error] = pl.read_parquet(tmp_path / "out" / "runs" / "*.parquet")["error"]
    assert error.startswith("worker lost: KilledWorker: ")
