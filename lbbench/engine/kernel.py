"""The compiled dispatch loop (DESIGN section 2).

One numba kernel processes a chunk of arrivals. Before each arrival it applies, in time order,
every event due by then: completions (retired from a min-heap keyed by completion time),
arrivals at a task after the overlay hop (a second heap), control events (stale-snapshot
refreshes; the fault schedule and the orchestrator's detections, placements and joins) and
client retries (a third heap). Ties are ordered by kind: completion < arrival at task <
control < retry < new arrival, so a server freed at time t is free for a request arriving at t.

Then it asks the strategy for a task, checks the answer (a task of this service in the
balancer's table, else the run stops with an error naming the plugin), and places the request
in the task's FIFO queue in front of its `workers` slots: start = max(arrival at the task,
earliest free worker), completion = start + demand / speed. Memory is O(tasks + in-flight +
histogram): in-flight requests live in a slot pool that grows only with concurrency.

Strategy hooks are module globals of this file (`_select`, `_on_complete`). `specialise`
makes a copy of the kernel functions whose globals bind a plugin's functions instead, with
its own cache name, so numba inlines the plugin into the loop and caches the result on disk
per strategy (a dispatcher passed as an argument is not reusable from the cache across
processes).
"""
from __future__ import annotations

import hashlib
import math
import types
from collections import namedtuple
from pathlib import Path

import numpy as np
from numba import njit
from numba import types as nbtypes
from numba.core import ir_utils
from numba.extending import intrinsic, overload

from ..errors import NotATaskId
from ..rng import hash_uniform, uniform

# --------------------------------------------------------------------------------------------
# What a strategy sees (DESIGN 3). Built per decision; numba keeps it in registers.

View = namedtuple("View", ["load", "task_node", "task_speed", "entry", "now", "start", "params", "client", "service",
                           "task_state"])
View.__doc__ = """Read-only context of one decision.

load        int64[T]  outstanding requests per task as the information model reports them
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
"""



def _view_aliases(lhs, args, alias_map, arg_aliases):
    """A View aliases the run state it is built from. numba's dead-code elimination drops a
    store into an array (`view.task_state[t, j] = x`) unless the array aliases the function's
    arguments, and sees a View built in the loop as a new object: the plugin's writes into its
    per-task state, inlined into the kernel, would vanish (docs/strategies.md, "Memory")."""
    arg_aliases.add(lhs)


ir_utils.alias_func_extensions[("View", __name__)] = _view_aliases

# Static configuration of a run (never written by the kernel).
Config = namedtuple("Config", [
    "task_node", "task_service", "task_speed", "task_workers", "task_wstart", "task_qlimit",
    "table", "table_start", "table_len", "table_pos", "params", "bal_start",
    "n_services", "central", "info", "stale_period", "hop", "has_jitter", "warm_index", "trace",
    "ts_window", "ts_inv", "ts_n", "conn", "conn_logq",
    "faults", "f_time", "f_kind", "f_target", "f_count", "node_speed",
    "task_detect", "node_detect", "restart_delay", "startup", "entry_key",
    "retries", "backoff", "timeout", "retry_key",
])
Config.__doc__ = """Static configuration of a run.

conn: 1 for connection-level balancing (balancer.unit = connection): a client's request
follows its open keep-alive connection (same entry node, same task) while it lasts; a new
connection is balanced and lasts 1 + Geometric requests (conn_logq = log(1 - 1/keepalive)).


Failures (faults = 1): f_time/f_kind/f_target/f_count is the run's fault schedule, sorted by
time (F_* kinds). task_node, task_speed and the table arrays change during the run
(replacements reuse their task slot on a new node). retries/backoff/timeout: the clients.
entry_key, retry_key: hash keys of the entry re-routing and the retry backoff jitter.
"""

# Mutable state, resumable across chunks.
State = namedtuple("State", [
    "worker_free", "outstanding", "local_out", "snapshot", "present",
    "heap_key", "heap_slot", "tr_key", "tr_slot",
    "slot_task", "slot_bal", "slot_t0", "slot_dout", "slot_svc", "slot_idx", "free_slots",
    "bal_state", "bal_rng", "ctr", "fctr",
    "conn_task", "conn_left", "conn_entry", "conn_rng",
    "task_state", "task_inc", "task_ev_t", "task_ev_kind", "task_restarts",
    "node_up", "node_entry", "node_drained", "node_ev_t",
    "slot_inc", "slot_s", "slot_e0", "slot_dem", "slot_client", "slot_jin", "slot_jout", "slot_try",
    "rt_key", "rt_slot", "bal_task_state",
])
State.__doc__ = """Mutable state, resumable across chunks.

task_state   int8[T]: TASK_DEAD, TASK_ALIVE or TASK_STARTING (placed, not yet healthy)
task_inc     int64[T]: incarnation, bumped at every crash; a request carries the incarnation it
             was sent to (slot_inc) and fails when it reaches a task whose incarnation differs
task_ev_t, task_ev_kind  the task slot's one pending orchestrator event (EV_*; time inf: none,
             or EV_PLACE waiting for an eligible node)
node_up, node_entry, node_drained  int8[N]: running; still used by the entry policy (cleared
             node_detect after a node goes down); given no tasks
node_ev_t    float64[N]: pending detection of a down node (inf: none)
slot_*       an in-flight request: task, balancer, first arrival t0, return hop, service time,
             index; with retries also its service, drawn entry, demand, client, hop jitter and
             attempt number, so that it can be sent again
rt_key/rt_slot  the retry heap (time of the next attempt)
bal_task_state  float64[n_bal, T, K]: the strategy's per-task memory, one (T, K) block per
             balancer (`Strategy(task_state=K)`; (n_bal, 0, 0) when K = 0), seen as
             View.task_state (docs/strategies.md)
"""

