"""The performance figures in one table, reproducible:

    python benchmarks/perf/figures.py [--requests N] [--record FILE] [--compare FILE]

ns per simulated request of each reference strategy on the `reference` preset next to its
floor, and the peak memory of a least_load run at 1e6, 1e7 and 1e8
requests (measured in a child process each, as its maximum resident set). `--record` saves the table as
JSON; `--compare` flags any ratio or ns figure more than 10% worse than a recorded table.

On a shared machine the speed of the same loop drifts by up to 30% from one minute to the next,
so each round times the floor and lbbench back to back (in alternating order) and the table
gives the medians over the rounds: of the floor's ns, of lbbench's, and of the per-round ratios,
with the range of those ratios.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from floors import FLOORS, run_floor  # noqa: E402

from lbbench.simulation import simulate  # noqa: E402


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


def peak_rss_mb(requests: int, strategy: str = "least_load") -> float:
    code = ("import resource; from lbbench.simulation import simulate; "
            f"simulate('reference', '{strategy}', overrides={{'run.requests': {requests}}}, progress=False); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
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
        pairs = paired(lambda: run_floor(s, n),
                       lambda: simulate("reference", s, overrides={"run.requests": n, "run.warmup": 0.0}, progress=False),
                       a.rounds)
        ratios = [e / f for f, e in pairs]
        rows.append({"strategy": s, "floor_ns": round(statistics.median(f for f, _ in pairs) / n * 1e9, 1),
                     "lbbench_ns": round(statistics.median(e for _, e in pairs) / n * 1e9, 1),
                     "ratio": round(statistics.median(ratios), 2),
                     "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)]})
    print(f"reference preset, {n:,} requests, {a.rounds} paired rounds (medians), "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'strategy':<14}{'floor ns':>10}{'lbbench ns':>12}{'ratio':>8}{'ratio range':>16}")
    for r in rows:
        lo, hi = r["ratio_range"]
        print(f"{r['strategy']:<14}{r['floor_ns']:>10}{r['lbbench_ns']:>12}{r['ratio']:>8}{f'{lo} - {hi}':>16}")
    result = {"requests": n, "machine": platform.machine(), "rows": rows}
    if a.memory:
        result["peak_rss_mb"] = {str(m): round(peak_rss_mb(m), 1) for m in (1_000_000, 10_000_000, 100_000_000)}
        print("peak RSS (MB):", result["peak_rss_mb"])
    if a.record:
        Path(a.record).write_text(json.dumps(result, indent=2) + "\n")
    if a.compare:
        old = {r["strategy"]: r for r in json.loads(Path(a.compare).read_text())["rows"]}
        bad = [r["strategy"] for r in rows if r["strategy"] in old and r["lbbench_ns"] > 1.10 * old[r["strategy"]]["lbbench_ns"]]
        if bad:
            print("REGRESSION (>10% slower than recorded):", ", ".join(bad))
            sys.exit(1)
        print("no regression against", a.compare)


if __name__ == "__main__":
    main()
