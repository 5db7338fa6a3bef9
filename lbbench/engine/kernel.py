"""The compiled dispatch loop (docs/architecture.md, "The engine").

One numba kernel processes a chunk of arrivals. Before each arrival it applies, in time order,
every event due by then: completions (retired from a min-heap keyed by completion time),
arrivals at a task after the overlay hop (a second heap), control events (one queue, control.py:
stale-snapshot refreshes; the fault schedule and the orchestrator's detections, placements and
joins) and client retries (a third heap). Ties are ordered by kind: completion < arrival at task <
control < retry < new arrival, so a server freed at time t is free for a request arriving at t.

Then it asks the strategy for a task, checks the answer (a task of this service in the
balancer's table, else the run stops with an error naming the plugin), and places the request
in the task's FIFO queue in front of its `workers` slots: start = max(arrival at the task,
earliest free worker), completion = start + demand / speed. Memory is O(tasks + in-flight +
histogram): in-flight requests live in a slot pool that grows only with concurrency.

Strategy hooks are module globals of this file (`_select`, `_on_complete`), and so are the
compile-time switches (FULL, DIRECT, HAS_COMPLETE, LOAD_INDEX, READS_WORK, CLOSED).
`specialise.specialise` makes a copy of the functions in `KERNEL_FUNCS` whose globals bind a plugin's functions and switches instead, with
its own cache name, so numba inlines the plugin into the loop and caches the result on disk
per strategy (a dispatcher passed as an argument is not reusable from the cache across
processes). Everything else the loop calls lives in the modules beside this one and is
compiled once for all strategies.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit
from numba import types as nbtypes
from numba.core import ir_utils
from numba.extending import overload

from ..errors import NotATaskId
from ..rng import uniform
from .control import T_REFRESH, _reroute, control_step, ramp, refresh_step, timer_set
from .cpu import ps_arrive, ps_background, ps_complete
from .heaps import heap_pop, heap_push, heap_replace
from .info import count_local, fill_work, load_of, node_load_of, on_response
from .loadindex import map_of, touch, tree_of
from .lowlevel import _fdiv, _view, inlined
from .metrics import _record, ts_bucket_of, window_of
from .requests import _free_slot, _give_up, _place, _place_on, _user_wait_over, session_arrives, user_outcome
from .state import (ARRIVED, COMPLETED, CROSS, ERR_CODE, ERR_REQ, ERR_VALUE, FAILED, FREE_N, HEAP_N, K_SESSIONS, K_USER_DRAWS, K_WARM,
                    LAT_MAX, LAT_SUM, NEED, RAMP_N, REQUESTS, RT_N, SESSIONS, ST_COMPLETED, ST_FAILED, ST_IN_FLIGHT, ST_REJECTED, T_FIRST,
                    T_LAST, TASK_ALIVE, TR_HEAD, TRANSIT_N, TS_ARRIVED, TS_FAILED)
from .. import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)

# --------------------------------------------------------------------------------------------
# What a strategy sees (docs/strategies.md). Built per decision; numba keeps it in registers.

View = namedtuple("View", ["load", "task_node", "task_speed", "entry", "now", "start", "params", "client", "service",
                           "task_state", "load_index", "node_load", "node_cores", "weight", "demand", "work",
                           "demand_dist", "index_map", "position"],
                 defaults=(np.zeros(0, np.int64),))     # (a View built by hand before `position` was added)
View.__doc__ = """Read-only context of one decision.

load        int32[T]  outstanding requests per task as the information model reports them
task_node   int32[T]  node of each task
task_speed  float64[T] speed of each task's node (service rate multiplier)
entry       int       the entry node of the request
now         float     simulated time, seconds
start       int       this balancer's start offset (balancer.rr_start: 0, or a random integer)
params      the strategy's declared parameters: a named tuple of float64 (`params.d`, or
            `params[0]`, in declaration order; `Strategy.param_tuple`), an empty float64
            array for a strategy without parameters
client      int       client id of the request (-1 when the strategy does not read clients)
service     int       service index of the request
task_state  float64[T, K] this balancer's per-task memory (`Strategy(task_state=K)`, zeros at
            the start; shape (0, 0) when K = 0); see docs/strategies.md
load_index  int32[2P] the min tree over this service's candidates' loads (`Strategy(load_index=
            True)`, read through `kit.least_load_indexed`; empty without it): loadindex.py
node_load   float64[N] requests in service plus background per core, per node, as the
            information model reports them (cluster.cores; empty without it): info.node_load_of
node_cores  float64[N] each node's cores (cluster.cores; empty without it)
weight      float64[T] each task's slow-start weight (balancer.slow_start: from min_weight to 1
            over the window after it joined; 1 otherwise); empty without slow start
demand      float     the request's demand, seconds of service at speed 1.0 (its service time
            at task t is demand / task_speed[t]); -1.0 in on_complete
work        float64[T] under balancer.info = "work", each candidate's unfinished work at this
            decision, seconds of demand at speed 1.0 (`Strategy(reads_work=True)`; info.fill_work);
            empty under the other information models
demand_dist float64[S, 4] each service's demand distribution: row s = (code, a, b, c), see
            lbbench/model/workload.py, `demand_descriptor` (read it as demand_dist[service])
index_map   int32[2P] which candidate each leaf of `load_index` holds: [q] the task at leaf q
            (-1: none), [P + i] the leaf of candidates[i] (empty without the index): loadindex.py
