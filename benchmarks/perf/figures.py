"""The performance figures in one table, reproducible:

    python benchmarks/perf/figures.py [--requests N] [--record FILE] [--compare FILE]

ns per simulated request of each reference strategy on the `reference` preset next to its
floor, both on one thread (the ratio), and lbbench's with the arrivals drawn on a second thread
(`simulate`'s default where it may use more than one CPU; timed after the pairs, its median
over as many runs); and the peak memory of a least_load run at 1e6, 1e7 and 1e8
requests (measured in a child process each, as its maximum resident set). `--record` saves the table as
JSON; `--compare` flags (exit 1) a strategy whose ratio to its floor is more than 10% above
the recorded one (the ns figures are printed next to the recorded ones; alone they drift with
the machine).

On a shared machine the speed of the same loop drifts by up to 30% from one minute to the next,
so each round times the floor and lbbench back to back (in alternating order) and the table
gives the medians over the rounds: of the floor's ns, of lbbench's, and of the per-round ratios,
with the range of those ratios.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from floors import FLOORS, run_floor  # noqa: E402

from lbbench.engine.run import simulate  # noqa: E402


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def paired(floor_fn, eng_fn, rounds: int):
    """Per round (floor, lbbench) seconds, timed back to back, the order alternating."""
    out = []
    for i in range(rounds):
        if i % 2 == 0:
            f = timed(floor_fn)
            e = timed(eng_fn)
        else:
            e = timed(eng_fn)
            f = timed(floor_fn)
        out.append((f, e))
    return out


TOLERANCE = 0.10


def regressions(record: dict, rows: list[dict], tolerance: float = TOLERANCE) -> list[str]:
    """The strategies whose ratio to the floor is more than `tolerance` above the recorded one
    (strategies missing from either side are not compared)."""
    old = {r["strategy"]: r["ratio"] for r in record["rows"]}
    return [r["strategy"] for r in rows if r["strategy"] in old and r["ratio"] > (1.0 + tolerance) * old[r["strategy"]]]


def cpu_model() -> str:
    """The CPU's model name (Linux), else the architecture: ratios to a floor differ between CPUs."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mb(requests: int, strategy: str = "least_load") -> float:
    """The peak resident set of a fresh process running one simulation, in MB.

    Read as the child's own VmHWM, not getrusage's ru_maxrss: Linux carries the maximum resident
    set across exec, so a child's ru_maxrss is at least this (large) parent's at the fork.
    """
    code = ("import resource, sys; from pathlib import Path; from lbbench.engine.run import simulate; "
            f"simulate('reference', '{strategy}', overrides={{'run.requests': {requests}}}, progress=False); "
            "hwm = [l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM:')] "
            "if sys.platform == 'linux' else []; "
            "print(int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=7, help="paired rounds per strategy (median reported)")
    ap.add_argument("--memory", action="store_true", help="also measure peak memory at 1e6, 1e7 and 1e8")
    ap.add_argument("--record")
    ap.add_argument("--compare")
    a = ap.parse_args()
    n = a.requests
    rows = []
    for s in FLOORS:
        run_floor(s, 10_000)
        simulate("reference", s, overrides={"run.requests": 10_000}, progress=False)
        over = {"run.requests": n, "run.warmup": 0.0}
        pairs = paired(lambda: run_floor(s, n),
                       lambda: simulate("reference", s, overrides=over, progress=False, prefetch=False),
                       a.rounds)
        # simulate's default where it may use more than one CPU, timed apart from the pairs
        two = [timed(lambda: simulate("reference", s, overrides=over, progress=False, prefetch=True))
               for _ in range(a.rounds)]
        ratios = [e / f for f, e in pairs]
        rows.append({"strategy": s, "floor_ns": round(statistics.median(f for f, _ in pairs) / n * 1e9, 1),
                     "lbbench_ns": round(statistics.median(e for _, e in pairs) / n * 1e9, 1),
                     "ratio": round(statistics.median(ratios), 2),
                     "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
                     "prefetch_ns": round(statistics.median(two) / n * 1e9, 1)})
    print(f"reference preset, {n:,} requests, {a.rounds} paired rounds (medians), "
          f"{cpu_model()}, python {platform.python_version()}")
    print(f"{'strategy':<14}{'floor ns':>10}{'lbbench ns':>12}{'ratio':>8}{'ratio range':>16}{'2 threads ns':>14}")
    for r in rows:
        lo, hi = r["ratio_range"]
        print(f"{r['strategy']:<14}{r['floor_ns']:>10}{r['lbbench_ns']:>12}{r['ratio']:>8}{f'{lo} - {hi}':>16}"
              f"{r['prefetch_ns']:>14}")
    result = {"requests": n, "machine": platform.machine(), "cpu": cpu_model(), "rows": rows}
    if a.memory:
        result["peak_rss_mb"] = {str(m): round(peak_rss_mb(m), 1) for m in (1_000_000, 10_000_000, 100_000_000)}
        print("peak RSS (MB):", result["peak_rss_mb"])
    if a.record:
        Path(a.record).write_text(json.dumps(result, indent=2) + "\n")
    if a.compare:
        # The ratio to the floor timed alongside is what compares across runs: on a shared
        # machine both ns figures drift together (by up to 30%) from one minute to the next.
        record = json.loads(Path(a.compare).read_text())
        if record.get("cpu", "unknown") != result["cpu"]:
            print(f"note: recorded on {record.get('cpu', 'an unrecorded CPU')}, measured on {result['cpu']}: "
                  "the ratio to the floor also depends on the CPU's microarchitecture")
        old = {r["strategy"]: r for r in record["rows"]}
        for r in rows:
            o = old.get(r["strategy"])
            if o is not None:
                print(f"{r['strategy']:<14} ratio {o['ratio']} -> {r['ratio']}, lbbench ns {o['lbbench_ns']} -> "
                      f"{r['lbbench_ns']}, floor ns {o['floor_ns']} -> {r['floor_ns']}")
        bad = regressions(record, rows)
        if bad:
            print("REGRESSION (ratio to the floor more than 10% above the recorded one):", ", ".join(bad))
            sys.exit(1)
        print("no regression against", a.compare)


if __name__ == "__main__":
    main()
