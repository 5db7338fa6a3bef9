"""Sweeps: grid expansion and validation, resumability after SIGKILL, executors agree."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from lbbench.errors import UserError
from lbbench.engine.run import TIMING_COLUMNS
from lbbench.experiments.sweep import load_sweep, run_status, run_sweep

SMALL = """
name = "small"
scenario = "seed-mesh"
seeds = [1, 2]
[set]
"run.requests" = 3000
[axes]
strategy = ["round_robin", "least_load"]
"workload.rho" = [0.5, 0.8]
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_grid_is_the_cartesian_product(tmp_path):
    sw = load_sweep(write(tmp_path, SMALL))
    assert len(sw.runs) == 2 * 2 * 2
    points = {(r.strategy, r.axes["workload.rho"], r.seed) for r in sw.runs}
    assert len(points) == 8
    assert all(r.scenario["run"]["requests"] == 3000 for r in sw.runs)
    # the hash is stable: the same file expands to the same hashes
    assert [r.run_hash for r in load_sweep(write(tmp_path, SMALL, "again.toml")).runs] == [r.run_hash for r in sw.runs]


def test_zip_variants_params_and_replications(tmp_path):
    text = """
scenario = "reference"
replications = 3
[set]
"run.requests" = 1000
[axes]
strategy = ["random", { name = "least_load" }]
[zip]
"cluster.nodes" = [3, 10]
"services.0.replicas" = [3, 10]
[[variants]]
name = "a"
[[variants]]
name = "b"
set = { "network.hop" = 0.01 }
"""
    sw = load_sweep(write(tmp_path, text))
    assert len(sw.runs) == 2 * 2 * 2 * 3
    for r in sw.runs:
        assert r.scenario["cluster"]["nodes"] == r.scenario["services"][0]["replicas"]
        assert r.scenario["network"]["hop"] == (0.01 if r.axes["variant"] == "b" else 0.0)
    assert sorted({r.seed for r in sw.runs}) == [0, 1, 2]


BAD_SWEEPS = [
    ('scenario = "reference"\n[axes]\n"workload.rho" = [0.5, 1.5]\n', "workload.rho"),
    ('scenario = "reference"\n[axes]\n"workload.rhox" = [0.5]\n', "workload.rhox"),
    ('scenario = "reference"\n[axes]\nstrategy = ["nope"]\n', "nope"),
    ('scenario = "reference"\n[axes]\nstrategy = [{ name = "random", params = { d = 2 } }]\n', "d"),
    ('scenario = "reference"\nseeds = [-1]\n', "seeds"),
    ('scenario = "reference"\nreplications = 0\n', "replications"),
    ('scenario = "reference"\n[zip]\n"cluster.nodes" = [3, 4]\n"services.0.replicas" = [3]\n', "zip"),
    ('scenario = "nowhere.toml"\n', "nowhere.toml"),
    ('scenario = "reference"\nbogus = 1\n', "bogus"),
    ('scenario = "reference"\n[axes]\n"workload.rho" = []\n', "workload.rho"),
    ('scenario = "reference"\n[axes\n', "not valid TOML"),
]


@pytest.mark.parametrize("text,names", BAD_SWEEPS)
def test_bad_sweeps_are_one_line_errors(tmp_path, text, names):
    with pytest.raises(UserError) as exc:
        load_sweep(write(tmp_path, text))
    msg = str(exc.value)
    assert names in msg and "\n" not in msg


def _rows(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "runs" / "*.parquet").drop(TIMING_COLUMNS).sort("run_hash")


def test_local_pool_and_serial_give_identical_rows(tmp_path):
    sw = load_sweep(write(tmp_path, SMALL))
    run_sweep(sw, tmp_path / "serial", workers=1, progress=False)
    run_sweep(sw, tmp_path / "pool", workers=2, progress=False)
    a, b = _rows(tmp_path / "serial"), _rows(tmp_path / "pool")
    assert a.height == 8 and a.equals(b)
    manifest = json.loads((tmp_path / "pool" / "manifest.json").read_text())
    assert manifest["grid_size"] == 8 and manifest["completed"] == 8 and manifest["failed"] == 0
    for table in ("tasks", "timeseries", "histograms"):
        assert len(list((tmp_path / "pool" / table).glob("*.parquet"))) == 8
    assert (tmp_path / "pool" / "sweep.toml").read_text() == SMALL


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_a_process_with_threads_forks_its_workers_from_a_single_threaded_server_with_numba_loaded():
    from lbbench.experiments import pool
    assert not pool.single_threaded()          # this test process: polars' threads
    with pool.Workers(1) as ws:
        ws.submit("ppid", os.getppid)
        [(_, server, _)] = ws.results()
    assert server != os.getpid()
    status = Path(f"/proc/{server}/status").read_text()
    assert "Threads:\t1\n" in status          # a fork keeps one thread: no other may hold a lock
    maps = Path(f"/proc/{server}/maps").read_text()
    assert "llvmlite" in maps and "polars" not in maps