position    int64[T]  each task's position in its service's candidate list (candidates[
            position[t]] == t), -1 for a task out of the tables: a strategy's O(1) test that a
            task it remembers is still a candidate
"""


def _view_aliases(lhs, args, alias_map, arg_aliases):
    """A View aliases the run state it is built from. numba's dead-code elimination drops a
    store into an array (`view.task_state[t, j] = x`) unless the array aliases the function's
    arguments, and sees a View built in the loop as a new object: the plugin's writes into its
    per-task state, inlined into the kernel, would vanish (docs/strategies.md, "Going further")."""
    arg_aliases.add(lhs)


ir_utils.alias_func_extensions[("View", __name__)] = _view_aliases
# --------------------------------------------------------------------------------------------
# Default strategy hooks; `specialise` rebinds them per plugin.

# Compile-time switches of the specialised copies (numba drops `if FULL ...` / `if DIRECT`
# branches before typing, which keeps each copy small and quick to compile):
# FULL = False prunes failures and client retries (runs with faults or clients need FULL).
# DIRECT = True is the direct path, for runs where nothing observes in-flight requests (the
# strategy reads no loads and has no completion hook, no queue limits, every hop the same,
# in-flight requests are drained at the end; simulate decides): each completion is recorded
# when the request is dispatched, or, past a hop that requests from other entry nodes may
# overtake, when it reaches its task (a FIFO transit ring, Config.d_ring), with no heap,
# giving the same results as the heap path, faster. DIRECT = False is the heap path.
# CLOSED = True: a closed loop's users send the requests (workload.mode = closed; the chunks
# are empty): `_advance` stops at a user's timer and the kernel dispatches its request; a
# request's outcome sets its user's timer. False prunes all of it from open-loop runs. Sessions
# (workload.mode = sessions) run on the same kernel: user slots taken by arriving sessions.
FULL = True
DIRECT = False
HAS_COMPLETE = True     # False: the strategy has no on_complete hook (its call is pruned)
LOAD_INDEX = False      # True: the strategy reads the load index (its upkeep per load change)
READS_WORK = False      # True: the strategy reads view.work (filled per decision under `work`)
CLOSED = False


@njit(cache=True)
def _select(cands, view, state, rng):
    return cands[0]


@njit(cache=True)
def _on_complete(state, task, latency, now, view):
    return None


@njit(inline="always", cache=True)
def _params(values):
    """The strategy's parameters as its hooks see them (`param_maker` rebinds it per plugin):
    here the run's float64 array itself, as for a strategy without parameters."""
    return values


def param_maker(tuple_type):
    """A jitted `_params` building the named tuple `tuple_type` (`Strategy.params_type`) from the
    run's float64 parameter array (Config.params), inlined where the kernel builds a View; None:
    the default `_params` (the array)."""
    if tuple_type is None:
        return _params
    ns = {"NT": tuple_type}
    args = ", ".join(f"values[{i}]" for i in range(len(tuple_type._fields)))
    exec(f"def _params(values):\n    return NT({args})\n", ns)
    return njit(inline="always")(ns["_params"])


def _task_id(k):
    """select's answer as the kernel takes it: at compile time only, refuses an answer that is
    not an integer (a float would be truncated to a task id); the identity in the loop."""
    return k


@overload(_task_id, inline="always")
def _task_id_typed(k):
    if not isinstance(k, nbtypes.Integer):
        # not a numba error: numba would bury it under its candidate list
        raise NotATaskId(f"select returns {k}, not a task id (an integer from cands)")
    return lambda k: k


_NO_WEIGHT = np.zeros(0)


@njit(inline="always", cache=True)
def _weights(st):
    """View.weight: the slow-start weights (a kernel without failures has no task joining
    during the run, and gives a constant empty array, so that a strategy's test of its length
    folds away)."""
    if FULL:
        return st.task_weight
    return _NO_WEIGHT


_UNKNOWN = np.iinfo(np.int64).max     # Config.warm_index of a duration-bounded run before its warm-up's end

# --------------------------------------------------------------------------------------------
# Request life cycle.

@njit(inline="always", cache=True)
def _task_arrive(cfg, st, met, slot, ta):
    """The request reaches its task at time ta: fail if that task died since it was sent,
    reject on a full queue, else queue FIFO."""
    u = np.uint64(slot)
    k = np.uint64(st.slot_task[u])
    idx = st.slot_idx[u]
    if FULL and cfg.faults and (st.task_state[k] != TASK_ALIVE or st.task_inc[k] != st.slot_inc[slot]):
        # sent before its task crashed: the connection is refused when it gets there
        st.outstanding[k] -= 1
        count_local(cfg, st, st.slot_bal[slot], k, -1)
        if LOAD_INDEX:
            touch(cfg, st, np.int64(st.slot_bal[u]), np.int64(k))
        _give_up(cfg, st, met, slot, ta, np.int64(ST_FAILED))
        return
    q = cfg.task_qlimit[k]
    if q > 0 and st.present[k] >= cfg.task_workers[k] + q:
        st.outstanding[k] -= 1
        count_local(cfg, st, st.slot_bal[u], k, -1)
        if LOAD_INDEX:
            touch(cfg, st, np.int64(st.slot_bal[u]), np.int64(k))
        _give_up(cfg, st, met, slot, ta, np.int64(ST_REJECTED))
        return
    st.present[k] += 1
    if cfg.ps:
        # the node's cores are shared: the task's queue and the node's clock (cpu.py)
        ps_arrive(cfg, st, met, slot, np.int64(k), ta)
        return
    w, start, done = _place_on(cfg.task_wstart, st.worker_free, k, ta, st.slot_svc[u])
    # the worker's FIFO: only its head's completion is in the heap (docs/architecture.md,
    # "The completion heap")
    st.slot_done[u] = done
    st.slot_next[u] = -1
    tail = st.wq_tail[w]
    st.wq_tail[w] = slot
    if st.wq_head[w] < 0:
        st.wq_head[w] = slot
        st.ctr[HEAP_N] = heap_push(st.heap_key, st.heap_slot, st.ctr[HEAP_N], done, np.int32(w))
    else:
        st.slot_next[np.uint64(tail)] = slot
    if cfg.trace:
        met.tr_start[idx] = start
        met.tr_done[idx] = done