# Streaming metrics and the optional per-request trace.
Metrics = namedtuple("Metrics", [
    "hist", "task_served", "task_busy",
    "tr_task", "tr_start", "tr_done", "tr_latency", "tr_status", "tr_tries",
    "ts_count", "ts_lat_sum", "ts_hist", "ts_node_busy",
])
Metrics.__doc__ = """Streaming metrics.

hist          int64[N_BUCKETS] latency histogram of measured completions
task_served   int64[T], task_busy float64[T] (seconds of service of measured requests)
tr_*          per-request trace (length = requests when tracing, else 0)
ts_count      int64[W, 6]: per window of (first) arrival time: arrived, completed, rejected,
              failed, retried (attempts re-sent), timed_out
ts_lat_sum    float64[W], ts_hist int64[W, TS_BUCKETS] (coarse latency histogram)
ts_node_busy  float64[W, N]: service seconds given by each node to requests of the window
Windows cover all requests (warm-up included), indexed by arrival time // ts_window and
clamped to the last window.
"""
TS_ARRIVED, TS_COMPLETED, TS_REJECTED, TS_FAILED, TS_RETRIED, TS_TIMED_OUT, TS_N = range(7)

Arrivals = namedtuple("Arrivals", ["t", "service", "demand", "entry", "client", "jitter"])

INFO_GLOBAL, INFO_LOCAL, INFO_STALE = 0, 1, 2

# ctr (int64) fields
(ARRIVED, COMPLETED, REJECTED, FAILED, CROSS, HEAP_N, TRANSIT_N, FREE_N, ERR_CODE, ERR_REQ, ERR_VALUE, REQUESTS,
 IN_FLIGHT_M, RETRIED, TIMED_OUT, RT_N, FAULT_I, CRASHES, N_CTR) = range(19)
# fctr (float64) fields
LAT_SUM, LAT_MAX, T_FIRST, T_LAST, NEXT_REFRESH, NEXT_FAULT, N_FCTR = range(7)

# Fault schedule kinds (Config.f_kind): the table in faults.py
from ..model.faults import F_NODE_DOWN, F_NODE_DRAIN, F_NODE_UP, F_SERVICE_CRASH, F_TASK_CRASH  # noqa: E402
# Task slot states and orchestrator events
TASK_DEAD, TASK_ALIVE, TASK_STARTING = 0, 1, 2
EV_NONE, EV_DETECT, EV_PLACE, EV_JOIN = 0, 1, 2, 3

# Trace status codes
ST_COMPLETED, ST_REJECTED, ST_FAILED, ST_IN_FLIGHT = 0, 1, 2, 3

# Latency histogram: 64 linear sub-buckets per power of two (midpoint error < 0.8%).
SUB_BITS = 6
SUB = 1 << SUB_BITS
EMIN = -40
EMAX = 40
N_BUCKETS = (EMAX - EMIN) * SUB


# Time-series histograms: 8 sub-buckets per power of two (midpoint error < 6.3%).
TS_SUB_BITS = 3
TS_SUB = 1 << TS_SUB_BITS
TS_BUCKETS = (EMAX - EMIN) * TS_SUB


def bucket_edges(sub: int = SUB) -> np.ndarray:
    """Lower edges of every bucket, plus the final upper edge (N_BUCKETS + 1 values)."""
    e = np.arange(EMIN, EMAX, dtype=np.float64)
    m = 0.5 + np.arange(sub, dtype=np.float64) / (2 * sub)
    lo = (m[None, :] * np.exp2(e)[:, None]).ravel()
    return np.append(lo, 2.0**EMAX)


@intrinsic
def _view(typingctx, a, start, n):
    """a[start:start + n] of a 1-d C array, for 0 <= start <= start + n <= len(a) (the caller
    knows): the same view as the slice, without the slice's clamping of its bounds."""
    if isinstance(a, nbtypes.Array) and a.ndim == 1 and a.layout == "C":
        def codegen(context, builder, signature, args):
            from numba.core.imputils import impl_ret_borrowed
            from numba.np.arrayobj import make_array, populate_array
            aryty = signature.args[0]
            src = make_array(aryty)(context, builder, args[0])
            st = context.cast(builder, args[1], signature.args[1], nbtypes.intp)
            ln = context.cast(builder, args[2], signature.args[2], nbtypes.intp)
            out = make_array(aryty)(context, builder)
            populate_array(out, data=builder.gep(src.data, [st]), shape=[ln], strides=[src.itemsize],
                           itemsize=src.itemsize, meminfo=src.meminfo, parent=src.parent)
            return impl_ret_borrowed(context, builder, aryty, out._getvalue())
        return a(a, start, n), codegen
    return None


@intrinsic
def _f64_bits(typingctx, x):
    """The IEEE-754 bits of a float64 as an int64 (a register move, no call)."""
    if isinstance(x, nbtypes.Float) and x.bitwidth == 64:
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(nbtypes.int64))
        return nbtypes.int64(nbtypes.float64), codegen
    return None


@intrinsic
def _fdiv(typingctx, x, y):
    """x / y of two float64 without numba's test for a zero divisor (a compare and a branch
    per division), for a divisor the caller knows to be nonzero: the same IEEE division."""
    if all(isinstance(v, nbtypes.Float) and v.bitwidth == 64 for v in (x, y)):
        def codegen(context, builder, signature, args):
            return builder.fdiv(args[0], args[1])
        return nbtypes.float64(nbtypes.float64, nbtypes.float64), codegen
    return None


# For x = m * 2**e with m in [0.5, 1) (frexp), the IEEE exponent field is e + 1022 and the top
# bits of the fraction are (m - 0.5) * 2 * SUB: a bucket index is two shifts and a mask.

@njit(inline="always", cache=True)
def bucket_of(x):
    if x <= 0.0:
        return 0
    bits = _f64_bits(x)
    b = (((bits >> 52) & 0x7FF) - 1022 - EMIN) * SUB + ((bits >> (52 - SUB_BITS)) & (SUB - 1))
    if b < 0:
        return 0
    if b >= N_BUCKETS:
        return N_BUCKETS - 1
    return b


