"""A slow, deliberately simple reference simulator of docs/model.md.

This file is documentation of the model as much as a test oracle: it is a textbook
discrete-event simulation with one `heapq` of events, no chunks, no slot pools, no fast paths.
`lbbench.simulate.simulate` must agree with it request by request.

Inputs are shared with the engine, not re-derived: the arrivals come from
`lbbench.workload.Workload` (same scenario, cluster and seed), the cluster from
`lbbench.cluster.build_cluster`, the per-balancer random states and start offsets are drawn
exactly as `lbbench.simulate._Run.__init__` draws them, and the strategy's decision is its own
`select` function run as plain Python (`spec.select.py_func`).

Events are ordered totally by (time, kind, sequence) with

    COMPLETION < TASK_ARRIVAL < CONTROL < NEW_ARRIVAL

at equal times (a worker freed at t serves a request reaching its task at t; a snapshot taken
at t sees both; a request arriving at t is decided after all of that), and `sequence` the order
in which the events were scheduled.
"""
from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from lbbench import rng as rngmod
from lbbench.cluster import build_cluster
from lbbench.engine import View
from lbbench.errors import StrategyError
from lbbench.scenario import load_scenario
from lbbench.strategy import resolve
from lbbench.workload import Chunk, Workload

# Event kinds, in their order at equal times.
COMPLETION, TASK_ARRIVAL, CONTROL, NEW_ARRIVAL = 0, 1, 2, 3

# Per-request status codes (the same as the engine's trace).
NEVER, COMPLETED, REJECTED, FAILED, IN_FLIGHT = -1, 0, 1, 2, 3


@dataclass
class NaiveResult:
    """Per-request records (arrays indexed by request number) and the measured counters."""

    task: np.ndarray          # chosen task, -1 if none
    start: np.ndarray         # service start (NaN if never started)
    done: np.ndarray          # completion time; for a rejection, the time it reached the task
    latency: np.ndarray       # done + return hop - arrival (NaN unless completed)
    status: np.ndarray        # COMPLETED / REJECTED / FAILED / IN_FLIGHT
    t: np.ndarray             # arrival time at the entry node
    demand: np.ndarray        # demand at speed 1.0
    warm_index: int           # first measured request
    requests: int = 0         # requests simulated (measured or not)
    arrived: int = 0          # the counters below count measured requests only
    completed: int = 0
    rejected: int = 0
    failed: int = 0
    cross: int = 0            # measured requests that crossed the overlay
    latency_sum: float = 0.0
    latency_max: float = 0.0
    task_served: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    task_busy: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def in_flight(self) -> int:
        return self.arrived - self.completed - self.rejected - self.failed


@dataclass
class _Request:
    index: int
    t0: float         # arrival at the entry node
    service: int
    demand: float
    entry: int
    balancer: int
    task: int = -1
    d_out: float = 0.0


def _n_requests(sc, wl: Workload):
    """run.requests; for a trace workload, the whole trace unless run.requests asks for fewer;
    None for a duration-bounded run."""
    if sc.run.duration is not None:
        return None
    if wl.trace is not None:
        return len(wl.trace) if sc.run.requests is None else min(sc.run.requests, len(wl.trace))
    return sc.n_requests


def _arrivals(sc, wl: Workload):
    """All arrivals of the run as one `Chunk`: the run's requests, or those before
    `run.duration` (generated in pieces; the k-th arrival does not depend on the pieces)."""
    n = _n_requests(sc, wl)
    if n is not None:
        return wl.chunk(n)
    pieces = []
    while True:
        c = wl.chunk(1000)
        pieces.append(c)
        if len(c.t) == 0 or c.t[-1] >= sc.run.duration:     # end of a trace, or of the run
            break

    def cat(name):
        return np.concatenate([getattr(c, name) for c in pieces])
    t = cat("t")
    n = int(np.searchsorted(t, sc.run.duration, side="left"))
    return Chunk(0, t[:n], cat("service")[:n], cat("demand")[:n], cat("entry")[:n],
                 cat("client")[:n], cat("jitter")[:2 * n])