@njit(inline="always", cache=True)
def _retire(cfg, st, met, slot, done):
    """The request completes at its task at `done`; the response returns to the entry node."""
    u = np.uint64(slot)
    task = st.slot_task[u]      # (the plugin's hook gets the int32 id)
    k = np.uint64(task)
    b = np.uint64(st.slot_bal[u])
    st.present[k] -= 1
    st.outstanding[k] -= 1
    count_local(cfg, st, b, k, -1)
    t0 = st.slot_t0[u]
    latency = done + st.slot_dout[u] - t0
    idx = st.slot_idx[u]
    c, ls, lm = _record(cfg, st, met, k, cfg.task_node[k], idx, window_of(cfg.ts_inv, cfg.ts_n, t0), latency,
                        st.slot_svc[u], st.ctr[COMPLETED], st.fctr[LAT_SUM], st.fctr[LAT_MAX])
    st.ctr[COMPLETED] = c
    st.fctr[LAT_SUM] = ls
    st.fctr[LAT_MAX] = lm
    if cfg.trace:
        met.tr_status[idx] = ST_COMPLETED
        met.tr_latency[idx] = latency
    on_response(cfg, st, b, k)
    if FULL and cfg.as_svc.shape[0] > 0:      # what the autoscalers measure
        st.as_busy[cfg.task_service[k]] += st.slot_svc[u]
        st.as_done[cfg.task_service[k]] += 1
        if st.as_hist.shape[1] > 0:           # latency_p99
            st.as_hist[cfg.task_service[k], ts_bucket_of(latency)] += 1
    if LOAD_INDEX:
        touch(cfg, st, np.int64(b), np.int64(k))
    if HAS_COMPLETE:
        s = cfg.task_service[k]
        load = load_of(cfg, st, b)
        if FULL and st.ctr[RAMP_N] > 0:
            ramp(cfg, st, done)
        view = View(load, cfg.task_node, cfg.task_speed, -1, done, cfg.bal_start[b], _params(cfg.params), -1, s,
                    st.bal_task_state[b], tree_of(cfg, st, b, np.uint64(s)), node_load_of(cfg, st, b), cfg.node_cores,
                    _weights(st), -1.0, st.work, cfg.dem_dist, map_of(cfg, np.uint64(s)), cfg.position)
        _on_complete(st.bal_state[b * np.uint64(cfg.n_services) + np.uint64(s)], task, latency, done, view)
    if CLOSED:
        _user_wait_over(cfg, st, slot, done + st.slot_dout[u])
    _free_slot(st.free_slots, st.ctr, slot)



@njit(inline="always", cache=True)
def _advance(cfg, st, met, limit, ctl_limit):
    """Apply every completion, arrival at a task and control event with time <= limit, in time
    order; stale refreshes and autoscaler evaluations only up to ctl_limit (the last arrival:
    none after the run's last arrival, when the drain calls with limit past it). Returns 1 when it stopped at a client
    retry due at or before `limit`, 2 at a closed loop's user's send (the root of the control
    queue; the caller dispatches either, then calls again), else 0."""
    inf = np.inf
    while True:
        tc = st.heap_key[0] if st.ctr[HEAP_N] > 0 else inf
        if cfg.ps:
            tc = st.ps_t[1]     # the nodes' next completion (cpu.py; the heap is unused)
        tt = st.tr_key[st.ctr[TR_HEAD]] if st.ctr[TRANSIT_N] > 0 else inf     # (a heap's head is at 0)
        tq = st.ctl_t[1]        # the control queue's next event
        first = min(min(tc, tt), tq)
        if FULL and st.ctr[RT_N] > 0:
            tr = st.rt_key[0]
            if tr < first and tr <= limit:
                return 1
        if first > limit or first == inf:
            return 0
        if tc <= tt and tc <= tq:
            if cfg.ps:
                slot = ps_complete(cfg, st, met, tc)
            else:
                # the root is a worker's next completion: its FIFO's head, whose successor
                # (if any) takes its place in the heap; or a stale entry (_kill emptied that FIFO)
                w = np.uint64(st.heap_slot[0])
                slot = st.wq_head[w]
                if slot < 0 or st.slot_done[np.uint64(slot)] != tc:
                    st.ctr[HEAP_N] = heap_pop(st.heap_key, st.heap_slot, st.ctr[HEAP_N])
                    continue
                nxt = st.slot_next[np.uint64(slot)]
                st.wq_head[w] = nxt
                if nxt >= 0:
                    heap_replace(st.heap_key, st.heap_slot, st.ctr[HEAP_N], st.slot_done[np.uint64(nxt)])
                else:
                    st.wq_tail[w] = -1
                    st.ctr[HEAP_N] = heap_pop(st.heap_key, st.heap_slot, st.ctr[HEAP_N])
            _retire(cfg, st, met, slot, tc)
        elif tt <= tq:
            if cfg.has_jitter:
                slot = st.tr_slot[0]
                st.ctr[TRANSIT_N] = heap_pop(st.tr_key, st.tr_slot, st.ctr[TRANSIT_N])
            else:       # the ring (_send)
                h = st.ctr[TR_HEAD]
                slot = st.tr_slot[h]
                h += 1
                st.ctr[TR_HEAD] = h if h < st.tr_key.shape[0] else 0
                st.ctr[TRANSIT_N] -= 1
            _task_arrive(cfg, st, met, slot, tt)
        elif st.ctl_i[1] == T_REFRESH and tq > ctl_limit:
            timer_set(st, np.int64(T_REFRESH), inf)       # past the last arrival: no more refreshes
        elif FULL and cfg.as_timer0 <= st.ctl_i[1] < cfg.user_timer0 and tq > ctl_limit:
            timer_set(st, np.int64(st.ctl_i[1]), inf)     # nor autoscaler evaluations
        elif CLOSED and st.ctl_i[1] >= cfg.user_timer0:
            return 2
        elif st.ctl_i[1] == T_REFRESH:
            refresh_step(cfg, st, tq)
        elif FULL:
            control_step(cfg, st, met, tq)
        else:
            ps_background(cfg, st, tq)  # FULL = False: the only other timer (the control tree is not compiled)


