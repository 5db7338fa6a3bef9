"""Nanoseconds per request of a closed loop next to an open loop of the same throughput.

    python benchmarks/perf/closed_loop.py [STRATEGY ...] [--requests N] [--users U] [--think Z] [--floor]

The `reference` preset (100 single-worker tasks, one central balancer): first a closed loop of
U users thinking Exp(Z) (docs/model.md, "Closed loop"), then an open loop at the throughput the
closed loop reached, both for N requests; each figure is the best of three runs (wall-clock
time on a shared machine drifts; the best is the least disturbed). `--floor` also times the
closed loop's floor (benchmarks/perf/floors.py, `floor_closed_round_robin`: a minimal numba
loop doing round_robin's work in the same closed loop, its draws included), best of three.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def best_ns(scenario, strategy: str, overrides: dict, repeat: int = 3) -> tuple[float, dict]:
    from lbbench import simulate
    best, row = float("inf"), None
    for _ in range(repeat):
        r = simulate(scenario, strategy, overrides=overrides, progress=False, prefetch=False).row()
        ns = r["wall_s"] / r["requests"] * 1e9
        if ns < best:
            best, row = ns, r
    return best, row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("strategies", nargs="*", default=["round_robin", "least_load"])
    ap.add_argument("--requests", type=int, default=2_000_000)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--think", type=float, default=10.0)
    ap.add_argument("--floor", action="store_true", help="also time the closed loop's floor (round_robin's work)")
    a = ap.parse_args()
    if a.floor:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from floors import run_floor_closed
        run_floor_closed(a.users, a.think, 10_000)          # compile outside the timing
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            lat, rate = run_floor_closed(a.users, a.think, a.requests)
            best = min(best, time.perf_counter() - t)
        print(f"floor: closed loop ({a.users} users, think {a.think:g} s, round_robin's work) "
              f"{best / a.requests * 1e9:.0f} ns/request at {rate:.2f} req/s (mean latency {lat:.3f} s)")
    closed = {"workload.mode": "closed", "workload.users": a.users,
              "workload.think": {"dist": "exponential", "mean": a.think}, "run.requests": a.requests}
    for s in a.strategies:
        ns_closed, row = best_ns("reference", s, closed)
        rate = row["throughput"]
        ns_open, row_open = best_ns("reference", s, {"workload.rate": rate, "run.requests": a.requests})
        print(f"{s}: closed loop ({a.users} users, think {a.think:g} s) {ns_closed:.0f} ns/request at "
              f"{rate:.2f} req/s (utilisation {row['util_mean']:.3f}); open loop at that rate {ns_open:.0f} ns/request; "
              f"ratio {ns_closed / ns_open:.2f}")


if __name__ == "__main__":
    main()
