"""An interrupted sweep, SIGKILLed at random moments several times, resumes to every run
exactly once:

    python benchmarks/perf/killresume.py [--kills 10] [--workers 2] [--seed 1]

Starts `lbbench sweep` on a 24-run grid, kills its whole process group after a random delay
(uniform over [0, --max-delay] seconds, from a seeded generator, so some kills land while the
pool starts and some while parts are being written), restarts it with `--resume`, and repeats.
A last `--resume` runs to the end. Then every run's hash must appear exactly once in runs/,
tasks/, timeseries/ and histograms/, every part must read, and no temporary file may be left.
Prints how many runs each attempt added and exits 1 on any violation.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from lbbench.experiments.sweep import load_sweep

SWEEP = """
name = "killresume"
scenario = "reference"
seeds = [1, 2, 3, 4, 5, 6]
[set]
"run.requests" = 300000
[axes]
strategy = ["least_load", "round_robin"]
"workload.rho" = [0.5, 0.9]
"""


def count(out: Path) -> int:
    return len(list((out / "runs").glob("*.parquet"))) if (out / "runs").is_dir() else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-delay", type=float, default=4.0)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "killresume.toml"
        f.write_text(SWEEP)
        out = Path(tmp) / "out"
        expected = {r.run_hash for r in load_sweep(f).runs}
        base = [sys.executable, "-m", "lbbench", "sweep", str(f), "--out", str(out), "--workers", str(a.workers)]
        for i in range(a.kills):
            before = count(out)
            proc = subprocess.Popen(base + (["--resume"] if i else []), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            delay = rnd.uniform(0.0, a.max_delay)
            time.sleep(delay)
            finished = proc.poll() is not None
            if not finished:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            print(f"attempt {i + 1}: {'finished before the kill' if finished else f'killed after {delay:.2f} s'}, "
                  f"runs {before} -> {count(out)} of {len(expected)}")
        p = subprocess.run(base + ["--resume"], stdin=subprocess.DEVNULL, capture_output=True, text=True)
        print(f"final resume: exit {p.returncode}, runs {count(out)} of {len(expected)}")
        bad = []
        if p.returncode != 0:
            bad.append(f"final resume exited {p.returncode}: {p.stderr.strip()[-300:]}")
        runs = pl.read_parquet(out / "runs" / "*.parquet")
        if runs.height != len(expected) or set(runs["run_hash"]) != expected or runs["run_hash"].n_unique() != runs.height:
            bad.append(f"runs/ has {runs.height} rows, {runs['run_hash'].n_unique()} distinct, expected {len(expected)}")
        for table in ("tasks", "timeseries", "histograms"):
            parts = sorted((out / table).glob("*.parquet"))
            if {q.stem for q in parts} != expected:
                bad.append(f"{table}/ parts do not match the grid")
            for q in parts:
                pl.read_parquet(q)
        tmp_left = list(out.rglob(".tmp-*"))
        if tmp_left:
            bad.append(f"{len(tmp_left)} temporary files left")
    for b in bad:
        print("FAIL:", b)
    print("every run exactly once" if not bad else "VIOLATION")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