@njit(inline="always", cache=True)
def _store_counters(st, cross, completed, lat_sum, lat_max):
    """Store back the counters _kernel keeps in locals (the completions' on the direct path
    only: on the heap path _retire updates them in place)."""
    st.ctr[CROSS] = cross
    if DIRECT:
        st.ctr[COMPLETED] = completed
        st.fctr[LAT_SUM] = lat_sum
        st.fctr[LAT_MAX] = lat_max


# Pieces of one request's dispatch (`_kernel`), inlined into it.

@njit(inline="always", cache=True)
def _next_retry(st):
    """The retry due first, off the retry heap: its slot and what the request carries."""
    now = st.rt_key[0]
    slot = st.rt_slot[0]
    st.ctr[RT_N] = heap_pop(st.rt_key, st.rt_slot, st.ctr[RT_N])
    return (now, slot, st.slot_idx[slot], st.slot_s[slot], st.slot_e0[slot], st.slot_dem[slot],
            st.slot_client[slot], st.slot_jin[slot], st.slot_jout[slot])


_SESSION_LONG = np.int64(1) << np.int64(62)     # a session's connection: lasts the session


@njit(inline="always", cache=True)
def _follow_connection(cfg, st, client, s, e):
    """balancer.unit = connection: the client's open connection to service s, while it lasts
    and its task is in the table, carries the request (its task, -1: none; its entry node)."""
    c = client * cfg.n_services + s
    kc = st.conn_task[c]
    if st.conn_left[c] > 0 and kc >= 0 and cfg.table_pos[kc] >= 0:
        st.conn_left[c] -= 1
        return kc, st.conn_entry[c]
    return -1, e


@njit(inline="always", cache=True)
def _open_connection(cfg, st, client, s, e, k):
    """A new keep-alive connection to task k: it carries this request and G - 1 more; in
    sessions mode (`client`: the session's user slot) every later request of the session."""
    c = client * cfg.n_services + s
    st.conn_task[c] = k
    st.conn_entry[c] = e
    if cfg.sessions:
        st.conn_left[c] = _SESSION_LONG
        return
    u = 1.0 - uniform(st.conn_rng)
    st.conn_left[c] = np.int64(math.log(u) / cfg.conn_logq) if cfg.conn_logq < 0.0 else 0


@njit(inline="always", cache=True)
def _take_slot(cfg, st, now, idx, s, e, dem, client, jin, jout):
    """A free in-flight slot for a new request (with what a retry needs, when clients retry)."""
    st.ctr[FREE_N] -= 1
    slot = st.free_slots[st.ctr[FREE_N]]
    st.slot_t0[slot] = now
    st.slot_idx[slot] = idx
    st.slot_dem[slot] = dem     # (a retry's; processor sharing's work, cpu.py)
    if FULL and cfg.retries > 0:
        st.slot_s[slot] = s
        st.slot_e0[slot] = e
        st.slot_client[slot] = client
        st.slot_jin[slot] = jin
        st.slot_jout[slot] = jout
        st.slot_try[slot] = 0
    return slot


@njit(inline="always", cache=True)
def _no_task(cfg, st, met, slot, now, idx):
    """No task of the request's service is in the tables: it fails at once."""
    if not DIRECT and slot >= 0:     # (the direct path has no slots, nor _give_up to compile)
        _give_up(cfg, st, met, slot, now, np.int64(ST_FAILED))
    else:
        _fail_direct(cfg, st, met, idx, np.int64(-1), now, now)


@inlined
def _complete_now(cfg, st, met, k, node, idx, w, now, d_in, d_out, svc, completed, lat_sum, lat_max):
    """The direct path: place the request at task k and record its completion at once. Returns
    the completion counters and the time the response is back at the entry node (a closed
    loop's user's outcome: `done + d_out`, as `_retire` computes it)."""
    start, done = _place(cfg.task_wstart, st.worker_free, k, now + d_in, svc)
    completed, lat_sum, lat_max = _record_now(cfg, st, met, k, node, idx, w, now, start, done, d_out, svc, completed,
                                              lat_sum, lat_max)
    return completed, lat_sum, lat_max, done + d_out