@njit(inline="always", cache=True)
def ts_bucket_of(x):
    if x <= 0.0:
        return 0
    bits = _f64_bits(x)
    b = (((bits >> 52) & 0x7FF) - 1022 - EMIN) * TS_SUB + ((bits >> (52 - TS_SUB_BITS)) & (TS_SUB - 1))
    if b < 0:
        return 0
    if b >= TS_BUCKETS:
        return TS_BUCKETS - 1
    return b


# Indices that are non-negative by construction are cast to np.uint64 on the hot path: numba
# indexes with an unsigned integer without its negative-index fix-up (three instructions and a
# load per access). Mind numba's typing: uint64 with a signed integer gives float64, so the
# constants mixed with them are cast too.

@njit(inline="always", cache=True)
def window_of(ts_inv, ts_n, t0):
    """The time-series window of a request that arrived at t0 (meaningful when ts_n > 0)."""
    w = int(t0 * ts_inv)
    if w >= ts_n:
        w = ts_n - 1
    return np.uint64(w)


# --------------------------------------------------------------------------------------------
# 4-ary min-heaps on (key, slot) pairs, sift with a hole. Fewer levels than a binary heap and
# a branch-light pick of the smallest child; keys past the end are +inf (HEAP_PAD slots), so
# the children of a node can be read without bounds tests.
# They are compiled once, as functions of their own (cached on disk, shared by every strategy's
# kernel), and LLVM inlines them into the kernel: inlining them in numba's IR instead made every
# strategy's kernel type and lower them again (2 s of a heap kernel's compile), for the same
# machine code.

HEAP_PAD = 4


@njit(cache=True)
def heap_push(key, slot, n, k, s):
    i = n
    while i > 0:
        p = (i - 1) >> 2
        if key[p] <= k:
            break
        key[i] = key[p]
        slot[i] = slot[p]
        i = p
    key[i] = k
    slot[i] = s
    return n + 1


@njit(cache=True)
def _sift_down(key, slot, n, i):
    """Move the pair at i down to its place among the first n (keys from n on are +inf)."""
    k = key[i]
    s = slot[i]
    while True:
        c = 4 * i + 1
        if c >= n:
            break
        m = c
        km = key[c]
        k1 = key[c + 1]
        if k1 < km:
            m = c + 1
            km = k1
        k2 = key[c + 2]
        if k2 < km:
            m = c + 2
            km = k2
        k3 = key[c + 3]
        if k3 < km:
            m = c + 3
            km = k3
        if km >= k:
            break
        key[i] = km
        slot[i] = slot[m]
        i = m
    key[i] = k
    slot[i] = s


@njit(cache=True)
def heap_pop(key, slot, n):
    """Remove the root; returns the new size. The caller read key[0], slot[0] first."""
    n -= 1
    key[0] = key[n]
    slot[0] = slot[n]
    key[n] = np.inf
    _sift_down(key, slot, n, 0)
    return n


# --------------------------------------------------------------------------------------------
# Default strategy hooks; `specialise` rebinds them per plugin.

# Compile-time switches of the specialised copies (numba drops `if FULL ...` / `if DIRECT`
# branches before typing, which keeps each copy small and quick to compile):
# FULL = False prunes failures and client retries (runs with faults or clients need FULL).
# DIRECT = True is the direct path, for runs where nothing observes in-flight requests (the
# strategy reads no loads and has no completion hook, no queue limits, every task sees its
# requests in dispatch order, in-flight requests are drained at the end; simulate decides):
# each completion is recorded when the request is dispatched, with no heap, giving the same
# results as the heap path, faster. DIRECT = False is the heap path.
FULL = True
DIRECT = False
HAS_COMPLETE = True     # False: the strategy has no on_complete hook (its call is pruned)


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


# --------------------------------------------------------------------------------------------
# Request life cycle.

@njit(inline="always", cache=True)
def _free_slot(free_slots, ctr, slot):
    free_slots[ctr[FREE_N]] = slot
    ctr[FREE_N] += 1


@njit(inline="always", cache=True)
def _place(wstart, worker_free, k, ta, svc):
    """FIFO in front of the task's workers: the request starts when it has arrived (ta) and the
    earliest-free worker is free (lowest index on a tie). Returns (start, completion)."""
    k = np.uint64(k)
    w0 = np.uint64(wstart[k])
    best = w0
    w1 = np.uint64(wstart[k + np.uint64(1)])
    if w1 - w0 > np.uint64(1):
        for w in range(w0 + np.uint64(1), w1):
            if worker_free[w] < worker_free[best]:
                best = w
    start = worker_free[best]
    if ta > start:
        start = ta
    done = start + svc
    worker_free[best] = done
    return start, done


@njit(inline="always", cache=True)
def _record(cfg, st, met, k, node, idx, w, latency, svc, completed, lat_sum, lat_max):
    """Streaming metrics of one completed request at task k on `node`; w: the time-series
    window of its (first) arrival (window_of). The run's completed count, latency sum and
    maximum come in and go out as values (the direct path keeps them in registers; see
    _kernel). (The trace is the caller's.)"""
    k = np.uint64(k)
    b = bucket_of(latency)      # the coarse time-series bucket is the same, 3 bits coarser
    if cfg.ts_n > 0:
        met.ts_count[w, TS_COMPLETED] += 1
        met.ts_lat_sum[w] += latency
        met.ts_hist[w, b >> (SUB_BITS - TS_SUB_BITS)] += 1
        met.ts_node_busy[w, np.uint64(node)] += svc
    if idx >= cfg.warm_index:
        completed += 1
        lat_sum += latency
        if latency > lat_max:
            lat_max = latency
        met.hist[b] += 1
        met.task_served[k] += 1
        met.task_busy[k] += svc
    if cfg.timeout > 0.0 and latency > cfg.timeout:     # slower than the clients wait: timed out
        if cfg.ts_n > 0:
            met.ts_count[w, TS_TIMED_OUT] += 1
        if idx >= cfg.warm_index:
            st.ctr[TIMED_OUT] += 1
    return completed, lat_sum, lat_max