FORK_FROM_SELF = """
import os, sys
from pathlib import Path
from lbbench.experiments import pool
pool.prepare()
alone = pool.single_threaded()
ws = pool.Workers(2)
ws.submit(0, os.getppid)
ws.submit(1, os.getppid)
parents = {r for _ in range(2) for _, r, _ in ws.results()}
ws.submit(0, os.getpid)
[(_, worker, _)] = ws.results()
maps = Path(f"/proc/{worker}/maps").read_text()
import polars  # starts threads: a pool made from here on must come from the fork server
print(alone, ws.method, parents == {os.getpid()}, "llvmlite" in maps,
      "polars" in maps, pool.context().get_start_method())
ws.close()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_the_sweep_command_forks_its_workers_from_itself_while_it_has_one_thread():
    p = subprocess.run([sys.executable, "-c", FORK_FROM_SELF], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "fork", "True", "True", "False", "forkserver"]


def test_run_queue_holds_back_a_strategy_until_its_first_run_is_done(tmp_path):
    from lbbench.experiments.sweep import RunQueue
    runs = sorted(load_sweep(write(tmp_path, SMALL)).runs, key=lambda r: (r.strategy, r.seed))
    q = RunQueue(runs)
    a, b = q.next(), q.next()
    assert (a.strategy, b.strategy) == ("least_load", "round_robin")     # not a second least_load
    assert q.next() is None                 # only runs of kernels being compiled are left: wait
    q.finished(b)
    d = q.next()
    assert d.strategy == "round_robin"      # round_robin's kernel is ready; least_load's is not
    q.finished(a)
    rest = [q.next() for _ in range(len(runs) - 3)]
    assert q.next() is None
    handed = [a, b, d, *rest]
    assert sorted(r.run_hash for r in handed) == sorted(r.run_hash for r in runs)   # each run once


def test_run_queue_starts_every_strategy_before_a_second_run_of_any():
    from lbbench.experiments.sweep import RunQueue, RunSpec
    runs = [RunSpec(sweep="s", scenario={}, strategy=name, params={}, seed=seed, run_hash=f"{name}{seed}", axes={})
            for name in ("a", "b", "c") for seed in range(3)]
    q = RunQueue(runs)
    first = q.next()
    q.finished(first)                        # a's kernel is ready, but b and c have not started
    assert [q.next().strategy for _ in range(2)] == ["b", "c"]
    assert q.next().run_hash == "a1"         # then the ready strategies' runs, in order
    assert q.next().run_hash == "a2"
    assert q.next() is None                  # b's and c's first runs are still in flight


def test_dask_local_cluster_gives_identical_rows(tmp_path):
    pytest.importorskip("distributed")
    sw = load_sweep(write(tmp_path, SMALL))
    run_sweep(sw, tmp_path / "serial", workers=1, progress=False)
    run_sweep(sw, tmp_path / "dask", workers=2, executor="dask", progress=False)
    assert _rows(tmp_path / "serial").equals(_rows(tmp_path / "dask"))


def test_existing_results_need_resume(tmp_path):
    sw = load_sweep(write(tmp_path, SMALL))
    run_sweep(sw, tmp_path / "o", workers=1, progress=False)
    with pytest.raises(UserError, match="--resume"):
        run_sweep(sw, tmp_path / "o", workers=1, progress=False)
    m = run_sweep(sw, tmp_path / "o", workers=1, resume=True, progress=False)
    assert m["completed"] == 8


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    plugin = tmp_path / "bad_lb.py"
    plugin.write_text(
        "from numba import njit\n"
        "@njit\n"
        "def select(cands, view, state, rng):\n"
        "    return -1 if view.now > 5.0 else cands[0]\n")
    text = SMALL.replace('strategy = ["round_robin", "least_load"]', 'strategy = ["round_robin", "bad_lb.py:select"]')
    sw = load_sweep(write(tmp_path, text))
    m = run_sweep(sw, tmp_path / "o", workers=1, progress=False)
    assert m["completed"] == 4 and m["failed"] == 4
    runs = pl.read_parquet(tmp_path / "o" / "runs" / "*.parquet")
    bad = runs.filter(pl.col("status") == "failed")
    assert bad.height == 4
    assert all("bad_lb:select" in e and "returned task -1" in e for e in bad["error"])
    assert bad["latency_mean"].null_count() == 4
    # resumed: the ok runs are kept, the failed ones run (and fail) again; the manifest, from
    # the status the runner kept, agrees with the parts on disk. (The plugin is not edited: an
    # edited plugin is a new kernel to compile; test_trust_store runs an edited one.)
    kept = runs.filter(pl.col("status") == "ok").sort("run_id")
    m = run_sweep(load_sweep(write(tmp_path, text)), tmp_path / "o", workers=1, resume=True, progress=False)
    assert m["completed"] == 4 and m["failed"] == 4
    again = pl.read_parquet(tmp_path / "o" / "runs" / "*.parquet")
    # one row per run in a plain scan: a failed run that had been written in a batch's part
    # with others does not leave its old row beside its new one
    assert again.height == 8 and again["run_id"].n_unique() == 8
    assert again.filter(pl.col("status") == "ok").sort("run_id").equals(kept)
    status = run_status(tmp_path / "o")
    assert sorted(status.values()) == ["failed"] * 4 + ["ok"] * 4
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["completed"] == 4


SWEEP_COMMAND = """
import sys
from lbbench.cli import _dispatch
try:
    _dispatch(["sweep", sys.argv[1], "--workers", "2", "--out", sys.argv[2]])