def simulate_naive(scenario, strategy="round_robin", seed=None, params=None, overrides=None) -> NaiveResult:
    """Simulate `scenario` under `strategy` with the model of docs/model.md."""
    sc = load_scenario(scenario, overrides)
    spec = resolve(strategy)
    pvals = spec.resolve_params(params)
    seed = sc.run.seed if seed is None else int(seed)
    if sc.balancer.unit != "request":
        raise NotImplementedError(f"balancer.unit = {sc.balancer.unit} is not part of docs/model.md")
    select = spec.select.py_func
    on_complete = getattr(spec.on_complete, "py_func", spec.on_complete)

    # ---- the cluster and the arrivals, shared with the engine
    cl = build_cluster(sc)
    T, S = cl.n_tasks, cl.n_services
    wl = Workload(sc, cl, seed, need_client=spec.reads_client)
    arr = _arrivals(sc, wl)
    n = len(arr.t)

    # ---- balancers: one per node (per_node) or a single one (central)
    central = sc.balancer.mode == "central"
    n_bal = 1 if central else cl.n_nodes
    strat_rng = rngmod.stream(seed, rngmod.STRATEGY)          # as in simulate._Run.__init__
    bal_rng = rngmod.seed_states(strat_rng, n_bal)              # uint64[n_bal, 1]
    if sc.balancer.rr_start == "random":
        bal_start = strat_rng.integers(0, 2**31, size=n_bal, dtype=np.int64)
    else:
        bal_start = np.zeros(n_bal, dtype=np.int64)
    bal_state = np.zeros((n_bal * S, max(spec.state_size, 1)))  # per (balancer, service)
    param_values = np.array([pvals[p.name] for p in spec.params], dtype=np.float64)

    # ---- information and task state
    info = sc.balancer.info_kind
    period = sc.balancer.stale_period
    outstanding = np.zeros(T, dtype=np.int64)           # decided, not yet completed/rejected
    local_out = np.zeros((n_bal, T), dtype=np.int64)    # the same, per sending balancer
    snapshot = np.zeros(T, dtype=np.int64)              # stale copy of `outstanding`
    present = np.zeros(T, dtype=np.int64)               # arrived at the task, not completed
    workers_free = [[0.0] * int(w) for w in cl.task_workers]   # when each worker is next free

    def loads(b):
        if info == "global":
            return outstanding
        if info == "local":
            return local_out[b]
        return snapshot

    # ---- measurement
    if sc.run.duration is None:
        warm_index = int(math.floor(sc.run.warmup * n))
    else:
        warm_index = int(np.searchsorted(arr.t, sc.run.warmup * sc.run.duration, side="left"))
    res = NaiveResult(
        task=np.full(n, -1, dtype=np.int64), start=np.full(n, np.nan), done=np.full(n, np.nan),
        latency=np.full(n, np.nan), status=np.full(n, NEVER, dtype=np.int64),
        t=arr.t.copy(), demand=arr.demand.copy(), warm_index=warm_index, requests=n,
        task_served=np.zeros(T, dtype=np.int64), task_busy=np.zeros(T),
    )

    # ---- the event list
    events: list = []
    seq = itertools.count()

    def schedule(time, kind, payload):
        heapq.heappush(events, (time, kind, next(seq), payload))

    for i in range(n):
        schedule(float(arr.t[i]), NEW_ARRIVAL, i)
    t_last = float(arr.t[-1]) if n else 0.0
    if math.isfinite(period) and period <= t_last:
        schedule(period, CONTROL, 1)          # refreshes at P, 2P, 3P, ... (payload: k)

    def new_arrival(now, i):
        s, e = int(arr.service[i]), int(arr.entry[i])
        b = 0 if central else e
        measured = i >= warm_index
        res.arrived += measured
        cands = cl.table[cl.table_start[s]:cl.table_start[s] + cl.table_len[s]]
        if len(cands) == 0:                   # no task in the table: fails at once
            res.status[i] = FAILED
            res.failed += measured
            return
        client = int(arr.client[i]) if len(arr.client) else -1
        view = View(loads(b), cl.task_node, cl.task_speed, e, now, int(bal_start[b]), param_values, client, s)
        k = int(select(cands, view, bal_state[b * S + s], bal_rng[b]))
        if k not in cands.tolist():
            raise StrategyError(f"strategy {spec.name!r} returned task {k} for request {i}, which is not one of its candidates")
        outstanding[k] += 1
        local_out[b, k] += 1
        req = _Request(i, now, s, float(arr.demand[i]), e, b, task=k)
        d_in = 0.0
        if cl.task_node[k] != e:              # crosses the overlay: hop + jitter, both ways
            d_in = req.d_out = sc.network.hop
            if sc.network.jitter > 0:
                d_in += arr.jitter[2 * i]
                req.d_out += arr.jitter[2 * i + 1]
            res.cross += measured
        res.task[i] = k
        res.status[i] = IN_FLIGHT
        # With d_in = 0 this event is the very next one (everything of kind < NEW_ARRIVAL at
        # `now` is already done), i.e. the request reaches its task at once.
        schedule(now + d_in, TASK_ARRIVAL, req)

    def task_arrival(now, req):
        k, i = req.task, req.index
        q = int(cl.task_qlimit[k])
        if q > 0 and present[k] >= cl.task_workers[k] + q:     # full: rejected at the task
            outstanding[k] -= 1
            local_out[req.balancer, k] -= 1
            res.status[i] = REJECTED
            res.done[i] = now
            res.rejected += i >= warm_index
            return
        present[k] += 1
        free = workers_free[k]
        w = min(range(len(free)), key=lambda j: (free[j], j))  # earliest free, lowest index
        start = max(now, free[w])
        done = start + req.demand / cl.task_speed[k]
        free[w] = done
        res.start[i], res.done[i] = start, done
        schedule(done, COMPLETION, req)

    def completion(now, req):
        k, i, b = req.task, req.index, req.balancer
        present[k] -= 1
        outstanding[k] -= 1
        local_out[b, k] -= 1
        latency = now + req.d_out - req.t0
        res.status[i] = COMPLETED
        res.latency[i] = latency
        if i >= warm_index:
            res.completed += 1
            res.latency_sum += latency
            res.latency_max = max(res.latency_max, latency)
            res.task_served[k] += 1
            res.task_busy[k] += req.demand / cl.task_speed[k]
        if on_complete is not None:
            s = int(cl.task_service[k])
            view = View(loads(b), cl.task_node, cl.task_speed, -1, now, int(bal_start[b]), param_values, -1, s)
            on_complete(bal_state[b * S + s], k, latency, now, view)

    def control(now, k):
        snapshot[:] = outstanding
        if (k + 1) * period <= t_last:       # later refreshes inform no decision
            schedule((k + 1) * period, CONTROL, k + 1)

    # ---- run: everything (drain), or up to the end of the run
    if sc.run.drain:
        end = math.inf
    else:
        end = sc.run.duration if sc.run.duration is not None else t_last
    handlers = {COMPLETION: completion, TASK_ARRIVAL: task_arrival, CONTROL: control, NEW_ARRIVAL: new_arrival}
    while events and events[0][0] <= end:
        time, kind, _, payload = heapq.heappop(events)
        handlers[kind](time, payload)
    return res