# The out-of-line functions below are called only from compiled code: `no_cpython_wrapper`
# spares numba a Python entry point that would unbox the whole run state (about half of their
# compile time on a first run).
@njit(cache=True, no_cpython_wrapper=True)
def _give_up(cfg, st, met, slot, t, status):
    """The attempt held in `slot` failed (ST_FAILED) or was rejected (ST_REJECTED) at time t.
    While the client has retries left it sends the request again after a backoff (exponential,
    with jitter hashed from the request and attempt); otherwise that is the request's outcome."""
    idx = st.slot_idx[slot]
    if cfg.retries > 0:
        a = st.slot_try[slot]
        if a < cfg.retries:
            st.slot_try[slot] = a + 1
            if idx >= cfg.warm_index:
                st.ctr[RETRIED] += 1
            if cfg.ts_n > 0:
                met.ts_count[window_of(cfg.ts_inv, cfg.ts_n, st.slot_t0[slot]), TS_RETRIED] += 1
            if cfg.trace:
                met.tr_tries[idx] = a + 1
                met.tr_status[idx] = ST_IN_FLIGHT
            delay = cfg.backoff * (2.0 ** a) * (0.5 + 0.5 * hash_uniform(cfg.retry_key, idx, a))
            st.ctr[RT_N] = heap_push(st.rt_key, st.rt_slot, st.ctr[RT_N], t + delay, slot)
            return
    measured = idx >= cfg.warm_index
    if status == ST_REJECTED:
        if measured:
            st.ctr[REJECTED] += 1
        if cfg.ts_n > 0:
            met.ts_count[window_of(cfg.ts_inv, cfg.ts_n, st.slot_t0[slot]), TS_REJECTED] += 1
    else:
        if measured:
            st.ctr[FAILED] += 1
        if cfg.ts_n > 0:
            met.ts_count[window_of(cfg.ts_inv, cfg.ts_n, st.slot_t0[slot]), TS_FAILED] += 1
    if cfg.trace:
        met.tr_status[idx] = status
        met.tr_done[idx] = t
        met.tr_start[idx] = np.nan
    _free_slot(st.free_slots, st.ctr, slot)


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
        st.local_out[st.slot_bal[slot], k] -= 1
        _give_up(cfg, st, met, slot, ta, np.int64(ST_FAILED))
        return
    q = cfg.task_qlimit[k]
    if q > 0 and st.present[k] >= cfg.task_workers[k] + q:
        st.outstanding[k] -= 1
        st.local_out[st.slot_bal[u], k] -= 1
        _give_up(cfg, st, met, slot, ta, np.int64(ST_REJECTED))
        return
    st.present[k] += 1
    start, done = _place(cfg.task_wstart, st.worker_free, k, ta, st.slot_svc[u])
    st.ctr[HEAP_N] = heap_push(st.heap_key, st.heap_slot, st.ctr[HEAP_N], done, slot)
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
    st.local_out[b, k] -= 1
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
    if HAS_COMPLETE:
        s = cfg.task_service[k]
        load = st.outstanding if cfg.info == INFO_GLOBAL else (st.local_out[b] if cfg.info == INFO_LOCAL else st.snapshot)
        view = View(load, cfg.task_node, cfg.task_speed, -1, done, cfg.bal_start[b], _params(cfg.params), -1, s,
                    st.bal_task_state[b])
        _on_complete(st.bal_state[b * np.uint64(cfg.n_services) + np.uint64(s)], task, latency, done, view)
    _free_slot(st.free_slots, st.ctr, slot)


# --------------------------------------------------------------------------------------------
# Failures and recovery (docs/model.md, "Failures"). Control events, rare: plain loops over
# tasks and nodes, not inlined into the dispatch loop.

