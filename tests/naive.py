"""A slow, deliberately simple reference simulator of docs/model.md.

This file is documentation of the model as much as a test oracle: it is a textbook
discrete-event simulation with one `heapq` of events, no chunks, no slot pools, no fast paths.
`lbbench.engine.run.simulate` must agree with it request by request.

Inputs are shared with the engine, not re-derived: the arrivals come from
`lbbench.model.workload.Workload` (same scenario, cluster and seed), the cluster from
`lbbench.model.cluster.build_cluster`, the per-balancer random states and start offsets are drawn
exactly as `lbbench.engine.run._Run.__init__` draws them, and the strategy's decision is its own
`select` function run as plain Python (`spec.select.py_func`).

Events are ordered totally by (time, kind, sub, key, sequence) with

    COMPLETION < TASK_ARRIVAL < CONTROL < RETRY < NEW_ARRIVAL

at equal times (a worker freed at t serves a request reaching its task at t; a snapshot taken
at t sees both; a request arriving at t is decided after all of that), and `sequence` the order
in which the events were scheduled. Control events at equal times: the stale refresh (sub 0),
then the fault schedule in its order (sub 1, key = index), then node detections (sub 2, key =
node), then the orchestrator's task events (sub 3, key = task slot). A task slot or a node has
at most one pending event: a newer one supersedes it (lazy deletion by version).

Failures (docs/model.md, "Failures and recovery"): the fault schedule comes from
`lbbench.model.faults.build_schedule` (shared input, like the arrivals); everything that follows
from it is simulated here.
"""
from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from lbbench.engine import kernel as E
from lbbench import rng as rngmod
from lbbench.model.cluster import build_cluster
from lbbench.model.faults import F_NODE_DOWN, F_NODE_UP, F_SERVICE_CRASH, F_TASK_CRASH, build_schedule
from lbbench.engine.kernel import View
from lbbench.errors import StrategyError
from lbbench.model.scenario import load_scenario
from lbbench.strategy import resolve
from lbbench.model.workload import Chunk, Workload

# Event kinds, in their order at equal times.
COMPLETION, TASK_ARRIVAL, CONTROL, RETRY, NEW_ARRIVAL = 0, 1, 2, 3, 4
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

    @property
    def in_flight(self) -> int:
        return self.arrived - self.completed - self.rejected - self.failed


@dataclass
class _Request:
    index: int
    t0: float         # arrival at the entry node
    service: int
    demand: float
    entry: int               # entry node drawn for it (the client's)
    balancer: int = 0
    task: int = -1
    d_out: float = 0.0
    inc: int = 0             # incarnation of the task it was sent to
    tries: int = 0           # retries so far


