"""Start-up of `lbbench run`: the first run with an empty compile cache, and later runs next to
the import time of lbbench's dependencies alone.

    python benchmarks/perf/startup.py [--rounds N] [--strategy NAME] [--scenario NAME]

Cold: `lbbench run SCENARIO` in a fresh process with numba's cache pointed at an empty folder
(NUMBA_CACHE_DIR), so the strategy's kernel is compiled (the issue's target: 10 s). Warm: the
same command again, N times (target: 1.5 s), each time paired with a process that only imports
what the command imports before lbbench does anything (numpy, numba, polars, pydantic, click)
and initialises numba's compiler by calling one cached function: on a shared machine the pair's
difference is what lbbench adds, the dependencies' own time is the floor under the figure.
Whole-process wall times, interpreter start and exit included.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEPS = """
import os
import numpy, numba, polars, pydantic, click
from numba import njit

@njit(cache=True)
def one(x):
    return x + 1

one(1)
os._exit(0)     # as lbbench's commands do once their files are written: no interpreter teardown
"""


def wall(cmd: list[str], env: dict, cwd: str) -> float:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr.strip().splitlines()[-1:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="warm runs, each paired with a dependencies-only import")
    ap.add_argument("--strategy", default="round_robin")
    ap.add_argument("--scenario", default="seed-mesh")
    args = ap.parse_args()
    lbbench = shutil.which("lbbench") or str(Path(sys.executable).with_name("lbbench"))
    work = tempfile.mkdtemp(prefix="lbbench-startup-")
    env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(work, "numba-cache"))
    deps = os.path.join(work, "deps.py")
    Path(deps).write_text(DEPS)
    run = [lbbench, "run", args.scenario, "--strategy", args.strategy]
    try:
        cold = wall(run + ["--out", os.path.join(work, "cold")], env, work)
        wall([sys.executable, deps], env, work)        # the dependencies' own cache entry
        warm, floor = [], []
        for r in range(args.rounds):
            pair = [("run", run + ["--out", os.path.join(work, f"warm{r}")]), ("deps", [sys.executable, deps])]
            for name, cmd in (pair if r % 2 == 0 else pair[::-1]):
                (warm if name == "run" else floor).append(wall(cmd, env, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"`lbbench run {args.scenario} --strategy {args.strategy}`, python {sys.version.split()[0]}")
    print(f"first run, empty compile cache: {cold:.2f} s (target 10 s)")
    print("later runs:        " + "  ".join(f"{x:5.2f}" for x in warm) + f"   median {statistics.median(warm):.2f} s (target 1.5 s)")
    print("dependencies only: " + "  ".join(f"{x:5.2f}" for x in floor) + f"   median {statistics.median(floor):.2f} s")
    print(f"lbbench's own share (median of the pairs' differences): "
          f"{statistics.median(a - b for a, b in zip(warm, floor)):.2f} s")


if __name__ == "__main__":
    main()