@njit(cache=True, no_cpython_wrapper=True)
def _crash(cfg, st, met, k, t, detect):
    """Task slot k's running (or starting) task dies at t; the orchestrator notices at
    t + detect. Its queued and in-service requests fail now; requests on their way to it fail
    when they arrive (their incarnation is stale)."""
    state = st.task_state[k]
    if state == TASK_DEAD:
        return
    st.task_state[k] = TASK_DEAD
    st.task_inc[k] += 1
    st.ctr[CRASHES] += 1
    if state == TASK_ALIVE:
        n = st.ctr[HEAP_N]
        m = 0
        for j in range(n):
            slot = st.heap_slot[j]
            if st.slot_task[slot] == k:
                st.present[k] -= 1
                st.outstanding[k] -= 1
                st.local_out[st.slot_bal[slot], k] -= 1
                _give_up(cfg, st, met, slot, t, np.int64(ST_FAILED))
            else:
                st.heap_key[m] = st.heap_key[j]
                st.heap_slot[m] = slot
                m += 1
        for j in range(m, n):
            st.heap_key[j] = np.inf
        st.ctr[HEAP_N] = m
        if m > 1:
            for i in range((m - 2) // 4, -1, -1):
                _sift_down(st.heap_key, st.heap_slot, m, i)
    st.task_ev_t[k] = t + detect
    st.task_ev_kind[k] = EV_DETECT


@njit(inline="always", cache=True)
def _table_remove(cfg, k):
    """Take task k out of its service's table, keeping the others' order."""
    p = cfg.table_pos[k]
    if p < 0:
        return
    s = cfg.task_service[k]
    base = cfg.table_start[s]
    n = cfg.table_len[s]
    for j in range(p, n - 1):
        x = cfg.table[base + j + 1]
        cfg.table[base + j] = x
        cfg.table_pos[x] = j
    cfg.table_len[s] = n - 1
    cfg.table_pos[k] = -1


@njit(inline="always", cache=True)
def _table_add(cfg, k):
    s = cfg.task_service[k]
    n = cfg.table_len[s]
    cfg.table[cfg.table_start[s] + n] = k
    cfg.table_pos[k] = n
    cfg.table_len[s] = n + 1


@njit(cache=True, no_cpython_wrapper=True)
def spread_node(cfg, st, s):
    """Swarm's spread rule over the up, non-drained nodes: fewest live or starting tasks of
    service s, then fewest overall, then the lowest id; -1 if no node is eligible."""
    best = -1
    bs = 0
    bt = 0
    for n in range(cfg.node_speed.shape[0]):
        if st.node_up[n] == 0 or st.node_drained[n] != 0:
            continue
        cs = 0
        ct = 0
        for k in range(cfg.task_node.shape[0]):
            if st.task_state[k] != TASK_DEAD and cfg.task_node[k] == n:
                ct += 1
                if cfg.task_service[k] == s:
                    cs += 1
        if best < 0 or cs < bs or (cs == bs and ct < bt):
            best = n
            bs = cs
            bt = ct
    return best


@njit(cache=True, no_cpython_wrapper=True)
def _next_fault(cfg, st):
    """Time of the next scheduled fault or orchestrator event (inf: none)."""
    t = np.inf
    i = st.ctr[FAULT_I]
    if i < cfg.f_time.shape[0]:
        t = cfg.f_time[i]
    for n in range(st.node_ev_t.shape[0]):
        if st.node_ev_t[n] < t:
            t = st.node_ev_t[n]
    for k in range(st.task_ev_t.shape[0]):
        if st.task_ev_t[k] < t:
            t = st.task_ev_t[k]
    return t


@njit(cache=True, no_cpython_wrapper=True)
def _fault_step(cfg, st, met, t):
    """Apply the one fault or orchestrator event due at t. At equal times: the schedule (in
    its order), then node detections (lowest node first), then task events (lowest task)."""
    T = cfg.task_node.shape[0]
    i = st.ctr[FAULT_I]
    if i < cfg.f_time.shape[0] and cfg.f_time[i] == t:
        st.ctr[FAULT_I] = i + 1
        kind = cfg.f_kind[i]
        x = cfg.f_target[i]
        if kind == F_TASK_CRASH:
            if st.task_state[x] == TASK_ALIVE:
                _crash(cfg, st, met, x, t, cfg.task_detect)
        elif kind == F_SERVICE_CRASH:
            left = cfg.f_count[i]
            for k in range(T):
                if left == 0:
                    break
                if cfg.task_service[k] == x and st.task_state[k] == TASK_ALIVE:
                    _crash(cfg, st, met, k, t, cfg.task_detect)
                    left -= 1
        elif kind == F_NODE_DOWN:
            if st.node_up[x] != 0:
                st.node_up[x] = 0
                st.node_ev_t[x] = t + cfg.node_detect
                for k in range(T):
                    if cfg.task_node[k] == x and st.task_state[k] != TASK_DEAD:
                        _crash(cfg, st, met, k, t, cfg.node_detect)
        elif kind == F_NODE_UP:
            if st.node_up[x] == 0:
                st.node_up[x] = 1
                st.node_entry[x] = 1
                st.node_ev_t[x] = np.inf
                for k in range(T):   # replacements waiting for an eligible node
                    if st.task_ev_kind[k] == EV_PLACE and st.task_ev_t[k] == np.inf:
                        st.task_ev_t[k] = t
        elif kind == F_NODE_DRAIN:     # the manager stops the node's tasks itself (no detection delay)
            st.node_drained[x] = 1
            for k in range(T):
                if cfg.task_node[k] == x and st.task_state[k] != TASK_DEAD:
                    _crash(cfg, st, met, k, t, 0.0)
        else:
            raise ValueError("a fault kind the engine has no handler for (faults.FAULT_KINDS)")
    else:
        done = False
        for n in range(st.node_ev_t.shape[0]):
            if st.node_ev_t[n] == t:
                # the heartbeat noticed: the entry policy stops sending clients there
                st.node_ev_t[n] = np.inf
                st.node_entry[n] = 0
                done = True
                break
        if not done:
            for k in range(T):
                if st.task_ev_t[k] != t:
                    continue
                ev = st.task_ev_kind[k]
                if ev == EV_DETECT:
                    _table_remove(cfg, k)
                    st.task_ev_t[k] = t + cfg.restart_delay
                    st.task_ev_kind[k] = EV_PLACE
                elif ev == EV_PLACE:
                    n = spread_node(cfg, st, cfg.task_service[k])
                    if n < 0:
                        st.task_ev_t[k] = np.inf     # placed when a node comes up
                    else:
                        cfg.task_node[k] = n
                        cfg.task_speed[k] = cfg.node_speed[n]
                        st.task_state[k] = TASK_STARTING
                        st.task_ev_t[k] = t + cfg.startup
                        st.task_ev_kind[k] = EV_JOIN
                else:   # EV_JOIN: healthy, into the tables, with idle workers
                    st.task_state[k] = TASK_ALIVE
                    for w in range(cfg.task_wstart[k], cfg.task_wstart[k + 1]):
                        st.worker_free[w] = t
                    _table_add(cfg, k)
                    st.task_restarts[k] += 1
                    st.task_ev_t[k] = np.inf
                    st.task_ev_kind[k] = EV_NONE
                break
    st.fctr[NEXT_FAULT] = _next_fault(cfg, st)


@njit(cache=True, no_cpython_wrapper=True)
def _reroute(cfg, st, idx):
    """Entry policy once a down node is detected: its clients go to the nodes still in the
    entry policy, the request's index hashed to one of them (-1: none left)."""
    cnt = 0
    for n in range(st.node_entry.shape[0]):
        cnt += st.node_entry[n]
    if cnt == 0:
        return -1
    j = np.int64(hash_uniform(cfg.entry_key, idx, 0) * cnt)
    for n in range(st.node_entry.shape[0]):
        if st.node_entry[n] != 0:
            if j == 0:
                return n
            j -= 1
    return -1


@njit(inline="always", cache=True)
def _advance(cfg, st, met, limit, ctl_limit):
    """Apply every completion, arrival at a task and control event with time <= limit (stale
    refreshes only up to ctl_limit), in time order. Returns True when it stopped at a client
    retry due at or before `limit` (the caller dispatches it, then calls again)."""
    inf = np.inf
    while True:
        tc = st.heap_key[0] if st.ctr[HEAP_N] > 0 else inf
        tt = st.tr_key[0] if st.ctr[TRANSIT_N] > 0 else inf
        tk = st.fctr[NEXT_REFRESH]
        if tk > ctl_limit:
            tk = inf
        tf = inf
        if FULL:
            tf = st.fctr[NEXT_FAULT]
        first = min(min(tc, tt), min(tk, tf))
        if FULL and st.ctr[RT_N] > 0:
            tr = st.rt_key[0]
            if tr < first and tr <= limit:
                return True
        if first > limit or first == inf:
            return False
        if tc <= tt and tc <= tk and tc <= tf:
            slot = st.heap_slot[0]
            st.ctr[HEAP_N] = heap_pop(st.heap_key, st.heap_slot, st.ctr[HEAP_N])
            _retire(cfg, st, met, slot, tc)
        elif tt <= tk and tt <= tf:
            slot = st.tr_slot[0]
            st.ctr[TRANSIT_N] = heap_pop(st.tr_key, st.tr_slot, st.ctr[TRANSIT_N])
            _task_arrive(cfg, st, met, slot, tt)
        elif tk <= tf:
            # stale information: a fresh global snapshot every stale_period seconds
            for j in range(st.snapshot.shape[0]):
                st.snapshot[j] = st.outstanding[j]
            st.fctr[NEXT_REFRESH] = tk + cfg.stale_period
        elif FULL:
            _fault_step(cfg, st, met, tf)


@njit(inline="always", cache=True)
def _store_counters(st, cross, completed, lat_sum, lat_max):
    """Store back the counters _kernel keeps in locals (the completions' on the direct path
    only: on the heap path _retire updates them in place)."""
    st.ctr[CROSS] = cross
    if DIRECT:
        st.ctr[COMPLETED] = completed
        st.fctr[LAT_SUM] = lat_sum
        st.fctr[LAT_MAX] = lat_max


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
    i = 0
    while True:
        retry = False
        if not DIRECT:
            if i < n:
                lim = arr.t[i]
                ctl = lim
            else:
                if n > 0:
                    st.fctr[T_LAST] = arr.t[n - 1]
                lim = until
                ctl = st.fctr[T_LAST]
            retry = _advance(cfg, st, met, lim, ctl)
        follow = -1
        if FULL and retry:
            # a client sends a failed or rejected request again: a new decision, same request
            now = st.rt_key[0]
            slot = st.rt_slot[0]
            ctr[RT_N] = heap_pop(st.rt_key, st.rt_slot, ctr[RT_N])
            idx = st.slot_idx[slot]
            measured = idx >= cfg.warm_index
            s = st.slot_s[slot]
            e = st.slot_e0[slot]
            dem = st.slot_dem[slot]
            client = st.slot_client[slot]
            jin = st.slot_jin[slot]
            jout = st.slot_jout[slot]
            w = window_of(cfg.ts_inv, cfg.ts_n, st.slot_t0[slot])
        else:
            if i >= n:
                break
            now = arr.t[i]
            idx = first + i
            measured = idx >= cfg.warm_index     # (ARRIVED and T_FIRST: counted per chunk, below)
            w = window_of(cfg.ts_inv, cfg.ts_n, now)
            if cfg.ts_n > 0:
                met.ts_count[w, TS_ARRIVED] += 1
            s = arr.service[i]
            e = arr.entry[i]
            dem = arr.demand[i]
            client = arr.client[i] if has_client else -1
            jin = 0.0
            jout = 0.0
            if cfg.has_jitter:
                jin = arr.jitter[2 * i]
                jout = arr.jitter[2 * i + 1]
            if cfg.conn:
                c = client * cfg.n_services + s
                kc = st.conn_task[c]
                if st.conn_left[c] > 0 and kc >= 0 and cfg.table_pos[kc] >= 0 and cfg.table_pos[kc] < cfg.table_len[s]:
                    follow = kc
                    e = st.conn_entry[c]
                    st.conn_left[c] -= 1
            slot = np.int32(-1)     # the slot arrays are int32: one type, one compiled _give_up
            if not DIRECT:
                ctr[FREE_N] -= 1
                slot = st.free_slots[ctr[FREE_N]]
                st.slot_t0[slot] = now
                st.slot_idx[slot] = idx
                if FULL and cfg.retries > 0:
                    st.slot_s[slot] = s
                    st.slot_e0[slot] = e
                    st.slot_dem[slot] = dem
                    st.slot_client[slot] = client
                    st.slot_jin[slot] = jin
                    st.slot_jout[slot] = jout
                    st.slot_try[slot] = 0
            i += 1
        # ---- one attempt: entry node, table, decision
        if FULL and cfg.faults and st.node_up[e] == 0:
            # a down entry node: clients still reach it (and fail) until it is detected, then
            # the entry policy spreads its share over the others
            e = -1 if st.node_entry[e] != 0 else _reroute(cfg, st, idx)
            if e < 0 or st.node_up[e] == 0:
                _give_up(cfg, st, met, slot, now, np.int64(ST_FAILED))
                continue
        us = np.uint64(s)
        ts = cfg.table_start[us]
        tl = cfg.table_len[us]
        b = np.uint64(0 if cfg.central else e)
        if tl == 0:
            # no task of the service in the tables: the request fails at once
            if not DIRECT and slot >= 0:     # (the direct path has no slots, nor _give_up to compile)
                _give_up(cfg, st, met, slot, now, np.int64(ST_FAILED))
            else:
                if measured:
                    ctr[FAILED] += 1
                if cfg.ts_n > 0:
                    met.ts_count[w, TS_FAILED] += 1
                if cfg.trace:
                    met.tr_status[idx] = ST_FAILED
                    met.tr_done[idx] = now
            continue
        if follow >= 0:
            k = follow
        else:
            cands = _view(cfg.table, ts, tl)
            load = st.outstanding if cfg.info == INFO_GLOBAL else (st.local_out[b] if cfg.info == INFO_LOCAL else st.snapshot)
            view = View(load, cfg.task_node, cfg.task_speed, e, now, cfg.bal_start[b], _params(cfg.params), client, s,
                        st.bal_task_state[b])
            k = _task_id(_select(cands, view, st.bal_state[b * np.uint64(cfg.n_services) + us], st.bal_rng[b]))
            # The contract check: never index state with an id that is not a candidate.
            # (unsigned: a negative id or position wraps to a large one and fails the bound)
            uk = np.uint64(k)
            if uk >= np.uint64(cfg.task_service.shape[0]) or cfg.task_service[uk] != s or np.uint64(cfg.table_pos[uk]) >= np.uint64(tl):
                ctr[ERR_CODE] = 1
                ctr[ERR_REQ] = idx
                ctr[ERR_VALUE] = k
                ctr[REQUESTS] = idx + 1
                st.fctr[T_LAST] = now
                _store_counters(st, cross, completed, lat_sum, lat_max)
                return 1
            if cfg.conn and not retry:
                # a new keep-alive connection: it carries this request and G - 1 more
                c = client * cfg.n_services + s
                st.conn_task[c] = k
                st.conn_entry[c] = e
                u = 1.0 - uniform(st.conn_rng)
                st.conn_left[c] = np.int64(math.log(u) / cfg.conn_logq) if cfg.conn_logq < 0.0 else 0
        if not DIRECT and cfg.trace:
            met.tr_task[idx] = k
        uk = np.uint64(k)       # a checked candidate (or a live connection's task): no wraparound
        if FULL and cfg.faults and st.task_state[uk] != TASK_ALIVE:
            # a dead task still in the table (not detected yet): connection refused at once
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
            # now, so record it now instead of carrying the request in the heap.
            start, done = _place(cfg.task_wstart, st.worker_free, k, now + d_in, svc)
            latency = done + d_out - now
            completed, lat_sum, lat_max = _record(cfg, st, met, k, node, idx, w, latency, svc,
                                                  completed, lat_sum, lat_max)
            if cfg.trace:
                met.tr_task[idx] = k
                met.tr_start[idx] = start
                met.tr_done[idx] = done
                met.tr_status[idx] = ST_COMPLETED
                met.tr_latency[idx] = latency
            continue
        st.outstanding[uk] += 1
        st.local_out[b, uk] += 1
        st.slot_task[slot] = k
        st.slot_bal[slot] = b
        st.slot_dout[slot] = d_out
        st.slot_svc[slot] = svc
        if FULL and cfg.faults:
            st.slot_inc[slot] = st.task_inc[uk]
        if cfg.trace:
            met.tr_status[idx] = ST_IN_FLIGHT
        if d_in > 0.0:
            ctr[TRANSIT_N] = heap_push(st.tr_key, st.tr_slot, ctr[TRANSIT_N], now + d_in, slot)
        else:
            _task_arrive(cfg, st, met, slot, now)
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


@njit(cache=True)
def _warm(x):
    return x + 1


def warm_up() -> None:
    """Initialise numba's compiler (its target context, about 0.7 s) by loading a tiny cached
    function: done once in the process the sweep workers are forked from, inherited by each."""
    _warm(1)


# --------------------------------------------------------------------------------------------
# Specialisation per strategy.

_KERNEL_FUNCS = ("_task_arrive", "_retire", "_advance", "_store_counters", "_kernel")
_ENGINE_HASH = None


def engine_hash() -> str:
    """Hash of the engine's source and of what plugins compile into it (the random streams, the
    kit of docs/strategies.md): part of every specialised kernel's cache name."""
    global _ENGINE_HASH
    if _ENGINE_HASH is None:
        h = hashlib.sha1()
        here = Path(__file__).parent
        for path in (here / "kernel.py", here.parent / "rng.py", here.parent / "plugins" / "kit.py"):
            h.update(path.read_bytes())
        _ENGINE_HASH = h.hexdigest()[:10]
    return _ENGINE_HASH


def specialise(key: str, select, on_complete=None, full: bool = True, direct: bool = False, params=None):
    """A `_kernel` whose strategy hooks are `select` / `on_complete` (jitted functions).

    `key` names the specialisation in numba's disk cache; it must change whenever the
    plugin's code changes (the registry passes a hash of the plugin's source). `full=False`
    compiles without failures and client retries (the kernel then must not be given a run
    that has either); `direct`: the direct path (see DIRECT), for runs simulate finds eligible.
    `params`: the `_params` the hooks' View is built with (`param_maker`; the key must name
    the parameters, as the registry's source hash does).
    """
    g = dict(globals())
    g["FULL"] = bool(full)
    g["DIRECT"] = bool(direct)
    key = f"{key}|full{int(bool(full))}|direct{int(bool(direct))}"
    g["_select"] = select
    if params is not None:
        g["_params"] = params
    g["HAS_COMPLETE"] = on_complete is not None
    if on_complete is not None:
        g["_on_complete"] = on_complete
    tag = hashlib.sha1(f"{key}|{engine_hash()}".encode()).hexdigest()[:16]
    for name in _KERNEL_FUNCS:
        py = getattr(globals()[name], "py_func", globals()[name])
        f = types.FunctionType(py.__code__, g, py.__name__, py.__defaults__, py.__closure__)
        f.__qualname__ = f"{name}__{tag}"
        f.__module__ = __name__
        f.__doc__ = py.__doc__
        # numba's default error model, not numpy's: the plugin's code compiles under the
        # kernel's, and a plugin dividing by zero must stop with an error, not go on with inf
        # or 0 (the engine's own division per request skips the zero test through _fdiv)
        opts = {"inline": "always"} if name != "_kernel" else {"_nrt": False, "no_cpython_wrapper": True}
        g[name] = njit(cache=True, **opts)(f)
    return Entry(g["_kernel"])


@intrinsic
def _call_at(typingctx, addr, cfg, st, met, arr, first, until):
    """Call the compiled kernel at machine address `addr` (numba's own calling convention, so an
    exception raised inside it, a plugin's included, propagates as from any numba call)."""
    sig = nbtypes.int64(addr, cfg, st, met, arr, first, until)

    def codegen(context, builder, signature, args):
        from numba.core import cgutils
        argtys = signature.args[1:]
        fnty = context.call_conv.get_function_type(nbtypes.int64, argtys)
        fnptr = builder.inttoptr(args[0], fnty.as_pointer())
        status, res = context.call_conv.call_function(builder, fnptr, nbtypes.int64, argtys, args[1:])
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return res
    return sig, codegen


def _enter(addr, cfg, st, met, arr, first, until):
    return _call_at(addr, cfg, st, met, arr, first, until)


_ENTERS: dict = {}      # argument types -> the compiled _enter's entry point for them


def _array_key(a):
    # what numba's type of an array depends on
    f = a.flags
    return a.dtype.str, a.ndim, f.c_contiguous, f.f_contiguous, f.aligned, f.writeable


class Entry:
    """Python's way into a specialised kernel, once per chunk of arrivals.

    - The kernels are compiled without a Python entry point: one would unbox the whole run state
      (about 90 arrays), 0.9 s of every kernel's compile. One small compiled function per
      run-state type (`_enter`, cached on disk and shared by every strategy) unboxes the
      arguments and calls the kernel at its address.
    - numba's dispatcher types every argument at every call. The run state's named tuples live
      for the whole run, so the type of the last cfg, st and met seen is kept (with the object,
      which is all that stays referenced after a run), the arrivals' types by their arrays'
      dtypes and flags, and `_enter`'s compiled entry point is called directly with the types
      it was compiled for. `_enter` releases the GIL: `simulate` draws the next chunk of
      arrivals on another thread meanwhile."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher        # the numba dispatcher (its overloads: the machine code)
        self._calls: dict = {}              # ids of the argument types -> (entry point, address, types)
        self._last = [(None, None)] * 3     # (object, its numba type) of the last cfg, st, met
        self._arrivals: dict = {}           # the arrivals' array keys -> numba type

    def _type(self, i, obj):
        last, t = self._last[i]
        if last is not obj:
            from numba import typeof
            t = typeof(obj)
            self._last[i] = (obj, t)
        return t

    def __call__(self, cfg, st, met, arr, first, until):
        key = tuple(_array_key(a) for a in arr)
        tarr = self._arrivals.get(key)
        if tarr is None:
            from numba import typeof
            tarr = self._arrivals[key] = typeof(arr)
        args = (self._type(0, cfg), self._type(1, st), self._type(2, met), tarr, nbtypes.int64, nbtypes.float64)
        ids = tuple(map(id, args[:4]))      # (hashing the types themselves walks them whole)
        call = self._calls.get(ids)
        if call is None or call[2] != args:
            self.dispatcher.compile(args)   # or loaded from the disk cache
            cres = self.dispatcher.overloads[args]
            if cres.signature.return_type != nbtypes.int64:
                raise TypeError(f"the kernel returns {cres.signature.return_type}, not int64")
            enter = _ENTERS.get(args)
            if enter is None:
                esig = nbtypes.int64(nbtypes.intp, *args)
                enter = _ENTERS[args] = njit(esig, cache=True, _nrt=False, nogil=True)(_enter).overloads[esig.args].entry_point
            address = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
            call = self._calls[ids] = (enter, address, args)
        enter, address, _ = call
        return enter(address, cfg, st, met, arr, np.int64(first), float(until))


# --------------------------------------------------------------------------------------------
# Compilation: one specialised engine per strategy and process, cached on disk by numba.

_COMPILED: dict = {}


def _jit(fn, boundscheck: bool):
    if fn is None:
        return None
    py = getattr(fn, "py_func", fn)
    if boundscheck:
        # Not inlined at numba's level: an inlined body would take the kernel's flags and lose
        # its bounds checks. LLVM may still inline the compiled function.
        return njit(boundscheck=True)(py)
    return njit(inline="always")(py)


def compiled_kernel(spec, full: bool = True, direct: bool = False):
    """The dispatch kernel with this strategy inlined (compiled once per process); `full`:
    with failures and client retries, `direct`: the direct path (see engine.FULL, DIRECT)."""
    # The module is part of the key: a cached kernel refers to the plugin's module by name.
    module = getattr(getattr(spec.select, "py_func", spec.select), "__module__", "")
    key = f"{spec.name}|{spec.source_hash}|{module}|bc{int(spec.boundscheck)}"
    k = _COMPILED.get((key, full, direct))
    if k is None:
        k = specialise(key, _jit(spec.select, spec.boundscheck), _jit(spec.on_complete, spec.boundscheck),
                       full=full, direct=direct, params=param_maker(spec.params_type))
        _COMPILED[(key, full, direct)] = k
    return k