@dataclass
class _Attempt:
    """A request queued or in service at a task; `alive` turns False when the task crashes."""
    req: _Request
    alive: bool = True


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
    bal_task_state = spec.task_state_array(n_bal, cl.n_tasks)   # per (balancer, task)
    param_values = np.array([pvals[p.name] for p in spec.params], dtype=np.float64)

    # ---- information and task state
    info = sc.balancer.info_kind
    period = sc.balancer.stale_period
    outstanding = np.zeros(T, dtype=np.int64)           # decided, not yet completed/rejected/failed
    local_out = np.zeros((n_bal, T), dtype=np.int64)    # the same, per sending balancer
    snapshot = np.zeros(T, dtype=np.int64)              # stale copy of `outstanding`
    present = np.zeros(T, dtype=np.int64)               # arrived at the task, not completed
    workers_free = [[0.0] * int(w) for w in cl.task_workers]   # when each worker is next free
    at_task = [[] for _ in range(T)]                    # _Attempts queued or in service per task

    # ---- failures: task slots, nodes, tables (task ids in placement order per service)
    task_node = cl.task_node.astype(np.int64).copy()    # a replacement moves its slot
    task_speed = cl.task_speed.copy()
    state = [ALIVE] * T
    inc = [0] * T
    restarts = np.zeros(T, dtype=np.int64)
    task_ev = [None] * T             # (time, what) of the slot's one pending event
    task_ver = [0] * T
    node_up = [True] * cl.n_nodes
    node_entry = [True] * cl.n_nodes
    node_drained = list(cl.node_drained)
    node_ver = [0] * cl.n_nodes
    tables = [[int(k) for k in cl.table[cl.table_start[s]:cl.table_start[s] + cl.table_len[s]]] for s in range(S)]
    faulty = sc.faults.any
    h, cli = sc.health, sc.clients
    horizon = sc.run.duration if sc.run.duration is not None else sc.n_requests / wl.rate
    sched = build_schedule(sc, T, horizon, seed)
    entry_key, retry_key = (int(x) for x in rngmod.stream(seed, rngmod.FAULTS, 1 << 20).integers(0, 2**62, size=2))

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
        task_served=np.zeros(T, dtype=np.int64), task_busy=np.zeros(T), tries=np.zeros(n, dtype=np.int64),
    )

    # ---- the event list
    events: list = []
    seq = itertools.count()

    def schedule(time, kind, payload, sub=0, key=0):
        heapq.heappush(events, (time, kind, sub, key, next(seq), payload))

    for i in range(n):
        schedule(float(arr.t[i]), NEW_ARRIVAL, i)
    t_last = float(arr.t[-1]) if n else 0.0
    if math.isfinite(period) and period <= t_last:
        schedule(period, CONTROL, ("refresh", 1))         # refreshes at P, 2P, 3P, ...
    for j in range(len(sched)):
        schedule(float(sched.time[j]), CONTROL, ("fault", j), 1, j)

    def task_event(k, time, what):
        task_ver[k] += 1
        task_ev[k] = (time, what)
        if math.isfinite(time):
            schedule(time, CONTROL, ("task", k, task_ver[k]), 3, k)

    # ---- a request's life
    def give_up(now, req, status):
        """The attempt failed or was rejected: retry after a backoff, or that is the outcome."""
        i = req.index
        if req.tries < cli.retries:
            a = req.tries
            req.tries += 1
            res.tries[i] = req.tries
            res.status[i] = IN_FLIGHT          # waiting for its next attempt
            res.retried += i >= warm_index
            delay = cli.backoff * (2.0 ** a) * (0.5 + 0.5 * rngmod.hash_uniform(retry_key, i, a))
            schedule(now + delay, RETRY, req)
            return
        res.status[i] = status
        res.done[i] = now
        res.start[i] = np.nan
        if status == REJECTED:
            res.rejected += i >= warm_index
        else:
            res.failed += i >= warm_index

    def reroute(i):
        up = [m for m in range(cl.n_nodes) if node_entry[m]]
        if not up:
            return -1
        return up[int(rngmod.hash_uniform(entry_key, i, 0) * len(up))]

    def new_arrival(now, i):
        res.arrived += i >= warm_index
        req = _Request(i, now, int(arr.service[i]), float(arr.demand[i]), int(arr.entry[i]))
        attempt(now, req)

    def attempt(now, req):
        i, s, e = req.index, req.service, req.entry
        measured = i >= warm_index
        if faulty and not node_up[e]:
            # clients still reach a down node until it is detected; then the entry policy
            # sends its share to the others
            e = -1 if node_entry[e] else reroute(i)
            if e < 0 or not node_up[e]:
                give_up(now, req, FAILED)
                return
        b = 0 if central else e
        cands = np.asarray(tables[s], dtype=np.int32)
        if len(cands) == 0:                   # no task in the table: fails at once
            give_up(now, req, FAILED)
            return
        client = int(arr.client[i]) if len(arr.client) else -1
        view = View(loads(b), task_node, task_speed, e, now, int(bal_start[b]), spec.param_tuple(param_values), client, s,
                    bal_task_state[b])
        k = int(select(cands, view, bal_state[b * S + s], bal_rng[b]))
        if k not in cands.tolist():
            raise StrategyError(f"strategy {spec.name!r} returned task {k} for request {i}, which is not one of its candidates")
        res.task[i] = k
        res.routed.append((now, k))
        if faulty and state[k] != ALIVE:      # dead but not yet detected: refused at once
            give_up(now, req, FAILED)
            return
        outstanding[k] += 1
        local_out[b, k] += 1
        req.task, req.balancer, req.inc, req.d_out = k, b, inc[k], 0.0
        d_in = 0.0
        if task_node[k] != e:                 # crosses the overlay: hop + jitter, both ways
            d_in = req.d_out = sc.network.hop
            if sc.network.jitter > 0:
                d_in += arr.jitter[2 * i]
                req.d_out += arr.jitter[2 * i + 1]
            res.cross += measured
        res.status[i] = IN_FLIGHT
        # With d_in = 0 this event is the very next one (everything of kind < RETRY at `now` is
        # already done), i.e. the request reaches its task at once.
        schedule(now + d_in, TASK_ARRIVAL, req)

    def task_arrival(now, req):
        k, i = req.task, req.index
        if faulty and (state[k] != ALIVE or inc[k] != req.inc):   # its task died meanwhile
            outstanding[k] -= 1
            local_out[req.balancer, k] -= 1
            give_up(now, req, FAILED)
            return
        q = int(cl.task_qlimit[k])
        if q > 0 and present[k] >= cl.task_workers[k] + q:     # full: rejected at the task
            outstanding[k] -= 1
            local_out[req.balancer, k] -= 1
            give_up(now, req, REJECTED)
            return
        present[k] += 1
        free = workers_free[k]
        w = min(range(len(free)), key=lambda j: (free[j], j))  # earliest free, lowest index
        start = max(now, free[w])
        done = start + req.demand / task_speed[k]
        free[w] = done
        res.start[i], res.done[i] = start, done
        att = _Attempt(req)
        at_task[k].append(att)
        schedule(done, COMPLETION, att)

    def completion(now, att):
        if not att.alive:                     # its task crashed: already failed
            return
        req = att.req
        k, i, b = req.task, req.index, req.balancer
        at_task[k].remove(att)
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
            res.task_busy[k] += req.demand / task_speed[k]
            res.timed_out += cli.timeout > 0 and latency > cli.timeout
        if on_complete is not None:
            s = int(cl.task_service[k])
            view = View(loads(b), task_node, task_speed, -1, now, int(bal_start[b]), spec.param_tuple(param_values), -1, s,
                        bal_task_state[b])
            on_complete(bal_state[b * S + s], k, latency, now, view)

    # ---- failures and the orchestrator
    def crash(k, now, detect):
        if state[k] == DEAD:
            return
        was_alive = state[k] == ALIVE
        state[k] = DEAD
        inc[k] += 1
        res.crashes += 1
        if was_alive:                         # its queued and in-service requests fail now
            for att in list(at_task[k]):
                att.alive = False
                present[k] -= 1
                outstanding[k] -= 1
                local_out[att.req.balancer, k] -= 1
                give_up(now, att.req, FAILED)
            at_task[k].clear()
            assert present[k] == 0
        task_event(k, now + detect, "detect")

    def fault(now, j):
        kind, x = int(sched.kind[j]), int(sched.target[j])
        if kind == F_TASK_CRASH:
            if state[x] == ALIVE:
                crash(x, now, h.task_detect)
        elif kind == F_SERVICE_CRASH:
            victims = [k for k in range(T) if cl.task_service[k] == x and state[k] == ALIVE][:int(sched.count[j])]
            for k in victims:
                crash(k, now, h.task_detect)
        elif kind == F_NODE_DOWN:
            if node_up[x]:
                node_up[x] = False
                node_ver[x] += 1
                schedule(now + h.node_detect, CONTROL, ("node", x, node_ver[x]), 2, x)
                for k in range(T):
                    if task_node[k] == x and state[k] != DEAD:
                        crash(k, now, h.node_detect)
        elif kind == F_NODE_UP:
            if not node_up[x]:
                node_up[x] = node_entry[x] = True
                node_ver[x] += 1                  # cancels its pending detection
                for k in range(T):                # replacements waiting for an eligible node
                    if task_ev[k] is not None and task_ev[k][1] == "place" and task_ev[k][0] == math.inf:
                        task_event(k, now, "place")
        else:                                     # drain: the manager stops its tasks at once
            node_drained[x] = True
            for k in range(T):
                if task_node[k] == x and state[k] != DEAD:
                    crash(k, now, 0.0)

    def orchestrate(now, k):
        what = task_ev[k][1]
        s = int(cl.task_service[k])
        if what == "detect":                  # leaves the tables; replaced after restart_delay
            if k in tables[s]:
                tables[s].remove(k)
                res.removed.append((now, k))
            task_event(k, now + h.restart_delay, "place")
        elif what == "place":                 # spread over the up, non-drained nodes
            cs = np.zeros(cl.n_nodes, dtype=np.int64)
            ct = np.zeros(cl.n_nodes, dtype=np.int64)
            for j in range(T):
                if state[j] != DEAD:
                    ct[task_node[j]] += 1
                    cs[task_node[j]] += cl.task_service[j] == s
            eligible = np.array([node_up[m] and not node_drained[m] for m in range(cl.n_nodes)])
            node = spread(cs, ct, eligible)
            if node < 0:
                task_event(k, math.inf, "place")
                return
            res.placements.append((now, k, node, cs, ct, eligible))
            task_node[k] = node
            task_speed[k] = cl.node_speed[node]
            state[k] = STARTING
            task_event(k, now + h.startup, "join")
        else:                                 # joins the tables with idle workers
            state[k] = ALIVE
            workers_free[k] = [now] * len(workers_free[k])
            tables[s].append(k)
            restarts[k] += 1
            task_ev[k] = None
            task_ver[k] += 1

    def control(now, payload):
        what = payload[0]
        if what == "refresh":
            kk = payload[1]
            snapshot[:] = outstanding
            if (kk + 1) * period <= t_last:   # later refreshes inform no decision
                schedule((kk + 1) * period, CONTROL, ("refresh", kk + 1))
        elif what == "fault":
            fault(now, payload[1])
        elif what == "node":
            if node_ver[payload[1]] == payload[2]:
                node_entry[payload[1]] = False
        elif task_ver[payload[1]] == payload[2]:
            orchestrate(now, payload[1])

    # ---- run: everything (drain), or up to the end of the run
    if sc.run.drain:
        end = math.inf
    else:
        end = sc.run.duration if sc.run.duration is not None else t_last
    handlers = {COMPLETION: completion, TASK_ARRIVAL: task_arrival, CONTROL: control, RETRY: attempt,
                NEW_ARRIVAL: new_arrival}
    while events and events[0][0] <= end:
        time, kind, _, _, _, payload = heapq.heappop(events)
        handlers[kind](time, payload)
    res.task_node = task_node
    res.restarts = restarts
    return res
