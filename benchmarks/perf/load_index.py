"""ns per request of least_load with and without the load index, as the cluster grows.

    python benchmarks/perf/load_index.py [--requests N]

`least_load` declares `Strategy(load_index=True)` and finds its task in O(log n) from the
engine's load index (docs/architecture.md, "The load index"); the same spec with
`load_index=False` scans its candidates, O(n), and makes the same decisions. Both run in this
process, alternating, on the `reference` preset (central balancer, global information) at
100, 1,000 and 10,000 tasks; the best of three runs of each is printed.
"""
from __future__ import annotations

import argparse
import dataclasses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400_000)
    n = ap.parse_args().requests
    import lbbench
    from lbbench.plugins.strategy import resolve
    spec = resolve("least_load")
    arms = {"index": spec, "scan": dataclasses.replace(spec, load_index=False)}
    print(f"{'tasks':>6} {'index ns':>9} {'scan ns':>9}")
    for tasks, nodes in ((100, 100), (1000, 100), (10000, 1000)):
        ov = {"cluster.nodes": nodes, "services.0.replicas": tasks, "run.requests": n}
        for s in arms.values():     # compile or load the kernels first
            lbbench.simulate("reference", s, overrides={**ov, "run.requests": 2000}, progress=False, prefetch=False)
        best = {k: float("inf") for k in arms}
        for _ in range(3):
            for k, s in arms.items():
                r = lbbench.simulate("reference", s, overrides=ov, progress=False, prefetch=False)
                best[k] = min(best[k], r.row()["wall_s"] / n * 1e9)
        print(f"{tasks:>6} {best['index']:>9.0f} {best['scan']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
