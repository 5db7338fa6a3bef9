"""The scale table: ns per request and peak memory as the cluster grows.

    python benchmarks/perf/scale_table.py [--requests N] [--sizes 3/2,10/100,...]
                                          [--strategies round_robin,...] [--info local] [--out FILE]

Each cell is one run of the `reference` preset with per-node balancers, local information,
an overlay hop of 0.5 ms and each balancer's round-robin starting at a random place
(`balancer.rr_start = "random"`, the default outside `reference`: with the preset's "zero", a
thousand round-robins start together and move in step, a herd whose queues hold millions of
requests; see benchmarks/README.md, "Scale"), the setting the scale figures use; N
requests on one thread (the arrivals drawn on the kernel's thread, so the figure is the
engine's alone), in a fresh process of its own: the process compiles or loads the kernel with
a short run first, then times the measured run (`wall_s` of its summary, divided by the
requests) and reports its peak resident memory (the whole process: the interpreter, numpy,
numba and polars take about 150 MB of it before the first run). "faults" adds random task
faults, each task slot crashing at the times of a Poisson process of mean gap 2,000 s
(`faults.random = {target = "task", mtbf = 2000}`), with the preset's health settings.

Prints a markdown table (and writes it to --out when given): one row per size, one column
per strategy and fault setting, "ns / MB" in each cell ("over N s": the cell's process was
stopped after --cell-timeout seconds).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

SIZES = ((3, 2), (10, 100), (100, 1_000), (1_000, 10_000), (1_000, 100_000))
STRATEGIES = ("round_robin", "power_of_d", "least_load", "join_idle_queue")


def overrides(nodes: int, tasks: int, faults: bool, info: str = "local") -> dict:
    """The overrides of `reference` for one cell (also benchmarks/perf/test_perf.py's)."""
    ov = {"cluster.nodes": nodes, "services.0.replicas": tasks, "balancer.mode": "per_node",
          "balancer.info": info, "balancer.rr_start": "random", "network.hop": 0.0005, "run.warmup": 0.0}
    if faults:
        ov["faults.random"] = [{"target": "task", "mtbf": 2000.0}]
    return ov


CHILD = r"""
import json, resource, sys
import lbbench
ov, strategy, n = json.loads(sys.argv[1])
lbbench.simulate("reference", strategy, overrides={**ov, "run.requests": 2000}, progress=False, prefetch=False)
r = lbbench.simulate("reference", strategy, overrides={**ov, "run.requests": n}, progress=False, prefetch=False)
row = r.row()
print(json.dumps({"ns": row["wall_s"] / n * 1e9, "mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "completed": row["completed"]}))
"""


def cell(nodes: int, tasks: int, strategy: str, faults: bool, n: int, timeout: float, info: str = "local") -> dict:
    try:
        out = subprocess.run([sys.executable, "-c", CHILD,
                              json.dumps([overrides(nodes, tasks, faults, info), strategy, n])],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:g} s"}
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--sizes", default=",".join(f"{a}/{b}" for a, b in SIZES),
                    help="nodes/tasks pairs, comma-separated")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--info", default="local", help='balancer.info of every cell ("local", "global", "stale:1", ...)')
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("--cell-timeout", type=float, default=900.0, help="seconds one cell may take (then: over N s)")
    args = ap.parse_args()
    sizes = [tuple(int(x) for x in s.split("/")) for s in args.sizes.split(",")]
    strategies = args.strategies.split(",")
    cols = [(s, f) for s in strategies for f in (False, True)]
    head = "| nodes / tasks | " + " | ".join(f"{s}{' + faults' if f else ''}" for s, f in cols) + " |"
    lines = [f"ns per request / peak MB; {args.requests:,} requests, one thread, `reference` with per_node "
             f"balancers, {args.info} information, hop 0.5 ms, random round-robin starts", "", head, "|---|" + "---:|" * len(cols)]
    print("\n".join(lines), flush=True)
    for nodes, tasks in sizes:
        cells = []
        for s, f in cols:
            c = cell(nodes, tasks, s, f, args.requests, args.cell_timeout, args.info)
            cells.append(f"error: {c['error']}" if "error" in c else f"{c['ns']:,.0f} / {c['mb']:,.0f}")
        lines.append(f"| {nodes:,} / {tasks:,} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