@inlined
def _record_now(cfg, st, met, k, node, idx, w, now, start, done, d_out, svc, completed, lat_sum, lat_max):
    """The direct path: the request sent at `now`, placed at task k from `start` to `done`,
    completes: its record."""
    latency = done + d_out - now
    completed, lat_sum, lat_max = _record(cfg, st, met, k, node, idx, w, latency, svc, completed, lat_sum, lat_max)
    if cfg.trace:
        met.tr_task[idx] = k
        met.tr_start[idx] = start
        met.tr_done[idx] = done
        met.tr_status[idx] = ST_COMPLETED
        met.tr_latency[idx] = latency
    return completed, lat_sum, lat_max


@inlined
def _fail_direct(cfg, st, met, idx, k, t, t0):
    """The direct path with crashes: the request sent at t0 to task k (-1: none chosen) fails at
    t, recorded as _give_up records it (this path has no client retries)."""
    if idx >= cfg.warm_index:
        st.ctr[FAILED] += 1
    if cfg.ts_n > 0:
        met.ts_count[window_of(cfg.ts_inv, cfg.ts_n, t0), TS_FAILED] += 1
    if cfg.trace:
        met.tr_task[idx] = k
        met.tr_status[idx] = ST_FAILED
        met.tr_done[idx] = t
        met.tr_start[idx] = np.nan


@inlined
def _complete_or_fail(cfg, st, met, k, node, idx, w, now, d_in, d_out, svc, inc, completed, lat_sum, lat_max):
    """The direct path with crashes (_Run.crashes_only): the request sent at `now` to task k
    (then at incarnation `inc`) reaches it at now + d_in. It fails there if the task crashed
    since (its incarnation moved on, or, placed at its dispatch, the task's next crash comes
    first). Placed, it fails at the task's next crash if it would complete after it: nothing
    else ends a request on this path, and a live task's next crash is known (st.kill_at), so
    its outcome is recorded now, as the heap path would record it then."""
    ta = now + d_in
    kill = st.kill_at[k]
    if st.task_inc[k] != inc or kill < ta:
        _fail_direct(cfg, st, met, idx, k, ta, now)
        return completed, lat_sum, lat_max
    start, done = _place(cfg.task_wstart, st.worker_free, k, ta, svc)
    if done > kill:
        # (a completion at the crash's own time comes first, as in the heap path's _advance)
        _fail_direct(cfg, st, met, idx, k, kill, now)
        return completed, lat_sum, lat_max
    return _record_now(cfg, st, met, k, node, idx, w, now, start, done, d_out, svc, completed, lat_sum, lat_max)


@inlined
def _direct_advance(cfg, st, met, head, tail, limit, completed, lat_sum, lat_max):
    """The direct path with crashes: the requests in transit that reach their task by `limit`
    (the ring, Config.d_ring) and the control events due by then, in time order, an arrival
    before a control event at equal times (as the heap path's _advance). A stale snapshot's
    refresh is switched off: nothing reads loads on this path. Returns the ring's new head
    and the completion counters."""
    while True:
        tq = st.ctl_t[1]
        # (nothing placed here sets a timer: tq holds while the ring's arrivals by min(tq, limit) go)
        lim = tq if tq < limit else limit
        while head < tail:
            t0 = st.slot_t0[head]
            if t0 + cfg.hop > lim:
                break
            k = np.int64(st.slot_task[head])
            completed, lat_sum, lat_max = _complete_or_fail(cfg, st, met, k, cfg.task_node[k], st.slot_idx[head],
                                                            window_of(cfg.ts_inv, cfg.ts_n, t0), t0, cfg.hop,
                                                            cfg.hop, st.slot_svc[head], st.slot_inc[head], completed,
                                                            lat_sum, lat_max)
            head += 1
        if tq > limit or tq == np.inf:
            break
        if st.ctl_i[1] == T_REFRESH:
            timer_set(st, np.int64(T_REFRESH), np.inf)
        else:
            control_step(cfg, st, met, tq)
    return head, completed, lat_sum, lat_max


@inlined
def _ring_flush(cfg, st, met, head, tail, limit, users, completed, lat_sum, lat_max):
    """The direct path with a hop (Config.d_ring): the requests in transit that reach their task
    by `limit`, placed and recorded in the order they arrive there. The transit ring lies in the
    slot pool's arrays, unused otherwise on the direct path: positions head..tail-1, each
    request's task, index, dispatch time and service time (and, in a closed loop, its user);
    every hop is cfg.hop, so the ring is in arrival order. With `users` (a closed loop; a
    constant at each call, which LLVM folds once it inlines this), only those that arrive
    before the next user's send too (the control tree's root, read again after each placement:
    a response can bring a user's next send before the ring's next arrival), each placement
    setting its user's timer (`user_outcome`). Returns the new head and the completion
    counters."""
    while head < tail:
        t0 = st.slot_t0[head]
        if t0 + cfg.hop > limit or (users and t0 + cfg.hop > st.ctl_t[1]):
            break
        k = np.int64(st.slot_task[head])
        completed, lat_sum, lat_max, resp = _complete_now(cfg, st, met, k, cfg.task_node[k], st.slot_idx[head],
                                                          window_of(cfg.ts_inv, cfg.ts_n, t0), t0, cfg.hop, cfg.hop,
                                                          st.slot_svc[head], completed, lat_sum, lat_max)
        if users:
            user_outcome(cfg, st, np.int64(st.slot_user[head]), resp)
        head += 1
    return head, completed, lat_sum, lat_max


