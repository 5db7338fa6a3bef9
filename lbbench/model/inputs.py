"""What a run draws before its first arrival, in one place: its length, warm-up, horizon,
balancer random states, hash keys, fault schedule and the nodes' background load.

`lbbench.engine.run._Run` and the reference simulator (tests/naive.py) both take these from
`run_inputs`, so that they cannot derive them differently (docs/model.md, "Measurement",
"Failures and recovery", "Random streams"). The arrivals themselves come from
`lbbench.model.workload.Workload`, the cluster from `lbbench.model.cluster.build_cluster`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import rng as rngmod
from .background import BackgroundSchedule, build_background
from .cluster import ClusterState
from .deploy import Autoscale, DeploySchedule, build_autoscale, build_deploy
from .faults import Schedule, build_schedule
from .limits import check_run
from .scenario import Scenario
from .workload import Workload


@dataclass
class RunInputs:
    """A run's set-up, drawn from its scenario, cluster, workload and seed."""

    n_req: int | None        # requests simulated; None for a run bounded by run.duration
    warm_index: int          # first measured request; -1 when found by time (warm_time)
    warm_time: float | None  # a duration-bounded run measures the arrivals from this time on
    horizon: float           # random fault times and the time series end here (limits.check_run)
    n_bal: int               # balancers: one per node (per_node) or one (central)
    bal_rng: np.ndarray      # uint64[n_bal, 1]: each balancer's random state (STRATEGY stream)
    bal_start: np.ndarray    # int64[n_bal]: each balancer's start offset (balancer.rr_start)
    entry_key: int           # hash key of the entry policy's re-routing (FAULTS stream)
    retry_key: int           # hash key of the clients' retry backoffs (FAULTS stream)
    schedule: Schedule       # scripted and random faults, sorted by time
    conn_rng: np.ndarray     # uint64[1]: the keep-alive connections' random state (CONNECTION stream)
    conn_logq: float         # log(1 - 1/keepalive): a connection's length is 1 + floor(log(u) / conn_logq)
    background: BackgroundSchedule   # the nodes' background load over time (cluster.background)
    deploy: DeploySchedule   # the deployments (scale, update), sorted by time
    autoscale: Autoscale     # the autoscalers


def run_requests(sc: Scenario, wl: Workload) -> int | None:
    """The requests of a run bounded by count: run.requests, and a trace bounds the run (all of
    it unless run.requests asks for fewer); None for a run bounded by run.duration."""
    if sc.run.duration is not None:
        return None
    if wl.trace is not None:
        return len(wl.trace) if sc.run.requests is None else min(sc.run.requests, len(wl.trace))
    return sc.n_requests


def run_inputs(sc: Scenario, cl: ClusterState, wl: Workload, seed: int) -> RunInputs:
    """The set-up of one run (refused by `limits.check_run` if the engine cannot simulate it)."""
    n_req = run_requests(sc, wl)
    n_bal = 1 if sc.balancer.mode == "central" else cl.n_nodes
    strat_rng = rngmod.stream(seed, rngmod.STRATEGY)
    bal_rng = rngmod.seed_states(strat_rng, n_bal)
    if sc.balancer.rr_start == "random":
        bal_start = strat_rng.integers(0, 2**31, size=n_bal, dtype=np.int64)
    else:
        bal_start = np.zeros(n_bal, dtype=np.int64)
    horizon = check_run(sc, cl, wl, n_req)
    entry_key, retry_key = (int(x) for x in rngmod.stream(seed, rngmod.FAULTS, 1 << 20).integers(0, 2**62, size=2))
    keep = sc.balancer.keepalive
    return RunInputs(
        n_req=n_req,
        warm_index=int(math.floor(sc.run.warmup * n_req)) if n_req is not None else -1,
        warm_time=sc.run.warmup * sc.run.duration if n_req is None else None,
        horizon=horizon, n_bal=n_bal, bal_rng=bal_rng, bal_start=bal_start,
        entry_key=entry_key, retry_key=retry_key,
        schedule=build_schedule(sc, cl.n_tasks, horizon, seed),
        conn_rng=rngmod.seed_states(rngmod.stream(seed, rngmod.CONNECTION), 1)[0],
        conn_logq=math.log1p(-1.0 / keep) if keep > 1 else 0.0,
        background=build_background(sc, horizon, seed),
        deploy=build_deploy(sc),
        autoscale=build_autoscale(sc),
    )
