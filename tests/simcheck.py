"""Helpers shared by the engine-correctness tests (test_reference_sim, test_engine_props)."""
from __future__ import annotations

import copy
import math

import numpy as np

from lbbench.engine.run import TIMING_COLUMNS

STRATEGIES = ["round_robin", "least_load", "random"]
# The engine's paths of faults, deployments and closed loops do not depend on the strategy, and
# every strategy with them is one more kernel to compile (about 10 s on an empty cache): the
# tests of those paths run these two (a direct-path and a load-reading strategy); random's own
# code is checked against the reference simulator in test_reference_sim.
ORCHESTRATED = ["round_robin", "least_load"]
WALL_COLUMNS = set(TIMING_COLUMNS)   # wall_s, req_per_s: the only columns allowed to vary


def scenario(**kw) -> dict:
    """A small scenario dict; keyword arguments override the defaults below."""
    d = dict(nodes=3, speeds=None, replicas=4, workers=1, queue_limit=0, dist="exponential", mean=1.0,
             rho=0.8, entry="uniform", hop=0.0, jitter=0.0, mode="per_node", info="global",
             rr_start="random", requests=1500, duration=None, warmup=0.1, seed=11, drain=True, services=None)
    unknown = set(kw) - set(d)
    assert not unknown, f"unknown scenario keys {unknown}"
    d.update(kw)
    services = d["services"] or [{"name": "web", "port": 80, "replicas": d["replicas"], "workers": d["workers"],
                                  "queue_limit": d["queue_limit"], "demand": {"dist": d["dist"], "mean": d["mean"]}}]
    run = {"warmup": d["warmup"], "seed": d["seed"], "drain": d["drain"]}
    if d["duration"] is not None:
        run["duration"] = d["duration"]
    else:
        run["requests"] = d["requests"]
    return {
        "name": "test",
        "cluster": {"nodes": d["nodes"], **({"speeds": d["speeds"]} if d["speeds"] is not None else {})},
        "services": copy.deepcopy(services),
        "workload": {"rho": d["rho"], "entry": d["entry"]},
        "network": {"hop": d["hop"], "jitter": d["jitter"]},
        "balancer": {"mode": d["mode"], "info": d["info"], "rr_start": d["rr_start"]},
        "run": run,
    }


def rows_equal(a: dict, b: dict, ignore=WALL_COLUMNS) -> list[str]:
    """Names of the summary columns that differ (NaN equals NaN), wall-clock columns ignored."""
    assert a.keys() == b.keys()
    bad = []
    for k in a:
        if k in ignore:
            continue
        x, y = a[k], b[k]
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y:
            bad.append(f"{k}: {x!r} != {y!r}")
    return bad


def assert_trace_matches(trace, ref, rtol=1e-9):
    """The engine's per-request trace equals the naive simulator's records."""
    n = len(ref.task)
    assert trace.height == n
    assert np.array_equal(trace["request"].to_numpy(), np.arange(n))
    for col in ("task", "status"):
        got = trace[col].to_numpy().astype(np.int64)
        want = getattr(ref, col)
        bad = np.flatnonzero(got != want)
        assert len(bad) == 0, f"{col} differs at {len(bad)} requests, first {bad[0]}: engine {got[bad[0]]}, naive {want[bad[0]]}"
    for col in ("start", "done", "latency"):
        got = trace[col].to_numpy()
        want = getattr(ref, col)
        assert np.array_equal(np.isnan(got), np.isnan(want)), f"{col}: NaN pattern differs"
        ok = np.isnan(want) | (np.abs(got - want) <= rtol * np.maximum(np.abs(want), 1.0))
        bad = np.flatnonzero(~ok)
        assert len(bad) == 0, f"{col} differs at {len(bad)} requests, first {bad[0]}: engine {got[bad[0]]!r}, naive {want[bad[0]]!r}"


def assert_counters_match(row: dict, ref, rtol=1e-9):
    """The engine's summary counters equal the naive simulator's."""
    for k in ("requests", "arrived", "completed", "rejected", "failed", "in_flight"):
        assert row[k] == getattr(ref, k), f"{k}: engine {row[k]}, naive {getattr(ref, k)}"
    if ref.completed:
        assert math.isclose(row["latency_mean"], ref.latency_sum / ref.completed, rel_tol=rtol)
        assert math.isclose(row["latency_max"], ref.latency_max, rel_tol=rtol)
    else:
        assert math.isnan(row["latency_mean"])
    if ref.arrived:
        assert row["cross_node_frac"] == ref.cross / ref.arrived


def engine_path(sc, strategy: str, force_heap: bool = False) -> str:
    """Which kernel path `simulate` takes for this run: "direct" or "heap"."""
    from lbbench.model.scenario import load_scenario
    from lbbench.engine.run import _Run
    from lbbench.strategy import resolve

    s = load_scenario(sc)
    run = _Run(s, resolve(strategy), {}, s.run.seed, False, force_heap)
    return "direct" if run.direct_ok(force_heap) else "heap"


def arrivals(sc, seed=None, need_client=False):
    """The run's arrivals (one chunk of run.requests), as the engine sees them, and the cluster."""
    from lbbench.model.cluster import build_cluster
    from lbbench.model.scenario import load_scenario
    from lbbench.model.workload import Workload

    s = load_scenario(sc)
    cl = build_cluster(s)
    seed = s.run.seed if seed is None else seed
    return Workload(s, cl, seed, need_client=need_client).chunk(s.n_requests), cl
