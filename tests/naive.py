"""A slow, deliberately simple reference simulator of docs/model.md.

This file is documentation of the model as much as a test oracle: it is a textbook
discrete-event simulation with one `heapq` of events, no chunks, no slot pools, no fast paths.
`lbbench.engine.run.simulate` must agree with it request by request. It imports nothing from
`lbbench.engine`: what it shares with the engine are the model's inputs, on purpose --

- the scenario (`lbbench.model.scenario.load_scenario`) and the cluster it builds
  (`lbbench.model.cluster.build_cluster`);
- the arrivals (`lbbench.model.workload.Workload`, same scenario, cluster and seed);
- the run's set-up (`lbbench.model.inputs.run_inputs`: its length, warm-up, horizon, the
  per-balancer random states and start offsets, the hash keys of re-routing and retries, the
  fault schedule, the connections' random state);
- the strategy (`lbbench.plugins.strategy.resolve`), whose decision is its own `select`
  function run as plain Python (`spec.select.py_func`) on the `View` below.

Events are ordered totally by (time, kind, sub, key, sequence) with

    COMPLETION < TASK_ARRIVAL < CONTROL < RETRY < NEW_ARRIVAL

at equal times (a worker freed at t serves a request reaching its task at t; a snapshot taken
at t sees both; a request arriving at t is decided after all of that), and `sequence` the order
in which the events were scheduled. Control events at equal times: the stale refresh (sub 0),
then the fault schedule in its order (sub 1, key = index), then node detections (sub 2, key =
node), then the orchestrator's task events (sub 3, key = task slot), then the nodes' background
load changes (sub 4, key = their order), then the deployments (sub 5, key = index), then the
services' update batches (sub 6, key = service), then the autoscalers (sub 7, key = autoscaler),
then a closed loop's users' sends (sub 8, key = user; sessions mode: key = the session's user
slot), then sessions mode's next session arrival (sub 9). A task slot or a node has
at most one pending event: a newer one supersedes it (lazy deletion by version).

The simulation (`_Sim`) is grouped by concern, in the order of a request's life: the event
list; information (what loads a balancer sees, `load_of`); arrivals and keep-alive
connections; dispatch (entry node, table, decision); the task queues (FIFO in front of the
workers) and completions; client retries; failures and the orchestrator (crash, detect, place,
join, drain).
"""
from __future__ import annotations

import heapq
import itertools
import math
from collections import namedtuple
from dataclasses import dataclass, field

import numpy as np

from lbbench import rng as rngmod
from lbbench.errors import StrategyError
from lbbench.model.cluster import build_cluster
from lbbench.model.faults import F_NODE_DOWN, F_NODE_SLOW, F_NODE_UP, F_SERVICE_CRASH, F_TASK_CRASH
from lbbench.model.inputs import run_inputs
from lbbench.model.scenario import load_scenario
from lbbench.model.workload import Chunk, Workload, demand_table
from lbbench.plugins.strategy import resolve

# What a strategy's `select(candidates, view, state, rng)` and `on_complete(state, task,
# latency, now, view)` see: the strategy contract (docs/strategies.md). The engine builds its
# own `lbbench.engine.View` with the same fields in the same order (a test checks it).
View = namedtuple("View", ["load", "task_node", "task_speed", "entry", "now", "start", "params", "client", "service",
                           "task_state", "load_index", "node_load", "node_cores", "weight", "demand", "work",
                           "demand_dist", "index_map", "position"], defaults=(np.zeros(0, np.int64),))
View.__doc__ = """Read-only context of one decision.

load        int64[T]  outstanding requests per task as the information model reports them
task_node   int[T]    node of each task
task_speed  float64[T] speed of each task's node (service rate multiplier)
entry       int       the entry node of the request (-1 in on_complete)
now         float     simulated time, seconds
start       int       this balancer's start offset (balancer.rr_start: 0, or a random integer)
params      the strategy's declared parameters: a named tuple of floats (`params.d` or
            `params[0]`), an empty float64 array without parameters (`Strategy.param_tuple`)
client      int       client id of the request (-1 when no client is drawn, and in on_complete)
service     int       service index of the request
task_state  float64[T, K] this balancer's per-task memory (`Strategy(task_state=K)`)
load_index  the engine's load index; empty here, so `kit.least_load_indexed` scans the loads:
            the engine's answers from its index are checked against the scan's
node_load   float64[N] requests in service plus background per core, per node, as the
            information model reports them (cluster.cores; empty without it): `node_load_of`
node_cores  float64[N] each node's cores (empty without cluster.cores)
weight      float64[T] slow start: max(min_weight, (age / window) ** (1 / aggression)) for a task
            that joined less than `window` ago, else 1; empty without balancer.slow_start
demand      float     the request's demand, seconds at speed 1.0 (-1.0 in on_complete)
work        float64[T] under balancer.info = "work", each task's unfinished work at the
            decision, seconds of demand at speed 1.0 (`work_left`); empty otherwise
demand_dist float64[S, 4] each service's demand distribution (lbbench.model.workload.demand_table)
index_map   the load index's leaves and candidates; empty here, as load_index
position    int64[T]  each task's position in its service's table, -1 out of the tables
"""
NO_INDEX = np.zeros(0, dtype=np.int32)

# Event kinds, in their order at equal times.
COMPLETION, TASK_ARRIVAL, CONTROL, RETRY, NEW_ARRIVAL = 0, 1, 2, 3, 4
# Control events' sub-order at equal times.
SUB_REFRESH, SUB_FAULT, SUB_NODE, SUB_TASK, SUB_BACKGROUND, SUB_DEPLOY, SUB_BATCH, SUB_AUTOSCALE, SUB_USER, SUB_SESSION = range(10)
# Task slot states
DEAD, ALIVE, STARTING = 0, 1, 2

# Per-request status codes (the same as the engine's trace).
NEVER, COMPLETED, REJECTED, FAILED, IN_FLIGHT = -1, 0, 1, 2, 3


def spread(counts_service: np.ndarray, counts_total: np.ndarray, eligible: np.ndarray) -> int:
    """Swarm's spread rule as written: the eligible node with the fewest tasks of this service,
    then the fewest tasks overall, then the lowest id; -1 when no node is eligible."""
    best = -1
    for n in np.flatnonzero(eligible):
        if best < 0 or (counts_service[n], counts_total[n]) < (counts_service[best], counts_total[best]):
            best = int(n)
    return best


def window_p99(lats) -> float:
    """latency_p99 (docs/model.md, "Autoscaler"): the latencies binned on the time series'
    histogram edges (8 per power of two), the midpoint of the first bin whose running count
    reaches 0.99 x their number; NaN for none."""
    if not lats:
        return math.nan
    # lower edges (0.5 + m / 16) 2^e, m = 0..7, e = -40..39, and the top 2^40: as lbbench's
    # time-series histogram (docs/model.md, "Autoscaler")
    edges = np.append((np.array([0.5 + m / 16 for m in range(8)])[None, :]
                       * np.exp2(np.arange(-40, 40, dtype=np.float64))[:, None]).ravel(), 2.0 ** 40)
    b = np.clip(np.searchsorted(edges, np.asarray(lats), side="right") - 1, 0, len(edges) - 2)
    cum = np.cumsum(np.bincount(b, minlength=len(edges) - 1))
    j = int(np.searchsorted(cum, 0.99 * len(lats), side="left"))
    return float(0.5 * (edges[j] + edges[j + 1]))


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
    retried: int = 0          # attempts re-sent by clients (measured requests)
    timed_out: int = 0        # completed slower than clients.timeout
    crashes: int = 0          # tasks that died (any request)
    cross: int = 0            # measured requests that crossed the overlay
    latency_sum: float = 0.0
    latency_max: float = 0.0
    task_served: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    task_busy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tries: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))     # retries per request
    task_node: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # node at the end
    restarts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    placements: list = field(default_factory=list)   # (time, task, node, counts_service, counts_total, eligible)
    routed: list = field(default_factory=list)       # (time, task) of every request sent to a task
    removed: list = field(default_factory=list)      # (time, task) of every table removal
    followed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # followed its open connection
    orphaned: int = 0         # requests whose open connection's task had left the table (balanced anew)
    user: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # closed loop: who sent it (sessions: which session)
    sessions: int = 0         # sessions mode: sessions whose first request is measured
    live: list = field(default_factory=list)         # per service, the tasks running (in the tables) at the end
    scales: list = field(default_factory=list)       # (time, service, replicas) of every scale (deploy, autoscaler)
    node_cpu: np.ndarray = field(default_factory=lambda: np.zeros(0))  # cores: core-seconds of measured completions
    contention_sum: float = 0.0  # cores: their time in service beyond the core-seconds they held
    deploy_from: dict = field(default_factory=dict)  # deploy event -> replicas (scale) or version (update) before it
    update_done: dict = field(default_factory=dict)  # update event -> its last batch's last join (when over)
    # every orchestrator action of a run with deployments or autoscalers, in order (docs/model.md,
    # "Deployments", its outputs): (time, kind, service, task, node, before, after, detail, value)
    log: list = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return self.arrived - self.completed - self.rejected - self.failed


