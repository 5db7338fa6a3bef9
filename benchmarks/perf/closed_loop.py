"""Nanoseconds per request of a closed loop next to an open loop of the same throughput.

    python benchmarks/perf/closed_loop.py [STRATEGY ...] [--requests N] [--users U] [--think Z]

The `reference` preset (100 single-worker tasks, one central balancer): first a closed loop of
U users thinking Exp(Z) (docs/model.md, "Closed loop"), then an open loop at the throughput the
closed loop reached, both for N requests; each figure is the best of three runs (wall-clock
time on a shared machine drifts; the best is the least disturbed).
"""
from __future__ import annotations

import argparse


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
    a = ap.parse_args()
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