@inlined
def _ring_keep(st, head, tail):
    """The ring's entries head..tail-1 to its start, for the next kernel call; they count as
    slots in use (so that `_Run.ensure_capacity` leaves room for a chunk's more)."""
    n = tail - head
    if head > 0:
        for j in range(n):
            st.slot_task[j] = st.slot_task[head + j]
            st.slot_idx[j] = st.slot_idx[head + j]
            st.slot_t0[j] = st.slot_t0[head + j]
            st.slot_svc[j] = st.slot_svc[head + j]
            st.slot_user[j] = st.slot_user[head + j]
            st.slot_inc[j] = st.slot_inc[head + j]
    st.ctr[TRANSIT_N] = n
    st.ctr[FREE_N] = st.slot_t0.shape[0] - n


@njit(inline="always", cache=True)
def _send(cfg, st, met, slot, k, b, now, d_in, d_out, svc, idx):
    """The heap path: the request, in its slot, leaves for task k (over the hop, if any)."""
    uk = np.uint64(k)
    st.outstanding[uk] += 1
    count_local(cfg, st, b, uk, 1)
    if LOAD_INDEX:
        touch(cfg, st, np.int64(b), np.int64(uk))
    st.slot_task[slot] = k
    st.slot_bal[slot] = b
    st.slot_dout[slot] = d_out
    st.slot_svc[slot] = svc
    if FULL and cfg.faults:
        st.slot_inc[slot] = st.task_inc[uk]
    if cfg.trace:
        met.tr_status[idx] = ST_IN_FLIGHT
    if d_in > 0.0:
        if cfg.has_jitter:
            st.ctr[TRANSIT_N] = heap_push(st.tr_key, st.tr_slot, st.ctr[TRANSIT_N], now + d_in, slot)
        else:
            # Every hop is cfg.hop and requests are sent in time order, so they reach their
            # tasks in the order sent: a FIFO ring over tr_key / tr_slot from ctr[TR_HEAD]
            # (wrapping at their end; it holds at most one entry per slot, and grow_slots
            # unwinds it), O(1) instead of a heap's O(log n).
            n = st.ctr[TRANSIT_N]
            p = st.ctr[TR_HEAD] + n
            if p >= st.tr_key.shape[0]:
                p -= st.tr_key.shape[0]
            st.tr_key[p] = now + d_in
            st.tr_slot[p] = slot
            st.ctr[TRANSIT_N] = n + 1
    else:
        _task_arrive(cfg, st, met, slot, now)