@dataclass
class _Request:
    index: int
    t0: float         # arrival at the entry node
    service: int
    demand: float
    entry: int               # entry node drawn for it (the client's), or its connection's
    client: int = -1
    balancer: int = 0
    task: int = -1
    d_out: float = 0.0
    inc: int = 0             # incarnation of the task it was sent to
    tries: int = 0           # retries so far
    svc: float = 0.0         # demand / speed of its task's node when it was sent


@dataclass
class _Attempt:
    """A request queued or in service at a task; `alive` turns False when the task crashes."""
    req: _Request
    alive: bool = True


def _arrivals(sc, wl: Workload, n_req):
    """All arrivals of the run as one `Chunk`: the run's `n_req` requests, or (None) those
    before `run.duration` (generated in pieces; the k-th arrival does not depend on the pieces)."""
    if n_req is not None:
        return wl.chunk(n_req)
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


# ---- time-varying arrivals (docs/model.md, "Time-varying arrivals"), by plain bisection on the
# integral of the rate, written out piece by piece in absolute time.

def _varying(sc) -> bool:
    w = sc.workload
    return any(getattr(w, k) is not None for k in ("profile", "profile_csv", "diurnal", "bursts"))


def _profile_points(sc, base):
    """The profile's (at, scale) points: workload.profile, or the CSV's rates over the base rate."""
    w = sc.workload
    if w.profile is not None:
        return [(p.at, p.scale) for p in w.profile]
    if w.profile_csv is not None:
        import polars as pl
        df = pl.read_csv(w.profile_csv)
        return [(float(t), float(r) / base) for t, r in zip(df["time"], df["rate"])]
    return [(0.0, 1.0)]


class _Rate:
    """m(t) = profile(t) * diurnal(t) * bursts(t) and its integral M(t), for one run."""

    def __init__(self, sc, seed, base):
        w = sc.workload
        self.points = _profile_points(sc, base)
        self.linear = w.profile_shape == "linear"
        d = w.diurnal
        self.A, self.w, self.ph = (d.amplitude, 2 * math.pi / d.period, d.phase) if d is not None else (0.0, 1.0, 0.0)
        self.bursts = w.bursts
        self.switch = []            # burst switch times, and the factor from each on
        if self.bursts is not None:
            self.rng = rngmod.stream(seed, rngmod.BURSTS)
            self.on = self.rng.random() < self.bursts.on / (self.bursts.on + self.bursts.off)
            self.end = 0.0

    def _more_bursts(self, until):
        """Burst periods drawn one at a time until `until`."""
        while self.end <= until:
            length = self.rng.standard_exponential() * (self.bursts.on if self.on else self.bursts.off)
            self.switch.append((self.end, self.bursts.scale if self.on else 1.0))
            self.end += length
            self.on = not self.on

    def profile_piece(self, t):
        """(alpha, beta) with profile(t') = alpha + beta t' on the piece holding t, and its end."""
        pts = self.points
        if t < pts[0][0]:
            return pts[0][1], 0.0, pts[0][0]
        j = max(i for i, (at, _) in enumerate(pts) if at <= t)
        if j == len(pts) - 1:
            return pts[j][1], 0.0, math.inf
        (x0, y0), (x1, y1) = pts[j], pts[j + 1]
        if not self.linear:
            return y0, 0.0, x1
        beta = (y1 - y0) / (x1 - x0)
        return y0 - beta * x0, beta, x1

    def burst(self, t):
        """(factor, end of its period) at t."""
        if self.bursts is None:
            return 1.0, math.inf
        self._more_bursts(t)
        j = max(i for i, (at, _) in enumerate(self.switch) if at <= t)
        end = self.switch[j + 1][0] if j + 1 < len(self.switch) else self.end
        return self.switch[j][1], end

    def antiderivative(self, t, alpha, beta):
        th = self.w * (t - self.ph)
        return (alpha * t + beta * t * t / 2
                + self.A * (-(alpha + beta * t) * math.cos(th) / self.w + beta * math.sin(th) / self.w ** 2))

    def pieces(self):
        """(start, end, factor, alpha, beta) over time, in order, for ever."""
        t = 0.0
        while True:
            alpha, beta, e1 = self.profile_piece(t)
            if e1 == math.inf and alpha == 0.0:     # silent for ever, whatever the bursts do
                yield t, math.inf, 0.0, 0.0, 0.0
                return
            c, e2 = self.burst(t)
            end = min(e1, e2)
            yield t, end, c, alpha, beta
            if end == math.inf:
                return
            t = end


def _retime(rate, taus):
    """t_k with M(t_k) = tau_k, by bisection (inf where M never gets there)."""
    out, mass, it = [], 0.0, rate.pieces()
    start, end, c, alpha, beta = next(it)
    for tau in taus:
        while True:
            if end == math.inf:
                seg = math.inf if c * alpha > 0 else 0.0
            else:
                seg = c * (rate.antiderivative(end, alpha, beta) - rate.antiderivative(start, alpha, beta))
            if mass + seg > tau:
                break
            if end == math.inf:
                break
            mass += seg
            start, end, c, alpha, beta = next(it)
        if mass + seg <= tau:
            out.append(math.inf)
            continue
        lo, hi = start, end if end < math.inf else max(2 * start, 1.0)
        while end == math.inf and mass + c * (rate.antiderivative(hi, alpha, beta) - rate.antiderivative(start, alpha, beta)) < tau:
            hi *= 2
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid <= lo or mid >= hi:
                break
            if mass + c * (rate.antiderivative(mid, alpha, beta) - rate.antiderivative(start, alpha, beta)) < tau:
                lo = mid
            else:
                hi = mid
        out.append(0.5 * (lo + hi))
    return np.array(out)


def _varying_arrivals(sc, cl, wl, seed, n_req):
    """The arrivals of a time-varying rate: the Poisson arrivals at the base rate (the same
    workload without its profile, diurnal and bursts; a CSV profile's base rate as
    workload.rate), their times mapped through the inverse of M."""
    plain = {"profile": None, "profile_csv": None, "diurnal": None, "bursts": None}
    if sc.workload.profile_csv is not None:
        plain.update(rate=wl.rate, rho=None)
    base_sc = sc.model_copy(update={"workload": sc.workload.model_copy(update=plain)})
    base_wl = Workload(base_sc, cl, seed, need_client=wl.need_client)
    if n_req is not None:
        c = base_wl.chunk(n_req)
    else:       # enough base arrivals to pass run.duration
        pieces = []
        while True:
            p = base_wl.chunk(1000)
            pieces.append(p)
            last = _retime(_Rate(sc, seed, wl.rate), [p.t[-1]])[0]
            if last >= sc.run.duration:
                break
        c = Chunk(0, *(np.concatenate([getattr(p, f) for p in pieces]) for f in ("t", "service", "demand", "entry", "client", "jitter")))
    t = _retime(_Rate(sc, seed, wl.rate), c.t)
    n = len(t) if n_req is not None else int(np.searchsorted(t, sc.run.duration, side="left"))
    return Chunk(0, t[:n], c.service[:n], c.demand[:n], c.entry[:n],
                 c.client[:n] if len(c.client) else c.client, c.jitter[:2 * n] if len(c.jitter) else c.jitter)


