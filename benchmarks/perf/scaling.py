"""Sweep throughput with 2 local workers against 1 (the issue's target: at least 1.8x).

    python benchmarks/perf/scaling.py [--pairs N] [--sweep FILE]

Runs `lbbench sweep FILE --workers 1` and `--workers 2` back to back, N times (alternating which
goes first, each into a fresh output folder, on a warm compile cache), and prints each pair's
wall times and speed-up and the median speed-up. Whole-command wall times: the sweep's start-up
(imports, the workers' fork server) is part of the figure, as it is of a user's wait.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from startup import wall  # noqa: E402


def sweep(lbbench: str, file: str, workers: int, out: str) -> float:
    return wall([lbbench, "sweep", file, "--workers", str(workers), "--out", out], dict(os.environ), os.getcwd())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--sweep", default=str(HERE / "throughput.toml"))
    args = ap.parse_args()
    lbbench = shutil.which("lbbench") or str(Path(sys.executable).with_name("lbbench"))
    work = tempfile.mkdtemp(prefix="lbbench-scaling-")
    speedups = []
    try:
        sweep(lbbench, args.sweep, 2, f"{work}/warm")      # every kernel in the compile cache first
        for p in range(args.pairs):
            times = {}
            for w in ((1, 2) if p % 2 == 0 else (2, 1)):
                times[w] = sweep(lbbench, args.sweep, w, f"{work}/p{p}w{w}")
            speedups.append(times[1] / times[2])
            print(f"pair {p + 1}: 1 worker {times[1]:.2f} s, 2 workers {times[2]:.2f} s, {speedups[-1]:.2f}x", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"median speed-up over {args.pairs} pairs: {statistics.median(speedups):.2f}x (target 1.8x)")


if __name__ == "__main__":
    main()
