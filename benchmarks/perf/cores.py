"""ns per request with and without `cluster.cores` (processor sharing, lbbench/engine/cpu.py).

    python benchmarks/perf/cores.py [--requests N] [--strategy NAME]

The same runs with and without cores, alternating in this process, best of three each:
`reference` (100 single-worker tasks, one per node: with cores = 1 each request has its node's
core to itself, so the runs are the same requests, and the difference is the cost of the
virtual clocks) and `shared-nodes` (two services of 4 x 4 workers on 4 nodes of 2 cores, its
batch job removed, the same 196 req/s: with cores the 8 workers of a node share 2 cores;
without, each has its own).
The issue's bound: with cores, within 2x of the same run without.
"""
from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400_000)
    ap.add_argument("--strategy", default="least_load")
    a = ap.parse_args()
    import lbbench
    n = a.requests
    cases = {"reference": ({"run.requests": n}, {"cluster.cores": 1.0}),
             "shared-nodes": ({"run.requests": n, "cluster.background": [], "workload.rate": 196.0},
                              {"cluster.cores": 2.0})}
    print(f"{'scenario':<14} {'no cores ns':>12} {'cores ns':>9} {'ratio':>6}")
    for name, (base, cores) in cases.items():
        arms = {"without": {**base, "cluster.cores": None}, "with": {**base, **cores}}
        for ov in arms.values():     # compile or load the kernel first
            lbbench.simulate(name, a.strategy, overrides={**ov, "run.requests": 2000}, progress=False, prefetch=False)
        best = {k: float("inf") for k in arms}
        for _ in range(3):
            for k, ov in arms.items():
                r = lbbench.simulate(name, a.strategy, overrides=ov, progress=False, prefetch=False)
                best[k] = min(best[k], r.row()["wall_s"] / r.row()["requests"] * 1e9)
        print(f"{name:<14} {best['without']:>12.0f} {best['with']:>9.0f} {best['with'] / best['without']:>6.2f}",
              flush=True)


if __name__ == "__main__":
    main()