def simulate_naive(scenario, strategy="round_robin", seed=None, params=None, overrides=None) -> NaiveResult:
    """Simulate `scenario` under `strategy` with the model of docs/model.md."""
    sc = load_scenario(scenario, overrides)
    spec = resolve(strategy)
    seed = sc.run.seed if seed is None else int(seed)
    return _Sim(sc, spec, spec.resolve_params(params), seed).run()


class _Sim:
    """One run of docs/model.md."""

    def __init__(self, sc, spec, pvals: dict, seed: int):
        self.sc, self.spec = sc, spec
        self.select = spec.select.py_func
        self.on_complete = getattr(spec.on_complete, "py_func", spec.on_complete)
        self.params = spec.param_tuple([pvals[p.name] for p in spec.params])

        # ---- the cluster, the arrivals and the run's set-up, shared with the engine
        self.cl = cl = build_cluster(sc)
        self.T, self.S = T, S = cl.n_tasks, cl.n_services
        self.conn = sc.balancer.unit == "connection"
        wl = Workload(sc, cl, seed, need_client=spec.reads_client or self.conn)
        self.inp = inp = run_inputs(sc, cl, wl, seed)
        self.users = wl.users          # a closed loop's users (docs/model.md, "Closed loop"), else None
        self.sessions = wl.sessions    # sessions mode's draws (docs/model.md, "Sessions"), else None
        self.looped = self.users is not None or self.sessions is not None     # requests sent as users send
        if not self.looped:
            self.arr = arr = (_varying_arrivals(sc, cl, wl, seed, inp.n_req) if _varying(sc)
                              else _arrivals(sc, wl, inp.n_req))
        else:                          # filled as the users send
            self.arr = arr = Chunk(0, np.zeros(0), np.zeros(0, dtype=np.int32), np.zeros(0), np.zeros(0, dtype=np.int32),
                                   np.zeros(0, dtype=np.int64), np.zeros(0))
        n = len(arr.t)

        # ---- balancers: one per node (per_node) or a single one (central)
        self.central = sc.balancer.mode == "central"
        self.bal_state = np.zeros((inp.n_bal * S, max(spec.state_size_for(pvals), 1)))  # per (balancer, service)
        self.bal_rng = inp.bal_rng.copy()
        self.bal_task_state = spec.task_state_array(inp.n_bal, T)                # per (balancer, task)

        # ---- information and task state
        self.info, self.period = sc.balancer.info_model       # Info(kind, period)
        self.outstanding = np.zeros(T, dtype=np.int64)          # decided, not yet completed/rejected/failed
        self.local_out = np.zeros((inp.n_bal, T), dtype=np.int64)  # the same, per sending balancer
        self.snapshot = np.zeros(T, dtype=np.int64)             # stale copy of `outstanding`
        self.work = np.zeros(T if self.info == "work" else 0)   # work: unfinished work per task (work_left)
        self.demand_dist = demand_table(sc, wl.demands_from_trace)
        self.reported = np.zeros((inp.n_bal, T), dtype=np.int64)   # piggyback: last count each task reported to b
        self.present = np.zeros(T, dtype=np.int64)              # arrived at the task, not completed
        self.workers_free = [[0.0] * int(w) for w in cl.task_workers]   # when each worker is next free
        self.at_task = [[] for _ in range(T)]                   # _Attempts queued or in service per task

        # ---- keep-alive connections (balancer.unit = connection), per (client, service)
        self.conn_task = {}          # (client, service) -> task of its open connection
        self.conn_entry = {}         # (client, service) -> its entry node
        self.conn_left = {}          # (client, service) -> requests it still carries
        self.conn_rng = inp.conn_rng.copy()

        # ---- failures: task slots, nodes, tables (task ids in placement order per service)
        self.task_node = cl.task_node.astype(np.int64).copy()    # a replacement moves its slot
        self.task_speed = cl.task_speed.copy()
        self.state = [ALIVE if cl.initial[k] else DEAD for k in range(T)]    # a deployment's spare slots: free
        self.inc = [0] * T
        self.restarts = np.zeros(T, dtype=np.int64)
        self.task_ev = [None] * T             # (time, what) of the slot's one pending event
        self.task_ver = [0] * T
        self.node_up = [True] * cl.n_nodes
        self.node_entry = [True] * cl.n_nodes
        self.node_drained = list(cl.node_drained)
        self.node_ver = [0] * cl.n_nodes
        self.tables = [[int(k) for k in cl.table[cl.table_start[s]:cl.table_start[s] + cl.table_len[s]]] for s in range(S)]
        self.faulty = sc.orchestrated
        # ---- deployments (docs/model.md, "Deployments")
        self.stopping = [False] * T           # stopped by the orchestrator, still serving for health.grace
        self.stop_next = ["free"] * T         # after the stop: "free", "replace" (drain) or "update"
        self.version = [0] * T                # the version of each slot's task (an update's index + 1)
        self.upd_old = [-1] * T               # start-first: the old task this new one replaces when it joins
        self.upd_wait = [False] * T           # its join is awaited by its service's update
        self.svc_version = [0] * S
        self.svc_factor = [1.0] * S
        self.svc_want = [0] * S               # new tasks waiting for a free slot
        self.update = [-1] * S                # each service's running update (deploy index)
        self.update_last = {}                    # update event -> when its latest batch's last task joined
        self.batch_waits = [0] * S               # joins its current batch awaits
        self.batch_ver = [0] * S
        self.placed = [0.0] * T               # when each slot's task was placed (health checks' probe grid)
        self.why = [""] * T                   # why the slot's next placement happens (scale, update, crash, drain)
        self.logging = bool(len(inp.deploy) or len(inp.autoscale))
        self.joined = [-math.inf] * T         # when each slot's task joined during the run (slow start)

        # ---- nodes as shared machines (cluster.cores): processor sharing per node
        self.cores = sc.cluster.core_list()                  # None: every worker has a core of its own
        self.node_speed = list(cl.node_speed)
        self.ps_service = [[] for _ in range(cl.n_nodes)]    # per node: [remaining work, _Attempt] in service
        self.ps_last = [0.0] * cl.n_nodes                    # when the remaining work was last brought up to date
        self.ps_next = [math.inf] * cl.n_nodes               # the node's scheduled next completion
        self.ps_ver = [0] * cl.n_nodes
        self.running = [0] * T                               # requests in service per task
        self.waiting = [[] for _ in range(T)]                # FIFO of requests waiting for a worker
        self.background = [0.0] * cl.n_nodes                 # always-busy work per node (cluster.background)
        n_ps = cl.n_nodes if self.cores is not None else 0
        self.node_cores = np.asarray(self.cores if self.cores is not None else [], dtype=np.float64)
        self.node_snapshot = np.zeros(n_ps)                  # stale:P's copy of the nodes' loads
        self.node_reported = np.zeros((inp.n_bal, n_ps))     # local, piggyback: what the node's last response said

        # ---- measurement
        if inp.warm_time is None:
            warm_index = inp.warm_index
        elif self.looped:
            warm_index = math.inf      # the first send at or after warm_time (user_send)
        else:
            warm_index = int(np.searchsorted(arr.t, inp.warm_time, side="left"))
        self.warm_index = warm_index
        self.res = NaiveResult(
            task=np.full(n, -1, dtype=np.int64), start=np.full(n, np.nan), done=np.full(n, np.nan),
            latency=np.full(n, np.nan), status=np.full(n, NEVER, dtype=np.int64),
            t=arr.t.copy(), demand=arr.demand.copy(), warm_index=warm_index, requests=n,
            task_served=np.zeros(T, dtype=np.int64), task_busy=np.zeros(T), tries=np.zeros(n, dtype=np.int64),
            followed=np.zeros(n, dtype=bool), user=np.zeros(n, dtype=np.int64), node_cpu=np.zeros(cl.n_nodes),
        )

        # ---- the event list: every arrival, the first stale refresh, the fault schedule
        self.events: list = []
        self.seq = itertools.count()
        for i in range(n):
            self.schedule(float(arr.t[i]), NEW_ARRIVAL, i)
        self.t_last = float(arr.t[-1]) if n else 0.0
        if self.looped:
            self.start_users()
        if math.isfinite(self.period) and self.period <= self.t_last:
            self.schedule(self.period, CONTROL, ("refresh", 1))         # refreshes at P, 2P, 3P, ...
        for j in range(len(inp.schedule)):
            self.schedule(float(inp.schedule.time[j]), CONTROL, ("fault", j), SUB_FAULT, j)
        for j in range(len(inp.background)):
            self.schedule(float(inp.background.time[j]), CONTROL, ("background", j), SUB_BACKGROUND, j)
        for j in range(len(inp.deploy)):
            self.schedule(float(inp.deploy.time[j]), CONTROL, ("deploy", j), SUB_DEPLOY, j)
        # autoscalers: work and completions per service since the last evaluation, the window's
        # intervals and the desires of the stabilization window, each a ring by evaluation number
        self.as_busy, self.as_done = [0.0] * S, [0] * S
        self.as_lat = [[] for _ in range(S)]       # latency_p99: the latencies completed since then
        self.as_ring = [[] for _ in range(len(inp.autoscale))]
        self.as_recs = [[] for _ in range(len(inp.autoscale))]
        for a in range(len(inp.autoscale)):
            self.schedule(float(inp.autoscale.interval[a]), CONTROL, ("autoscale", a), SUB_AUTOSCALE, a)

    # ================================================================ the event list

    def schedule(self, time, kind, payload, sub=0, key=0):
        heapq.heappush(self.events, (time, kind, sub, key, next(self.seq), payload))

    def run(self) -> NaiveResult:
        """Apply the events in order: all of them (drain), or up to the end of the run."""
        sc = self.sc
        if sc.run.drain:
            end = math.inf
        else:
            end = sc.run.duration if sc.run.duration is not None else self.t_last
        handlers = {COMPLETION: self.completion, TASK_ARRIVAL: self.task_arrival, CONTROL: self.control,
                    RETRY: self.retry, NEW_ARRIVAL: self.new_arrival}
        while self.events and self.events[0][0] <= end:
            time, kind, _, _, _, payload = heapq.heappop(self.events)
            if self.cores is not None:
                self.ps_progress(time)
            handlers[kind](time, payload)
            if self.cores is not None:
                self.ps_schedule(time)
        if self.looped:
            self.end_users()
        self.res.task_node = self.task_node
        self.res.restarts = self.restarts
        self.res.live = [sum(1 for k in range(self.T) if self.cl.task_service[k] == x and self.state[k] == ALIVE
                             and not self.stopping[k]) for x in range(self.S)]
        return self.res

    # ================================================================ information

    def load_of(self, b: int) -> np.ndarray:
        """The outstanding requests per task as balancer `b` sees them (docs/model.md,
        "Information models"). A new model is a branch here, fed by `sent` / `left`, or by
        `completion` for a model that learns loads from responses (piggyback)."""
        if self.info in ("global", "work"):         # work: global counts, and view.work
            return self.outstanding
        if self.info == "local":
            return self.local_out[b]
        if self.info == "piggyback":
            return self.reported[b]
        return self.snapshot            # stale:P

    def node_load(self) -> np.ndarray:
        """Each node's requests in service plus background, per core (empty without cores)."""
        if self.cores is None:
            return np.zeros(0)
        return np.array([(len(self.ps_service[n]) + self.background[n]) / self.cores[n]
                         for n in range(self.cl.n_nodes)])

    def node_load_of(self, b: int) -> np.ndarray:
        """view.node_load: true under global, the snapshot's under stale:P, and under local and
        piggyback what each node's last response to balancer `b` reported."""
        if self.info == "global":
            return self.node_load()
        if self.info == "stale":
            return self.node_snapshot
        return self.node_reported[b]
    def work_left(self, now: float) -> np.ndarray:
        """`work`: each task's unfinished work at `now`, seconds of demand at speed 1.0: its
        speed times the sum over its workers of the time each is still busy with the requests
        that reached the task (docs/model.md, "Information models")."""
        for k in range(self.T):
            left = 0.0
            for f in self.workers_free[k]:
                left += max(0.0, f - now)
            self.work[k] = self.task_speed[k] * left
        return self.work

    def sent(self, b: int, k: int) -> None:
        """Balancer `b` sent a request to task `k`."""
        self.outstanding[k] += 1
        self.local_out[b, k] += 1

    def left(self, b: int, k: int) -> None:
        """A request balancer `b` sent to task `k` completed, was rejected or failed there."""
        self.outstanding[k] -= 1
        self.local_out[b, k] -= 1

    def refresh(self, now: float, kk: int) -> None:
        """The stale snapshot at kk * P; the next one while it can inform a decision. (A closed
        loop: while the users send, up to run.duration; none after the run's last send.)"""
        if self.looped and not (self.n_sent < self.n_send and now <= self.t_end):
            return
        self.snapshot[:] = self.outstanding
        self.node_snapshot = self.node_load()
        if (kk + 1) * self.period <= self.t_last:
            self.schedule((kk + 1) * self.period, CONTROL, ("refresh", kk + 1), SUB_REFRESH)

    # ================================================================ arrivals and connections

    def new_arrival(self, now, i):
        arr = self.arr
        self.res.arrived += i >= self.warm_index
        client = int(arr.client[i]) if len(arr.client) else -1
        req = _Request(i, now, int(arr.service[i]), float(arr.demand[i]), int(arr.entry[i]), client)
        follow = self.follow_connection(req) if self.conn else -1
        self.attempt(now, req, follow=follow, new=True)

    # ---- a closed loop: users who think, send one request, wait for its outcome, think again

    def start_users(self) -> None:
        """Time 0: every user thinks before its first request; users send while fewer than the
        run's requests are sent and before run.duration."""
        sc, users = self.sc, self.users
        self.n_send = self.inp.n_req if self.inp.n_req is not None else math.inf
        self.t_end = sc.run.duration if sc.run.duration is not None else math.inf
        self.n_sent = 0
        self.t_last = math.inf if self.period <= self.t_end else 0.0     # refreshes: see `refresh`
        if self.sessions is not None:
            self.start_sessions()
            return
        self.next_draw = [users.draw(u, 1) for u in range(users.n)]     # (think, service, demand, jitter)
        for u in range(users.n):
            self.schedule(float(self.next_draw[u][0][0]), CONTROL, ("user", u), SUB_USER, u)

    def user_send(self, now, u) -> None:
        """User u's timer: it sends its next request (the run's next index) at its entry node."""
        if self.n_sent >= self.n_send or now >= self.t_end:
            return                                  # the run sends no more: the user stops
        i = self.n_sent
        self.n_sent += 1
        if self.warm_index == math.inf and now >= self.inp.warm_time:
            self.warm_index = self.res.warm_index = i
        if self.sessions is not None:
            # slot u's session sends its k-th request
            j, k = self.slot_session[u]
            b, r = self.session(j)
            q = int(b.off[r]) + k
            service, demand, jitter = b.service[q:q + 1], b.demand[q:q + 1], b.jitter[2 * q:2 * q + 2]
            entry, client = int(b.entry[r]), j
            self.res.sessions += k == 0 and i >= self.warm_index
            self.slot_session[u] = (j, k + 1)
            self.req_slot[i] = u
        else:
            _, service, demand, jitter = self.next_draw[u]
            self.next_draw[u] = self.users.draw(u, 1)
            entry, client = self.users.entry[u], u
        self._room(i + 1)
        arr, res = self.arr, self.res
        arr.t[i], arr.service[i], arr.demand[i] = now, service[0], demand[0]
        arr.entry[i], arr.client[i] = entry, client
        if len(jitter):
            arr.jitter[2 * i:2 * i + 2] = jitter
        res.t[i], res.demand[i], res.user[i] = now, demand[0], client
        self.new_arrival(now, i)

    # ---- sessions: each arrives, takes a user slot, sends its requests as a user does, leaves

    def start_sessions(self) -> None:
        """Sessions mode (docs/model.md, "Sessions"): the first session's arrival; the user
        slots free (a stack, lowest on top, as the engine keeps them)."""
        self.blocks = []
        self.free = list(range(self.sessions.SLOTS - 1, -1, -1))
        self.n_slots = self.sessions.SLOTS
        self.slot_session = {}      # user slot -> (session, its next request)
        self.req_slot = {}          # request index -> its session's user slot
        self.schedule(float(self.session(0)[0].t[0]), CONTROL, ("session", 0), SUB_SESSION)

    def session(self, j):
        """Session j's block (workload.SessionDraws) and its row there."""
        while len(self.blocks) * self.sessions.BLOCK <= j:
            self.blocks.append(self.sessions.block())
        return self.blocks[j // self.sessions.BLOCK], j % self.sessions.BLOCK

    def session_arrives(self, now, j) -> None:
        """Session j arrives: it takes a free user slot (the pool doubles when none is) and
        sends its first request now; the next session's arrival is scheduled."""
        if self.n_sent >= self.n_send or now >= self.t_end:
            return                                  # the run sends no more sessions
        if not self.free:
            self.free.extend(range(2 * self.n_slots - 1, self.n_slots - 1, -1))
            self.n_slots *= 2
        u = self.free.pop()
        self.slot_session[u] = (j, 0)
        self.schedule(now, CONTROL, ("user", u), SUB_USER, u)
        b, r = self.session(j + 1)
        self.schedule(float(b.t[r]), CONTROL, ("session", j + 1), SUB_SESSION)

    def user_wait_over(self, req, t) -> None:
        """The request's outcome reached its user at t: it thinks, then sends again."""
        if self.sessions is not None:
            u = self.req_slot.pop(req.index)
            j, k = self.slot_session[u]
            b, r = self.session(j)
            if k < b.count[r]:
                self.schedule(t + float(b.think[b.off[r] + k]), CONTROL, ("user", u), SUB_USER, u)
            else:
                self.free.append(u)                 # the session is over: its slot is free
        elif self.users is not None:
            u = req.client
            self.schedule(t + float(self.next_draw[u][0][0]), CONTROL, ("user", u), SUB_USER, u)

    def _room(self, n) -> None:
        """The per-request arrays hold n requests (a closed loop's grow as its users send)."""
        if len(self.arr.t) >= n:
            return
        m = max(2 * len(self.arr.t), n, 64)

        def grown(a, fill, per=1):
            b = np.full(per * m, fill, dtype=a.dtype)
            b[:len(a)] = a
            return b
        arr, res = self.arr, self.res
        self.arr = Chunk(0, grown(arr.t, 0.0), grown(arr.service, 0), grown(arr.demand, 0.0), grown(arr.entry, 0),
                         grown(arr.client, -1), grown(arr.jitter, 0.0, 2))
        for name, fill in (("task", -1), ("start", np.nan), ("done", np.nan), ("latency", np.nan), ("status", NEVER),
                           ("t", 0.0), ("demand", 0.0), ("tries", 0), ("followed", False), ("user", -1)):
            setattr(res, name, grown(getattr(res, name), fill))

    def end_users(self) -> None:
        """The per-request arrays cut to the requests sent."""
        n, res = self.n_sent, self.res
        for name in ("task", "start", "done", "latency", "status", "t", "demand", "tries", "followed", "user"):
            setattr(res, name, getattr(res, name)[:n])
        res.requests = n
        if res.warm_index == math.inf:
            res.warm_index = n

    def follow_connection(self, req) -> int:
        """The task of the client's open keep-alive connection to the service, if it carries
        more requests and its task is in the table; the request then comes in through the
        connection's entry node. -1 otherwise (a new connection will be balanced)."""
        c = (req.client, req.service)
        k = self.conn_task.get(c, -1)
        if self.conn_left.get(c, 0) > 0 and k in self.tables[req.service]:
            self.conn_left[c] -= 1
            req.entry = self.conn_entry[c]
            self.res.followed[req.index] = True
            return k
        self.res.orphaned += self.conn_left.get(c, 0) > 0
        return -1

    def open_connection(self, req, e: int, k: int) -> None:
        """A new keep-alive connection through entry node `e` to task `k`: it carries this
        request and G - 1 more, G geometric with mean balancer.keepalive (CONNECTION stream); in
        sessions mode (client: the session) every later request of the session."""
        c = (req.client, req.service)
        self.conn_task[c] = k
        self.conn_entry[c] = e
        if self.sessions is not None:
            self.conn_left[c] = math.inf        # a session is one connection: it carries the rest
            return
        u = 1.0 - rngmod.uniform(self.conn_rng)
        logq = self.inp.conn_logq
        self.conn_left[c] = int(math.log(u) / logq) if logq < 0.0 else 0

    # ================================================================ dispatch

    def entry_node(self, req) -> int:
        """The node the attempt comes in at: its own, unless that node is down; -1 if it fails
        there (clients still reach a down node until it is detected; then the entry policy
        sends its share to the others)."""
        e = req.entry
        if self.faulty and not self.node_up[e]:
            e = -1 if self.node_entry[e] else self.reroute(req.index)
            if e < 0 or not self.node_up[e]:
                return -1
        return e

    def reroute(self, i):
        up = [m for m in range(self.cl.n_nodes) if self.node_entry[m]]
        if not up:
            return -1
        return up[int(rngmod.hash_uniform(self.inp.entry_key, i, 0) * len(up))]

    def positions(self) -> np.ndarray:
        """view.position: each task's index in its service's table, -1 out of the tables."""
        pos = np.full(len(self.task_node), -1, dtype=np.int64)
        for table in self.tables:
            pos[table] = np.arange(len(table))
        return pos

    def decide(self, now, req, e: int, b: int) -> int:
        """The strategy's choice among the service's table, checked."""
        s = req.service
        cands = np.asarray(self.tables[s], dtype=np.int32)
        work = self.work_left(now) if self.info == "work" else self.work
        view = View(self.load_of(b), self.task_node, self.task_speed, e, now, int(self.inp.bal_start[b]),
                    self.params, req.client, s, self.bal_task_state[b], NO_INDEX, self.node_load_of(b), self.node_cores,
                    self.weights(now), float(req.demand), work, self.demand_dist, NO_INDEX, self.positions())
        k = int(self.select(cands, view, self.bal_state[b * self.S + s], self.bal_rng[b]))
        if k not in cands.tolist():
            raise StrategyError(f"strategy {self.spec.name!r} returned task {k} for request {req.index}, "
                                "which is not one of its candidates")
        return k

    def attempt(self, now, req, follow=-1, new=False):
        """One attempt of a request: entry node, table, decision (none when it follows its
        connection to task `follow`), then the hop towards the task."""
        i = req.index
        e = self.entry_node(req)
        if e < 0:
            self.give_up(now, req, FAILED)
            return
        b = 0 if self.central else e
        if not self.tables[req.service]:          # no task in the table: fails at once
            self.give_up(now, req, FAILED)
            return
        if follow >= 0:
            k = follow
        else:
            k = self.decide(now, req, e, b)
            if self.conn and new:                 # a retry is balanced afresh and opens none
                self.open_connection(req, e, k)
        self.res.task[i] = k
        self.res.routed.append((now, k))
        if self.faulty and self.state[k] != ALIVE:      # dead but not yet detected: refused at once
            self.give_up(now, req, FAILED)
            return
        self.sent(b, k)
        req.task, req.balancer, req.inc, req.d_out = k, b, self.inc[k], 0.0
        req.svc = req.demand / self.task_speed[k]
        d_in = 0.0
        if self.task_node[k] != e:                # crosses the overlay: hop + jitter, both ways
            hop, arr = self.sc.network.hop, self.arr
            d_in = req.d_out = hop
            if self.sc.network.jitter > 0:
                d_in += arr.jitter[2 * i]
                req.d_out += arr.jitter[2 * i + 1]
            self.res.cross += i >= self.warm_index
        self.res.status[i] = IN_FLIGHT
        # With d_in = 0 this event is the very next one (everything of kind < RETRY at `now` is
        # already done), i.e. the request reaches its task at once.
        self.schedule(now + d_in, TASK_ARRIVAL, req)

    # ================================================================ task queues and completions

    def task_arrival(self, now, req):
        k, i = req.task, req.index
        if self.faulty and (self.state[k] != ALIVE or self.inc[k] != req.inc):   # its task died meanwhile
            self.left(req.balancer, k)
            self.give_up(now, req, FAILED)
            return
        q = int(self.cl.task_qlimit[k])
        if q > 0 and self.present[k] >= self.cl.task_workers[k] + q:     # full: rejected at the task
            self.left(req.balancer, k)
            self.give_up(now, req, REJECTED)
            return
        self.present[k] += 1
        if self.cores is not None:                # the node's cores are shared: FIFO in front of the workers
            att = _Attempt(req)
            self.at_task[k].append(att)
            if self.running[k] < self.cl.task_workers[k]:
                self.ps_start(now, att)
            else:
                self.waiting[k].append(att)
            return
        free = self.workers_free[k]
        w = min(range(len(free)), key=lambda j: (free[j], j))  # earliest free, lowest index
        start = max(now, free[w])
        done = start + req.svc
        free[w] = done
        self.res.start[i], self.res.done[i] = start, done
        att = _Attempt(req)
        self.at_task[k].append(att)
        self.schedule(done, COMPLETION, att)

    # ---- processor sharing (cluster.cores): every event brings every request in service up to
    # date at its node's rate, speed * min(1, cores / requests in service), then the next
    # completion of each node is scheduled anew (an older one is superseded by version)

    def ps_rate(self, n) -> float:
        m = len(self.ps_service[n])
        m += self.background[n]
        return self.node_speed[n] * min(1.0, self.cores[n] / m) if m else 0.0

    def ps_progress(self, now) -> None:
        for n, inside in enumerate(self.ps_service):
            r = self.ps_rate(n)
            m = len(inside) + self.background[n]
            share = min(1.0, self.cores[n] / m) if m else 0.0     # the cores each one holds
            for entry in inside:
                entry[0] -= r * (now - self.ps_last[n])
                entry[2] += share * (now - self.ps_last[n])
            self.ps_last[n] = now

    def ps_schedule(self, now) -> None:
        for n, inside in enumerate(self.ps_service):
            t = now + min(e[0] for e in inside) / self.ps_rate(n) if inside else math.inf
            if t != self.ps_next[n]:
                self.ps_next[n] = t
                self.ps_ver[n] += 1
                if inside:
                    self.schedule(max(t, now), COMPLETION, ("ps", n, self.ps_ver[n]))

    def ps_start(self, now, att) -> None:
        k = att.req.task
        self.running[k] += 1
        self.ps_service[self.task_node[k]].append([att.req.demand, att, 0.0])   # (work left, attempt, core-seconds)
        self.res.start[att.req.index] = now

    def ps_done(self, now, n, ver) -> None:
        """Node n's request with the least work left completes; its task's next waiting one starts."""
        if ver != self.ps_ver[n]:
            return
        inside = self.ps_service[n]
        j = min(range(len(inside)), key=lambda i: inside[i][0])
        _, att, held = inside.pop(j)
        k = att.req.task
        self.running[k] -= 1
        self.res.done[att.req.index] = now
        if att.req.index >= self.warm_index:      # the CPU metrics (docs/model.md, "Nodes as shared machines")
            self.res.node_cpu[n] += held
            self.res.contention_sum += (now - self.res.start[att.req.index]) - held
        if self.waiting[k]:
            self.ps_start(now, self.waiting[k].pop(0))
        if self.node_reported.shape[1]:         # the response carries its node's load
            self.node_reported[att.req.balancer, n] = self.node_load()[n]
        self.completion(now, att)

    def completion(self, now, att):
        if isinstance(att, tuple):            # processor sharing: a node's next completion
            self.ps_done(now, att[1], att[2])
            return
        if not att.alive:                     # its task crashed: already failed
            return
        req, res = att.req, self.res
        k, i, b = req.task, req.index, req.balancer
        self.at_task[k].remove(att)
        self.present[k] -= 1
        self.left(b, k)
        self.reported[b, k] = self.present[k]     # the response reports the task's count (piggyback)
        latency = now + req.d_out - req.t0
        s = int(self.cl.task_service[k])
        self.as_busy[s] += req.demand / self.task_speed[k]
        self.as_done[s] += 1
        self.as_lat[s].append(latency)
        res.status[i] = COMPLETED
        res.latency[i] = latency
        if i >= self.warm_index:
            res.completed += 1
            res.latency_sum += latency
            res.latency_max = max(res.latency_max, latency)
            res.task_served[k] += 1
            res.task_busy[k] += req.svc
            timeout = self.sc.clients.timeout
            res.timed_out += timeout > 0 and latency > timeout
        self.user_wait_over(req, now + req.d_out)
        if self.on_complete is not None:
            s = int(self.cl.task_service[k])
            view = View(self.load_of(b), self.task_node, self.task_speed, -1, now, int(self.inp.bal_start[b]),
                        self.params, -1, s, self.bal_task_state[b], NO_INDEX, self.node_load_of(b), self.node_cores,
                        self.weights(now), -1.0, self.work, self.demand_dist, NO_INDEX, self.positions())
            self.on_complete(self.bal_state[b * self.S + s], k, latency, now, view)

    # ================================================================ client retries

    def give_up(self, now, req, status):
        """The attempt failed or was rejected: retry after a backoff, or that is the outcome."""
        i, res, cli = req.index, self.res, self.sc.clients
        if req.tries < cli.retries:
            a = req.tries
            req.tries += 1
            res.tries[i] = req.tries
            res.status[i] = IN_FLIGHT          # waiting for its next attempt
            res.retried += i >= self.warm_index
            delay = cli.backoff * (2.0 ** a) * (0.5 + 0.5 * rngmod.hash_uniform(self.inp.retry_key, i, a))
            self.schedule(now + delay, RETRY, req)
            return
        res.status[i] = status
        res.done[i] = now
        res.start[i] = np.nan
        if status == REJECTED:
            res.rejected += i >= self.warm_index
        else:
            res.failed += i >= self.warm_index
        self.user_wait_over(req, now)

    def retry(self, now, req):
        """A client sends the request again: a new decision at its entry node."""
        self.attempt(now, req)

    # ================================================================ failures and the orchestrator

    def control(self, now, payload):
        what = payload[0]
        if what == "refresh":
            self.refresh(now, payload[1])
        elif what == "fault":
            self.fault(now, payload[1])
        elif what == "user":
            self.user_send(now, payload[1])
        elif what == "session":
            self.session_arrives(now, payload[1])
        elif what == "background":                          # a node's background load changes
            j = payload[1]
            self.background[int(self.inp.background.node[j])] = float(self.inp.background.level[j])
        elif what == "deploy":
            self.deploy(now, payload[1])
        elif what == "autoscale":
            self.autoscale(now, payload[1])
        elif what == "batch":
            if self.batch_ver[payload[1]] == payload[2]:
                self.batch(now, payload[1])
        elif what == "node":
            if self.node_ver[payload[1]] == payload[2]:      # detected: leaves the entry policy
                self.node_entry[payload[1]] = False
        elif self.task_ver[payload[1]] == payload[2]:
            self.orchestrate(now, payload[1])

    def task_event(self, k, time, what):
        """The slot's one pending orchestrator event (supersedes any earlier one)."""
        self.task_ver[k] += 1
        self.task_ev[k] = (time, what)
        if math.isfinite(time):
            self.schedule(time, CONTROL, ("task", k, self.task_ver[k]), SUB_TASK, k)

    def crash(self, k, now, detect):
        if self.state[k] == DEAD:
            return
        if self.stopping[k]:                  # a task being stopped: its stop ends now
            self.res.crashes += 1
            self.exit(now, k)
            return
        was_alive = self.state[k] == ALIVE
        self.state[k] = DEAD
        self.inc[k] += 1
        self.res.crashes += 1
        if was_alive:                         # its queued and in-service requests fail now
            self.fail_all(now, k)
        self.task_event(k, now + detect, "detect")

    def fail_all(self, now, k):
        """Task k's queued and in-service requests fail at `now`."""
        for att in list(self.at_task[k]):
            att.alive = False
            self.present[k] -= 1
            self.left(att.req.balancer, k)
            self.give_up(now, att.req, FAILED)
        self.at_task[k].clear()
        assert self.present[k] == 0
        if self.cores is not None:        # out of its node's processor sharing, and its queue
            n = self.task_node[k]
            self.ps_service[n] = [e for e in self.ps_service[n] if e[1].alive]
            self.running[k] = 0
            self.waiting[k].clear()

    def tasks_on(self, x):
        """The running or starting tasks on node `x`."""
        return [k for k in range(self.T) if self.task_node[k] == x and self.state[k] != DEAD]

    def log(self, now, kind, s, task=None, node=None, before=None, after=None, detail="", value=math.nan):
        """An orchestrator action, in a run with deployments or autoscalers."""
        if self.logging:
            self.res.log.append((now, kind, int(s), task, node, before, after, detail, value))

    def fault(self, now, j):
        sched, h = self.inp.schedule, self.sc.health
        kind, x = int(sched.kind[j]), int(sched.target[j])
        if kind == F_TASK_CRASH:
            if self.state[x] == ALIVE:
                self.crash(x, now, self.detect_delay(x, now))
        elif kind == F_SERVICE_CRASH:
            victims = [k for k in range(self.T) if self.cl.task_service[k] == x and self.state[k] == ALIVE
                       and not self.stopping[k]]
            for k in victims[:int(sched.count[j])]:
                self.crash(k, now, self.detect_delay(k, now))
        elif kind == F_NODE_DOWN:
            if self.node_up[x]:
                self.node_up[x] = False
                self.node_ver[x] += 1
                self.schedule(now + h.node_detect, CONTROL, ("node", x, self.node_ver[x]), SUB_NODE, x)
                for k in self.tasks_on(x):
                    self.crash(k, now, h.node_detect)
        elif kind == F_NODE_UP:
            if not self.node_up[x]:
                self.node_up[x] = self.node_entry[x] = True
                self.node_ver[x] += 1                  # cancels its pending detection
                for k in range(self.T):                # replacements waiting for an eligible node
                    ev = self.task_ev[k]
                    if ev is not None and ev[1] == "place" and ev[0] == math.inf:
                        self.task_event(k, now, "place")
        elif kind == F_NODE_SLOW:                      # runs on at another speed; no health check notices
            self.node_speed[x] = float(sched.value[j])
            for k in range(self.T):
                if self.task_node[k] == x:     # the node's speed times the task's version's factor
                    v = self.version[k]
                    self.task_speed[k] = self.node_speed[x] * (float(self.inp.deploy.factor[v - 1]) if v > 0 else 1.0)
        else:                                          # drain: the manager stops its tasks at once
            self.node_drained[x] = True
            for k in self.tasks_on(x):
                if h.grace > 0 and self.state[k] == ALIVE:      # gracefully, replaced when the stop is over
                    if not self.stopping[k]:
                        self.stop(now, k, "replace", "drain")
                else:
                    self.crash(k, now, 0.0)

    def orchestrate(self, now, k):
        what = self.task_ev[k][1]
        if what == "detect":
            self.detect(now, k)
        elif what == "place":
            self.place(now, k)
        elif what == "stop":
            self.exit(now, k)
        else:
            self.join(now, k)

    def detect(self, now, k):
        """The dead task leaves the tables; it is replaced after restart_delay."""
        table = self.tables[int(self.cl.task_service[k])]
        if k in table:
            table.remove(k)
            self.res.removed.append((now, k))
        self.why[k] = "crash"
        self.task_event(k, now + self.sc.health.restart_delay, "place")

    def place(self, now, k):
        """A replacement in slot `k` by spread over the up, non-drained nodes (or, if there is
        none, when a node comes up); it starts for health.startup."""
        cl, s = self.cl, int(self.cl.task_service[k])
        cs = np.zeros(cl.n_nodes, dtype=np.int64)
        ct = np.zeros(cl.n_nodes, dtype=np.int64)
        for j in range(self.T):
            if self.state[j] != DEAD and not self.stopping[j]:
                ct[self.task_node[j]] += 1
                cs[self.task_node[j]] += cl.task_service[j] == s
        eligible = np.array([self.node_up[m] and not self.node_drained[m] for m in range(cl.n_nodes)])
        node = spread(cs, ct, eligible)
        if node < 0:
            self.task_event(k, math.inf, "place")
            return
        self.res.placements.append((now, k, node, cs, ct, eligible))
        self.log(now, "replace" if self.why[k] in ("crash", "drain") else "start", s, k, node, detail=self.why[k])
        self.task_node[k] = node
        self.task_speed[k] = self.node_speed[node] * self.svc_factor[s]     # the service's current version
        self.version[k] = self.svc_version[s]
        self.state[k] = STARTING
        self.placed[k] = now
        h = self.sc.health
        join = h.startup
        if h.interval > 0:                    # the first probe past the startup passes
            join = max(1, math.ceil(h.startup / h.interval)) * h.interval
        self.task_event(k, now + join, "join")

    def detect_delay(self, k, now):
        """A crash is noticed after health.task_detect; with health checks, when the
        retries-th failing probe on the task's grid (every interval from its placement), at or
        after the crash and not before start_period, has timed out."""
        h = self.sc.health
        if h.interval == 0:
            return h.task_detect
        p = self.placed[k]
        j = max(1, math.ceil((max(now, p + h.start_period) - p) / h.interval))   # the first probe that fails
        return p + (j + h.retries - 1) * h.interval + h.timeout - now

    def join(self, now, k):
        """The replacement joins the end of the tables with idle workers."""
        self.state[k] = ALIVE
        self.workers_free[k] = [now] * len(self.workers_free[k])
        self.tables[int(self.cl.task_service[k])].append(k)
        self.restarts[k] += 1
        self.task_ev[k] = None
        self.task_ver[k] += 1
        self.joined[k] = now
        s = int(self.cl.task_service[k])
        old = self.upd_old[k]
        if old >= 0:                          # start-first: the old task stops now
            self.upd_old[k] = -1
            if self.assigned(old, s):
                self.stop(now, old, "free", "update")
        if self.upd_wait[k]:
            self.upd_wait[k] = False
            self.batch_joined(now, s)

    # ================================================================ deployments and graceful stops

    def weights(self, now):
        """Each task's slow-start weight at `now` (docs/model.md, "Slow start")."""
        ss = self.sc.balancer.slow_start
        if ss is None:
            return np.zeros(0)
        w = np.ones(self.T)
        for k in range(self.T):
            age = now - self.joined[k]
            if age < ss.window:
                w[k] = max(ss.min_weight, (age / ss.window) ** (1.0 / ss.aggression))
        return w

    def is_free(self, k) -> bool:
        """The slot holds no task and none is coming."""
        return self.state[k] == DEAD and self.task_ev[k] is None

    def assigned(self, k, s) -> bool:
        return self.cl.task_service[k] == s and not self.is_free(k) and not self.stopping[k]

    def free_slot(self, s) -> int:
        free = [k for k in range(self.T) if self.cl.task_service[k] == s and self.is_free(k)]
        return free[0] if free else -1

    def stop(self, now, k, then, why):
        """The orchestrator stops slot k's task (for `why`: scale, update, drain); `then` follows
        the stop. A slot whose task is not placed yet logs no stop."""
        self.stop_next[k] = then
        if self.state[k] != DEAD or (self.task_ev[k] is not None and self.task_ev[k][1] == "detect"):
            self.log(now, "stop", self.cl.task_service[k], k, int(self.task_node[k]), detail=why)
        if self.state[k] == DEAD:             # a crashed task not yet replaced: out of the tables now
            table = self.tables[int(self.cl.task_service[k])]
            if k in table:
                table.remove(k)
                self.res.removed.append((now, k))
            self.after_stop(now, k)
        elif self.state[k] == STARTING:       # stops at once
            self.state[k] = DEAD
            self.inc[k] += 1
            self.after_stop(now, k)
        else:                                 # out of the tables; serves what it holds for grace
            self.tables[int(self.cl.task_service[k])].remove(k)
            self.res.removed.append((now, k))
            self.stopping[k] = True
            self.task_event(k, now + self.sc.health.grace, "stop")

    def exit(self, now, k):
        """The stop is over: what is still at the task fails."""
        if self.state[k] == ALIVE:
            self.fail_all(now, k)
        self.state[k] = DEAD
        self.inc[k] += 1
        self.stopping[k] = False
        self.after_stop(now, k)

    def after_stop(self, now, k):
        then, s = self.stop_next[k], int(self.cl.task_service[k])
        self.stop_next[k] = "free"
        if then == "replace":
            self.why[k] = "drain"
            self.task_event(k, now + self.sc.health.restart_delay, "place")
        elif then == "update" or self.svc_want[s] > 0:
            if then != "update":
                self.svc_want[s] -= 1
            self.why[k] = "update" if then == "update" else "scale"
            self.task_event(k, now, "place")
        else:
            self.task_ev[k] = None
            self.task_ver[k] += 1

    def deploy(self, now, j):
        d = self.inp.deploy
        s = int(d.service[j])
        if int(d.kind[j]) == 0:
            self.res.deploy_from[j] = sum(self.counted(k, s) for k in range(self.T)) + self.svc_want[s]
            self.log(now, "scale", s, before=self.res.deploy_from[j], after=int(d.replicas[j]))
            self.scale(now, s, int(d.replicas[j]))
        else:
            self.res.deploy_from[j] = self.svc_version[s]
            self.log(now, "update", s, before=self.svc_version[s], after=j + 1)
            self.svc_version[s], self.svc_factor[s], self.update[s] = j + 1, float(d.factor[j]), j
            self.batch(now, s)

    def counted(self, k, s) -> bool:
        """A task of s for a scale: assigned, or stopping to be replaced."""
        return (self.cl.task_service[k] == s and not self.is_free(k)
                and not (self.stopping[k] and self.stop_next[k] == "free"))

    def scale(self, now, s, want):
        self.res.scales.append((now, s, want))
        mine = [k for k in range(self.T) if self.counted(k, s)]
        have = len(mine) + self.svc_want[s]
        if want >= have:
            for _ in range(want - have):
                k = self.free_slot(s)
                if k < 0:
                    self.svc_want[s] += 1
                else:
                    self.why[k] = "scale"
                    self.task_event(k, now, "place")
            return
        cut = have - want
        w = min(cut, self.svc_want[s])
        self.svc_want[s] -= w
        cut -= w
        # Swarm's choice: running tasks first, then the others; each the n-th copy on its node;
        # remove the highest n first (no node yet: first of all), the later in that order first
        running = [k for k in mine if self.state[k] == ALIVE and not self.stopping[k]]
        ordered = running + [k for k in mine if k not in running]
        copies, keyed = {}, []
        for pos, k in enumerate(ordered):
            if (self.task_ev[k] is not None and self.task_ev[k][1] == "place") or self.stopping[k]:
                nth = math.inf
            else:
                copies[self.task_node[k]] = copies.get(self.task_node[k], 0) + 1
                nth = copies[self.task_node[k]]
            keyed.append((nth, pos, k))
        for _, _, k in sorted(keyed)[len(keyed) - cut:][::-1] if cut else ():
            for x in range(self.T):
                if self.upd_old[x] == k:
                    self.upd_old[x] = -1
            self.upd_old[k] = -1
            if self.stopping[k]:
                self.stop_next[k] = "free"
            else:
                self.stop(now, k, "free", "scale")
            if self.upd_wait[k]:
                self.upd_wait[k] = False
                self.batch_joined(now, s)

    def autoscale(self, now, a):
        """The HPA rule (docs/model.md, "Autoscaler"), while requests arrive (as the stale
        refreshes: none after the last arrival; a closed loop's, while its users send)."""
        if not self.looped:
            last = self.t_last
        else:
            last = self.t_end if self.n_sent < self.n_send else (float(self.res.t[self.n_sent - 1]) if self.n_sent else 0.0)
        if now > last:
            return
        asc = self.inp.autoscale
        s, n, nb, nr = int(asc.service[a]), len(self.as_recs[a]), int(asc.buckets[a]), int(asc.recs[a])
        ring = self.as_ring[a]
        if len(ring) < nb:
            ring.append(None)
        ring[n % nb] = (self.as_busy[s], self.as_done[s], self.as_lat[s])
        self.as_busy[s], self.as_done[s], self.as_lat[s] = 0.0, 0, []
        self.schedule(now + float(asc.interval[a]), CONTROL, ("autoscale", a), SUB_AUTOSCALE, a)
        busy, done, lats = 0.0, 0, []
        for b, d, x in ring:
            busy += b
            done += d
            lats += x
        span = len(ring) * float(asc.interval[a])
        cur = sum(1 for k in range(self.T) if self.counted(k, s)) + self.svc_want[s]
        live = len(self.tables[s])
        rec = cur
        metric = math.nan
        if live > 0:
            if int(asc.metric[a]) == 0:
                metric = busy / (span * live * float(self.sc.services[s].workers))
            elif int(asc.metric[a]) == 2:
                metric = window_p99(lats)
            else:
                metric = done / (span * live)
            ratio = metric / float(asc.target[a])
            if abs(ratio - 1.0) > float(asc.tolerance[a]):
                rec = math.ceil(cur * ratio)
        recs = self.as_recs[a]
        recs.append(rec)
        window = recs[max(0, len(recs) - nr):]
        want = rec if rec > cur else min(cur, max(window))
        want = min(max(want, int(asc.lo[a])), int(asc.hi[a]))
        if want != cur:
            self.log(now, "autoscale", s, before=cur, after=want, detail=("util", "rps", "latency_p99")[int(asc.metric[a])],
                     value=metric)
            self.scale(now, s, want)

    def replacing(self, k) -> bool:
        return any(self.upd_old[x] == k for x in range(self.T))

    def batch(self, now, s):
        """The update's next batch: up to `parallelism` older tasks, lowest slots first."""
        self.batch_ver[s] += 1
        j = self.update[s]
        if j < 0:
            return
        d = self.inp.deploy
        old = [k for k in range(self.T) if self.assigned(k, s) and self.version[k] != self.svc_version[s]
               and not self.replacing(k) and not self.upd_wait[k]][:int(d.parallelism[j])]
        for k in old:
            self.batch_waits[s] += 1
            if int(d.order[j]) == 1:          # start-first, in a free slot if there is one
                new = self.free_slot(s)
                if new >= 0:
                    self.upd_old[new] = k
                    self.upd_wait[new] = True
                    self.why[new] = "update"
                    self.task_event(new, now, "place")
                    continue
            self.upd_wait[k] = True
            self.stop(now, k, "update", "update")
        if not old:
            self.update[s] = -1
            self.res.update_done[j] = self.update_last.get(j, now)    # over: at its last batch's last join

    def batch_joined(self, now, s):
        self.batch_waits[s] -= 1
        if self.batch_waits[s] == 0 and self.update[s] >= 0:
            self.update_last[self.update[s]] = now
            self.batch_ver[s] += 1
            self.schedule(now + float(self.inp.deploy.delay[self.update[s]]), CONTROL, ("batch", s, self.batch_ver[s]),
                          SUB_BATCH, s)