@njit(cache=True)
def _kernel(cfg, st, met, arr, first, until):
    """Dispatch one chunk of arrivals and the retries due among them, then apply events up to
    `until`.

    Returns 0, or 1 when the strategy returned a task outside its candidates (details in
    ctr[ERR_REQ], ctr[ERR_VALUE]).
    """
    n = arr.t.shape[0]
    has_client = arr.client.shape[0] > 0
    ctr = st.ctr
    # Counters only this loop writes, kept in locals (in registers, not a memory update per
    # request) and stored back on every exit; the direct path also holds the completions'.
    cross = ctr[CROSS]
    completed = ctr[COMPLETED]
    lat_sum = st.fctr[LAT_SUM]
    lat_max = st.fctr[LAT_MAX]
    head = 0                    # the direct path's transit ring (_ring_flush)
    tail = ctr[TRANSIT_N] if DIRECT else 0
    i = 0
    u = np.int64(-1)            # a closed loop's user sending
    while True:
        retry = 0
        if DIRECT and CLOSED:
            # The direct path's closed loop: the only events are the users' sends (the control
            # tree) and, with a hop, the arrivals of the requests in transit (the ring, placed
            # first at equal times, as the heap path's arrivals at a task come before control
            # events). Each request's response time is known at its placement, and with it its
            # user's next send.
            if cfg.d_ring:
                head, completed, lat_sum, lat_max = _ring_flush(cfg, st, met, head, tail, until, True, completed,
                                                                lat_sum, lat_max)
            tq = st.ctl_t[1]
            if tq > until or tq == np.inf:
                break
            if st.ctl_i[1] < cfg.user_timer0:
                # a stale snapshot's refresh: nothing reads loads on this path
                timer_set(st, np.int64(st.ctl_i[1]), np.inf)
                continue
            retry = 2
        elif not DIRECT:
            if CLOSED:
                # the users send while the run lasts; then refreshes stop at the last send
                lim = until
                ctl = cfg.t_end if ctr[REQUESTS] < cfg.n_req else st.fctr[T_LAST]
            elif i < n:
                lim = arr.t[i]
                ctl = lim
            else:
                if n > 0:
                    st.fctr[T_LAST] = arr.t[n - 1]
                lim = until
                ctl = st.fctr[T_LAST]
            retry = _advance(cfg, st, met, lim, ctl)
        follow = -1
        if FULL and retry == 1:
            # a client sends a failed or rejected request again: a new decision, same request
            now, slot, idx, s, e, dem, client, jin, jout = _next_retry(st)
            ckey = client
            measured = idx >= cfg.warm_index
            w = window_of(cfg.ts_inv, cfg.ts_n, st.slot_t0[slot])
        elif CLOSED and retry == 2:
            # a closed loop's user sends its next request (docs/model.md, "Closed loop")
            now = st.ctl_t[1]
            tu = np.int64(st.ctl_i[1])
            u = tu - cfg.user_timer0
            idx = ctr[REQUESTS]
            if idx >= cfg.n_req or now >= cfg.t_end:
                timer_set(st, tu, np.inf)       # the run sends no more: the user stops
                continue
            if u == cfg.users:
                # sessions mode: the next session arrives (docs/model.md, "Sessions")
                if not session_arrives(cfg, st, tu, now):
                    _store_counters(st, cross, completed, lat_sum, lat_max)
                    return K_SESSIONS
                continue
            p = st.usr_pos[u]
            if p + 1 >= st.usr_think.shape[1] or (cfg.warm_index == _UNKNOWN and now >= cfg.warm_time):
                # Python's turn: the user's next draws (it needs this row and the next think
                # time), or the warm-up's end (this request is the first measured)
                ctr[NEED] = u if p + 1 >= st.usr_think.shape[1] else idx
                if DIRECT and cfg.d_ring:
                    _ring_keep(st, head, tail)
                _store_counters(st, cross, completed, lat_sum, lat_max)
                return K_USER_DRAWS if p + 1 >= st.usr_think.shape[1] else K_WARM
            if not DIRECT or cfg.d_ring:
                # waiting for the outcome (the direct path sets the user's next send at the
                # placement, below, unless the request waits in the transit ring)
                timer_set(st, tu, np.inf)
            st.usr_pos[u] = p + 1
            ctr[REQUESTS] = idx + 1
            st.fctr[T_LAST] = now
            measured = idx >= cfg.warm_index
            if measured:
                if ctr[ARRIVED] == 0:
                    st.fctr[T_FIRST] = now
                ctr[ARRIVED] += 1
            w = window_of(cfg.ts_inv, cfg.ts_n, now)
            if cfg.ts_n > 0:
                met.ts_count[w, TS_ARRIVED] += 1
            s = st.usr_svc[u, p]
            e = st.usr_entry[u]
            dem = st.usr_dem[u, p]
            client = st.usr_ses[u] if cfg.sessions else u     # (a session's client id: its index)
            ckey = u        # its connections' row: the user's (a session's: its slot's)
            if cfg.sessions and p == 0:
                if measured:
                    ctr[SESSIONS] += 1
                if cfg.conn:
                    # a new session in the slot: no connection yet (docs/model.md, "Sessions")
                    for s2 in range(cfg.n_services):
                        st.conn_left[u * cfg.n_services + s2] = 0
            jin = 0.0
            jout = 0.0
            if cfg.has_jitter:
                jin = st.usr_jit[u, 2 * p]
                jout = st.usr_jit[u, 2 * p + 1]
            if cfg.conn:
                follow, e = _follow_connection(cfg, st, ckey, s, e)
            slot = np.int32(-1)
            if not DIRECT:
                slot = _take_slot(cfg, st, now, idx, s, e, dem, client, jin, jout)
                st.slot_user[slot] = u
            if cfg.trace:
                met.tr_user[idx] = client
        else:
            if i >= n:
                break
            now = arr.t[i]
            if DIRECT and FULL and cfg.faults:
                # (the crashes, the orchestrator's events and the ring's arrivals, due by now)
                head, completed, lat_sum, lat_max = _direct_advance(cfg, st, met, head, tail, now, completed, lat_sum,
                                                                    lat_max)
            elif DIRECT and cfg.d_ring:
                head, completed, lat_sum, lat_max = _ring_flush(cfg, st, met, head, tail, now, False, completed,
                                                                lat_sum, lat_max)
            idx = first + i
            measured = idx >= cfg.warm_index     # (ARRIVED and T_FIRST: counted per chunk, below)
            w = window_of(cfg.ts_inv, cfg.ts_n, now)
            if cfg.ts_n > 0:
                met.ts_count[w, TS_ARRIVED] += 1
            s = arr.service[i]
            e = arr.entry[i]
            dem = arr.demand[i]
            client = arr.client[i] if has_client else -1
            ckey = client
            jin = 0.0
            jout = 0.0
            if cfg.has_jitter:
                jin = arr.jitter[2 * i]
                jout = arr.jitter[2 * i + 1]
            if cfg.conn:
                follow, e = _follow_connection(cfg, st, client, s, e)
            slot = np.int32(-1)     # the slot arrays are int32: one type, one compiled _give_up
            if not DIRECT:
                slot = _take_slot(cfg, st, now, idx, s, e, dem, client, jin, jout)
            i += 1
        # ---- one attempt: entry node, table, decision
        if FULL and cfg.faults and st.node_up[e] == 0:
            # a down entry node: clients still reach it (and fail) until it is detected, then
            # the entry policy spreads its share over the others
            e = -1 if st.node_entry[e] != 0 else _reroute(cfg, st, idx)
            if e < 0 or st.node_up[e] == 0:
                if DIRECT:
                    _fail_direct(cfg, st, met, idx, np.int64(-1), now, now)
                else:
                    _give_up(cfg, st, met, slot, now, np.int64(ST_FAILED))
                continue
        us = np.uint64(s)
        ts = cfg.table_start[us]
        tl = cfg.table_len[us]
        b = np.uint64(0 if cfg.central else e)
        if tl == 0:
            # no task of the service in the tables: the request fails at once
            _no_task(cfg, st, met, slot, now, idx)
            if DIRECT and CLOSED:
                user_outcome(cfg, st, u, now)
            continue
        if follow >= 0:
            k = follow
        else:
            cands = _view(cfg.table, ts, tl)
            load = load_of(cfg, st, b)
            if FULL and ctr[RAMP_N] > 0:
                ramp(cfg, st, now)
            if READS_WORK and st.work.shape[0] > 0:
                fill_work(cfg, st, cands, now)
            view = View(load, cfg.task_node, cfg.task_speed, e, now, cfg.bal_start[b], _params(cfg.params), client, s,
                        st.bal_task_state[b], tree_of(cfg, st, b, us), node_load_of(cfg, st, b), cfg.node_cores,
                        _weights(st), dem, st.work, cfg.dem_dist, map_of(cfg, us), cfg.position)
            k = _task_id(_select(cands, view, st.bal_state[b * np.uint64(cfg.n_services) + us], st.bal_rng[b]))
            # The contract check: never index state with an id that is not a candidate.
            # (unsigned: a negative id wraps to a large one and fails the bound; a task in no
            # table has table_pos -1)
            uk = np.uint64(k)
            if uk >= np.uint64(cfg.task_service.shape[0]) or cfg.task_service[uk] != s or cfg.table_pos[uk] < 0:
                ctr[ERR_CODE] = 1
                ctr[ERR_REQ] = idx
                ctr[ERR_VALUE] = k
                ctr[REQUESTS] = idx + 1
                st.fctr[T_LAST] = now
                _store_counters(st, cross, completed, lat_sum, lat_max)
                return 1
            if cfg.conn and retry != 1:
                _open_connection(cfg, st, ckey, s, e, k)
        if not DIRECT and cfg.trace:
            met.tr_task[idx] = k
        uk = np.uint64(k)       # a checked candidate (or a live connection's task): no wraparound
        if FULL and cfg.faults and st.task_state[uk] != TASK_ALIVE:
            # a dead task still in the table (not detected yet): connection refused at once
            if DIRECT:
                _fail_direct(cfg, st, met, idx, np.int64(k), now, now)
            else:
                _give_up(cfg, st, met, slot, now, np.int64(ST_FAILED))
            continue
        d_in = 0.0
        d_out = 0.0
        node = cfg.task_node[uk]
        if node != e:
            d_in = cfg.hop + jin
            d_out = cfg.hop + jout
            if measured:
                cross += 1
        svc = _fdiv(dem, cfg.task_speed[uk])     # node speeds are validated positive
        if DIRECT:
            # Nothing observes in-flight state (see DIRECT): the completion is known
            # now, so record it now instead of carrying the request in the heap; or, when it
            # crosses the hop and requests from other entries may reach its task first, when
            # it reaches the task (the transit ring).
            if cfg.d_ring and d_in > 0.0:
                if CLOSED and tail == st.slot_t0.shape[0]:
                    # the ring's end reached within one call: its entries (one per user at
                    # most, and the pool has room for two per user: _Run.start_users) to its start
                    _ring_keep(st, head, tail)
                    tail -= head
                    head = 0
                st.slot_task[tail] = k
                st.slot_idx[tail] = idx
                st.slot_t0[tail] = now
                st.slot_svc[tail] = svc
                if CLOSED:
                    st.slot_user[tail] = u
                if FULL and cfg.faults:
                    st.slot_inc[tail] = st.task_inc[uk]
                tail += 1
                continue
            if FULL and cfg.faults:
                completed, lat_sum, lat_max = _complete_or_fail(cfg, st, met, np.int64(k), node, idx, w, now, d_in,
                                                                d_out, svc, st.task_inc[uk], completed, lat_sum,
                                                                lat_max)
                continue
            completed, lat_sum, lat_max, resp = _complete_now(cfg, st, met, k, node, idx, w, now, d_in, d_out, svc,
                                                              completed, lat_sum, lat_max)
            if CLOSED:
                user_outcome(cfg, st, u, resp)
            continue
        _send(cfg, st, met, slot, k, b, now, d_in, d_out, svc, idx)
    if DIRECT and FULL and cfg.faults:
        head, completed, lat_sum, lat_max = _direct_advance(cfg, st, met, head, tail, until, completed, lat_sum, lat_max)
        if cfg.d_ring:
            _ring_keep(st, head, tail)
    elif DIRECT and cfg.d_ring:
        head, completed, lat_sum, lat_max = _ring_flush(cfg, st, met, head, tail, until, CLOSED, completed, lat_sum,
                                                        lat_max)
        _ring_keep(st, head, tail)
    _store_counters(st, cross, completed, lat_sum, lat_max)
    if n > 0:
        ctr[REQUESTS] = first + n
        st.fctr[T_LAST] = arr.t[n - 1]
        # the chunk's measured arrivals: indices warm_index.. (a retry is not an arrival)
        lo = max(first, cfg.warm_index)
        if first + n > lo:
            if ctr[ARRIVED] == 0:
                st.fctr[T_FIRST] = arr.t[lo - first]
            ctr[ARRIVED] += first + n - lo
    return 0


# The functions `specialise` copies per strategy: those that read the hooks or the switches.
KERNEL_FUNCS = ("_weights", "_task_arrive", "_retire", "_advance", "_store_counters", "_take_slot", "_no_task", "_send", "_kernel")
# Of those, the ones that read only the switches: compiled once per set of switches and shared by
# every strategy's kernel (specialise._shared); and the ones that read only the switches when
# the strategy has no on_complete hook.
SHARED_FUNCS = ("_task_arrive", "_store_counters", "_take_slot", "_no_task", "_send")
HOOKLESS_FUNCS = ("_retire", "_advance")
