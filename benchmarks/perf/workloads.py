"""ns per request of time-varying open-loop runs next to the same Poisson run:

    python benchmarks/perf/workloads.py [--requests N] [--rounds R] [--strategy S ...] [--one-thread] [--cpu]
    python benchmarks/perf/workloads.py --arrivals [--requests N] [--rounds R]

Each mode (a step profile, a linear profile, a diurnal cycle, bursts, all of them at once) runs
the `reference` preset with the same seed and request count as the Poisson run; per round the
Poisson run and the mode's run are timed back to back, in alternating order, and the table gives
the medians of their ns per request and of the per-round ratios, with the range of those
ratios (docs/model.md, "Time-varying arrivals"; on a shared machine the speed of one loop drifts
from one minute to the next, which pairing cancels). `--one-thread` draws the arrivals on the
run's own thread, so that their whole cost is in the figure; `--cpu` times the process's CPU
seconds instead of the wall clock (with `--one-thread`, the run's own cost, whatever else runs on
the machine). `--arrivals` times the drawing of the arrivals alone (`Workload.chunk` in chunks of
`run.chunk`, CPU seconds, the best of the rounds): ns per arrival of each mode next to Poisson,
and the difference, which is what the mode adds to every run whatever its strategy. Run it with
`MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=134217728` in the environment: otherwise
glibc maps each chunk's arrays afresh, and their page faults move the figures by several ns.
"""
from __future__ import annotations

import argparse
import statistics
import time

from lbbench.engine.run import simulate
from lbbench.model.cluster import build_cluster
from lbbench.model.scenario import load_scenario
from lbbench.model.workload import Workload

MODES = {
    "step": {"workload.profile": [{"at": 0.0, "scale": 1.0}, {"at": 2000.0, "scale": 1.05},
                                  {"at": 4000.0, "scale": 0.9}]},
    "linear": {"workload.profile": [{"at": 0.0, "scale": 0.9}, {"at": 6000.0, "scale": 1.05}],
               "workload.profile_shape": "linear"},
    "diurnal": {"workload.diurnal": {"period": 1000.0, "amplitude": 0.1}},
    "bursts": {"workload.bursts": {"on": 5.0, "off": 20.0, "scale": 1.2}},
    "all": {"workload.profile": [{"at": 0.0, "scale": 0.9}, {"at": 6000.0, "scale": 1.0}],
            "workload.profile_shape": "linear", "workload.diurnal": {"period": 1000.0, "amplitude": 0.05},
            "workload.bursts": {"on": 5.0, "off": 20.0, "scale": 1.1}},
}


def arrivals(n: int, rounds: int) -> None:
    """CPU ns per arrival of Workload.chunk, per mode, the best of `rounds`."""
    print(f"{'mode':8s} {'ns/arrival':>10s} {'- Poisson':>9s}")
    poisson = 0.0
    for name, extra in [("Poisson", {}), *MODES.items()]:
        sc = load_scenario("reference", {"run.requests": n, "workload.rho": 0.8, **extra})
        cl = build_cluster(sc)
        Workload(sc, cl, 1).chunk(1000)         # compile and warm up
        best = float("inf")
        for _ in range(rounds):
            wl = Workload(sc, cl, 1)
            t = time.process_time()
            for start in range(0, n, sc.run.chunk):
                wl.chunk(min(sc.run.chunk, n - start))
            best = min(best, (time.process_time() - t) / n * 1e9)
        poisson = poisson or best
        print(f"{name:8s} {best:10.1f} {best - poisson:+9.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--strategy", nargs="+", default=["round_robin", "least_load"])
    ap.add_argument("--one-thread", action="store_true")
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--arrivals", action="store_true")
    args = ap.parse_args()
    n = args.requests
    if args.arrivals:
        arrivals(n, args.rounds)
        return
    prefetch = False if args.one_thread else None
    clock = time.process_time if args.cpu else time.perf_counter

    def run(strategy: str, extra: dict) -> float:
        t = clock()
        simulate("reference", strategy, seed=1, overrides={"run.requests": n, "workload.rho": 0.8, **extra},
                 progress=False, prefetch=prefetch)
        return (clock() - t) / n * 1e9

    print(f"{'strategy':12s} {'mode':8s} {'Poisson ns':>10s} {'mode ns':>8s} {'ratio':>6s} {'range':>13s}")
    for strategy in args.strategy:
        for extra in [{}, *MODES.values()]:
            run(strategy, {**extra, "run.requests": 20_000})        # compile and warm up every path
        for name, extra in MODES.items():
            pairs = []
            for i in range(args.rounds):
                if i % 2 == 0:
                    a = run(strategy, {})
                    b = run(strategy, extra)
                else:
                    b = run(strategy, extra)
                    a = run(strategy, {})
                pairs.append((a, b))
            ratios = [b / a for a, b in pairs]
            print(f"{strategy:12s} {name:8s} {statistics.median(a for a, _ in pairs):10.1f} "
                  f"{statistics.median(b for _, b in pairs):8.1f} {statistics.median(ratios):6.3f} "
                  f"[{min(ratios):.3f}, {max(ratios):.3f}]", flush=True)


if __name__ == "__main__":
    main()
