"""Sweeps of many small runs: runs per second of `lbbench sweep` with 1 and 2 workers.

    python benchmarks/perf/small_runs.py [--runs 10000] [--requests 1000] [--rounds 1] [--profile 200]

Writes a sweep file in a temporary folder (`scenario = "reference"`, `[set] "run.requests" =
REQUESTS`, strategy = round_robin, least_load, random and as many seeds as make RUNS runs),
runs it once with 2 workers (every kernel in numba's disk cache, the workers' first runs
included), then times `lbbench sweep FILE --workers 1` and `--workers 2` (whole commands, each
into a fresh output folder; ROUNDS times, alternating which goes first) and prints runs/s for
each, with the CPU time the command and its workers used per run (user + system: a figure that
a busy machine changes less than the wall time; on an idle one, 2 workers reach about
2 / that many runs per second, less the start-up). With --profile N, it also runs `execute_batch` in this process over batches of 20 of the
grid's first N runs under cProfile and prints ms per run and the functions that take the time.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from startup import wall  # noqa: E402

STRATEGIES = ("round_robin", "least_load", "random")


def sweep_text(runs: int, requests: int) -> str:
    seeds = -(-runs // len(STRATEGIES))
    return (f'name = "small_runs"\nscenario = "reference"\nreplications = {seeds}\n\n'
            f'[set]\n"run.requests" = {requests}\n\n'
            f'[axes]\nstrategy = [{", ".join(repr(s).replace(chr(39), chr(34)) for s in STRATEGIES)}]\n')


def profile(file: Path, n: int, work: str) -> None:
    """execute_batch in this process over batches of 20 runs, under cProfile (SIGINT ignored, as
    in a sweep's worker: the run is not moved to a helper thread)."""
    import signal

    from lbbench.experiments.sweep import execute_batch, load_sweep

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runs = load_sweep(file, max_runs=None).runs
    runs = sorted(runs, key=lambda r: (r.strategy, r.seed))
    per = max(1, n // len(STRATEGIES))
    picked = [r for s in STRATEGIES for r in [x for x in runs if x.strategy == s][:per]]
    out = Path(work) / "profile"
    execute_batch(picked[:2], str(out / "warm"))       # imports, kernels loaded
    batches = [picked[i:i + 20] for i in range(0, len(picked), 20)]
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    for i, b in enumerate(batches):
        execute_batch(b, str(out / f"b{i}"))
    prof.disable()
    dt = time.perf_counter() - t
    print(f"in-process execute_batch, {len(picked)} runs in batches of 20: {1000 * dt / len(picked):.2f} ms per run "
          f"(under cProfile)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=1, help="timed pairs (1 worker, 2 workers)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="also profile execute_batch over N runs")
    args = ap.parse_args()
    lbbench = shutil.which("lbbench") or str(Path(sys.executable).with_name("lbbench"))
    work = tempfile.mkdtemp(prefix="lbbench-small-")
    try:
        file = Path(work) / "small_runs.toml"
        file.write_text(sweep_text(args.runs, args.requests))
        n = len(STRATEGIES) * -(-args.runs // len(STRATEGIES))

        cpu: list[float] = []

        def run(workers: int, out: str) -> float:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = wall([lbbench, "sweep", str(file), "--workers", str(workers), "--out", out, "--yes"],
                     dict(os.environ), os.getcwd())
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            return t
        t = run(2, f"{work}/warm")
        print(f"warm-up (2 workers): {n} runs in {t:.2f} s", flush=True)
        rates: dict[int, list[float]] = {1: [], 2: []}
        for p in range(args.rounds):
            for w in ((1, 2) if p % 2 == 0 else (2, 1)):
                out = f"{work}/p{p}w{w}"
                t = run(w, out)
                rates[w].append(n / t)
                print(f"round {p + 1}: {w} worker{'s' * (w > 1)}: {n} runs in {t:.2f} s, {n / t:.0f} runs/s, "
                      f"CPU {1000 * cpu[-1] / n:.2f} ms per run", flush=True)
                shutil.rmtree(out, ignore_errors=True)
        for w, r in rates.items():
            print(f"{w} worker{'s' * (w > 1)}: median {statistics.median(r):.0f} runs/s over {len(r)} round(s)")
        if args.profile:
            profile(file, args.profile, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