except SystemExit as e:
    assert not e.code, e.code
print("polars" in sys.modules)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_the_sweep_command_leaves_polars_to_its_workers(tmp_path):
    # the workers write the parts; the command itself counts the runs as they are recorded, and
    # does not import polars to read them back for the manifest (0.2 s after the last run)
    out = tmp_path / "o"
    p = subprocess.run([sys.executable, "-c", SWEEP_COMMAND, str(write(tmp_path, SMALL)), str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[-1] == "False"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["completed"] == 8 and manifest["failed"] == 0
    assert len(list((out / "runs").glob("*.parquet"))) == 8


KILL_SWEEP = """
name = "killme"
scenario = "reference"
seeds = [1, 2, 3, 4, 5, 6]
[set]
"run.requests" = 400000
[axes]
strategy = ["least_load"]
"workload.rho" = [0.5, 0.9]
"""


# short runs, which the workers run in batches (one part per table and batch)
KILL_SWEEP_BATCHED = KILL_SWEEP.replace("400000", "4000").replace("seeds = [1, 2, 3, 4, 5, 6]",
                                                                  "seeds = " + str(list(range(1, 61))))


@pytest.mark.parametrize("workers,text,total", [(1, KILL_SWEEP, 12), (2, KILL_SWEEP, 12), (2, KILL_SWEEP_BATCHED, 120)],
                         ids=["1 worker", "2 workers", "batched"])
def test_sigkill_then_resume_gives_every_run_exactly_once(tmp_path, workers, text, total):
    f = write(tmp_path, text)
    out = tmp_path / "out"
    for attempt, delay_after_first in enumerate((0.0, 0.4)):
        proc = subprocess.Popen([sys.executable, "-m", "lbbench", "sweep", str(f), "--out", str(out),
                                 "--workers", str(workers)] + (["--resume"] if attempt else []),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.time() + 120
        start = len(list((out / "runs").glob("*.parquet"))) if (out / "runs").exists() else 0
        while time.time() < deadline and proc.poll() is None:
            n = len(list((out / "runs").glob("*.parquet"))) if (out / "runs").exists() else 0
            if n > start:
                break
            time.sleep(0.02)
        time.sleep(delay_after_first)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert len(list((out / "runs").glob("*.parquet"))) < total, "the sweep finished before it could be killed"
    p = subprocess.run([sys.executable, "-m", "lbbench", "sweep", str(f), "--out", str(out), "--workers", str(workers),
                        "--resume"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    runs = pl.read_parquet(out / "runs" / "*.parquet")
    expected = {r.run_hash for r in load_sweep(f).runs}
    assert runs.height == total and set(runs["run_hash"]) == expected and runs["run_hash"].n_unique() == total
    assert bool(list((out / "runs").glob("batch-*.parquet"))) == (text == KILL_SWEEP_BATCHED)
    for table in ("tasks", "timeseries", "histograms"):
        parts = sorted((out / table).glob("*.parquet"))
        rows = pl.concat([pl.read_parquet(part) for part in parts])    # every file readable
        assert set(rows["run_hash"]) == expected
        if table == "tasks":                # each run's rows once: the reference preset's 100 tasks
            assert rows.group_by("run_hash").len()["len"].to_list() == [100] * total
    assert not list(out.rglob(".tmp-*"))
