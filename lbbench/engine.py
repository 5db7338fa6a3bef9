"""The compiled dispatch loop (DESIGN section 2).

One numba kernel processes a chunk of arrivals. Before each arrival it applies, in time order,
every event due by then: completions (retired from a min-heap keyed by completion time),
arrivals at a task after the overlay hop (a second heap), and control events (stale-snapshot
refreshes; failures later). Ties are ordered by kind: completion < arrival at task < control <
new arrival, so a server freed at time t is free for a request arriving at t.

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
from numba.extending import intrinsic

from .rng import uniform

# --------------------------------------------------------------------------------------------
# What a strategy sees (DESIGN 3). Built per decision; numba keeps it in registers.

View = namedtuple("View", ["load", "task_node", "task_speed", "entry", "now", "start", "params", "client", "service"])
View.__doc__ = """Read-only context of one decision.

load        int64[T]  outstanding requests per task as the information model reports them
task_node   int32[T]  node of each task
task_speed  float64[T] speed of each task's node (service rate multiplier)
entry       int       the entry node of the request
now         float     simulated time, seconds
start       int       this balancer's start offset (balancer.rr_start: 0, or a random integer)
params      float64[P] the strategy's declared parameters, in declaration order
client      int       client id of the request (-1 when the strategy does not read clients)
service     int       service index of the request
"""

# Static configuration of a run (never written by the kernel).
Config = namedtuple("Config", [
    "task_node", "task_service", "task_speed", "task_workers", "task_wstart", "task_qlimit",
    "table", "table_start", "table_len", "table_pos", "params", "bal_start",
    "n_services", "central", "info", "stale_period", "hop", "has_jitter", "warm_index", "trace", "direct",
    "ts_window", "ts_inv", "ts_n", "conn", "conn_logq",
])
Config.__doc__ = """Static configuration of a run.

conn: 1 for connection-level balancing (balancer.unit = connection): a client's request
follows its open keep-alive connection (same entry node, same task) while it lasts; a new
connection is balanced and lasts 1 + Geometric requests (conn_logq = log(1 - 1/keepalive)).

direct: 1 when nothing observes in-flight requests (the strategy reads no loads and has no
completion hook, no queue limits, every task sees its requests in dispatch order, in-flight
requests are drained at the end). The kernel then records each request's completion when it
dispatches it, with no heap: the same results as the general path, faster.
"""

# Mutable state, resumable across chunks.
State = namedtuple("State", [
    "worker_free", "outstanding", "local_out", "snapshot", "present",
    "heap_key", "heap_slot", "tr_key", "tr_slot",
    "slot_task", "slot_bal", "slot_t0", "slot_dout", "slot_svc", "slot_idx", "free_slots",
    "bal_state", "bal_rng", "ctr", "fctr",
    "conn_task", "conn_left", "conn_entry", "conn_rng",
])

# Streaming metrics and the optional per-request trace.
Metrics = namedtuple("Metrics", [
    "hist", "task_served", "task_busy",
    "tr_task", "tr_start", "tr_done", "tr_latency", "tr_status",
    "ts_count", "ts_lat_sum", "ts_hist", "ts_node_busy",
])
Metrics.__doc__ = """Streaming metrics.

hist          int64[N_BUCKETS] latency histogram of measured completions
task_served   int64[T], task_busy float64[T] (seconds of service of measured requests)
tr_*          per-request trace (length = requests when tracing, else 0)
ts_count      int64[W, 4]: per window of arrival time: arrived, completed, rejected, failed
ts_lat_sum    float64[W], ts_hist int64[W, TS_BUCKETS] (coarse latency histogram)
ts_node_busy  float64[W, N]: service seconds given by each node to requests of the window
Windows cover all requests (warm-up included), indexed by arrival time // ts_window and
clamped to the last window.
"""
TS_ARRIVED, TS_COMPLETED, TS_REJECTED, TS_FAILED = range(4)

Arrivals = namedtuple("Arrivals", ["t", "service", "demand", "entry", "client", "jitter"])

INFO_GLOBAL, INFO_LOCAL, INFO_STALE = 0, 1, 2

# ctr (int64) fields
ARRIVED, COMPLETED, REJECTED, FAILED, CROSS, HEAP_N, TRANSIT_N, FREE_N, ERR_CODE, ERR_REQ, ERR_VALUE, REQUESTS, IN_FLIGHT_M, N_CTR = range(14)
# fctr (float64) fields
LAT_SUM, LAT_MAX, T_FIRST, T_LAST, NEXT_REFRESH, N_FCTR = range(6)

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
def _f64_bits(typingctx, x):
    """The IEEE-754 bits of a float64 as an int64 (a register move, no call)."""
    if isinstance(x, nbtypes.Float) and x.bitwidth == 64:
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(nbtypes.int64))
        return nbtypes.int64(nbtypes.float64), codegen
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


@njit(inline="always", cache=True)
def window_of(cfg, t0):
    w = int(t0 * cfg.ts_inv)
    if w >= cfg.ts_n:
        w = cfg.ts_n - 1
    return w


# --------------------------------------------------------------------------------------------
# 4-ary min-heaps on (key, slot) pairs, sift with a hole. Fewer levels than a binary heap and
# a branch-light pick of the smallest child; keys past the end are +inf (HEAP_PAD slots), so
# the children of a node can be read without bounds tests.

HEAP_PAD = 4


@njit(inline="always", cache=True)
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


@njit(inline="always", cache=True)
def heap_pop(key, slot, n):
    """Remove the root; returns the new size. The caller read key[0], slot[0] first."""
    n -= 1
    k = key[n]
    s = slot[n]
    key[n] = np.inf
    i = 0
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
    return n


# --------------------------------------------------------------------------------------------
# Default strategy hooks; `specialise` rebinds them per plugin.

@njit(cache=True)
def _select(cands, view, state, rng):
    return cands[0]


@njit(cache=True)
def _on_complete(state, task, latency, now, view):
    return None


# --------------------------------------------------------------------------------------------
# Request life cycle.

@njit(inline="always", cache=True)
def _free_slot(st, slot):
    st.free_slots[st.ctr[FREE_N]] = slot
    st.ctr[FREE_N] += 1


@njit(inline="always", cache=True)
def _place(cfg, st, k, ta, svc):
    """FIFO in front of the task's workers: the request starts when it has arrived (ta) and the
    earliest-free worker is free (lowest index on a tie). Returns (start, completion)."""
    w0 = cfg.task_wstart[k]
    best = w0
    w1 = cfg.task_wstart[k + 1]
    if w1 - w0 > 1:
        for w in range(w0 + 1, w1):
            if st.worker_free[w] < st.worker_free[best]:
                best = w
    start = st.worker_free[best]
    if ta > start:
        start = ta
    done = start + svc
    st.worker_free[best] = done
    return start, done


@njit(inline="always", cache=True)
def _record(cfg, st, met, k, idx, t0, latency, svc):
    """Streaming metrics of one completed request that arrived at t0."""
    if cfg.ts_n > 0:
        w = window_of(cfg, t0)
        met.ts_count[w, TS_COMPLETED] += 1
        met.ts_lat_sum[w] += latency
        met.ts_hist[w, ts_bucket_of(latency)] += 1
        met.ts_node_busy[w, cfg.task_node[k]] += svc
    if idx >= cfg.warm_index:
        st.ctr[COMPLETED] += 1
        st.fctr[LAT_SUM] += latency
        if latency > st.fctr[LAT_MAX]:
            st.fctr[LAT_MAX] = latency
        met.hist[bucket_of(latency)] += 1
        met.task_served[k] += 1
        met.task_busy[k] += svc
    if cfg.trace:
        met.tr_status[idx] = ST_COMPLETED
        met.tr_latency[idx] = latency


@njit(inline="always", cache=True)
def _task_arrive(cfg, st, met, slot, ta):
    """The request reaches its task at time ta: reject on a full queue, else queue FIFO."""
    k = st.slot_task[slot]
    idx = st.slot_idx[slot]
    q = cfg.task_qlimit[k]
    if q > 0 and st.present[k] >= cfg.task_workers[k] + q:
        st.outstanding[k] -= 1
        st.local_out[st.slot_bal[slot], k] -= 1
        if idx >= cfg.warm_index:
            st.ctr[REJECTED] += 1
        if cfg.ts_n > 0:
            met.ts_count[window_of(cfg, st.slot_t0[slot]), TS_REJECTED] += 1
        if cfg.trace:
            met.tr_status[idx] = ST_REJECTED
            met.tr_done[idx] = ta
        _free_slot(st, slot)
        return
    st.present[k] += 1
    start, done = _place(cfg, st, k, ta, st.slot_svc[slot])
    st.ctr[HEAP_N] = heap_push(st.heap_key, st.heap_slot, st.ctr[HEAP_N], done, slot)
    if cfg.trace:
        met.tr_start[idx] = start
        met.tr_done[idx] = done


@njit(inline="always", cache=True)
def _retire(cfg, st, met, slot, done):
    """The request completes at its task at `done`; the response returns to the entry node."""
    k = st.slot_task[slot]
    b = st.slot_bal[slot]
    st.present[k] -= 1
    st.outstanding[k] -= 1
    st.local_out[b, k] -= 1
    latency = done + st.slot_dout[slot] - st.slot_t0[slot]
    _record(cfg, st, met, k, st.slot_idx[slot], st.slot_t0[slot], latency, st.slot_svc[slot])
    s = cfg.task_service[k]
    load = st.outstanding if cfg.info == INFO_GLOBAL else (st.local_out[b] if cfg.info == INFO_LOCAL else st.snapshot)
    view = View(load, cfg.task_node, cfg.task_speed, -1, done, cfg.bal_start[b], cfg.params, -1, s)
    _on_complete(st.bal_state[b * cfg.n_services + s], k, latency, done, view)
    _free_slot(st, slot)


@njit(inline="always", cache=True)
def _advance(cfg, st, met, limit, ctl_limit):
    """Apply every event with time <= limit (control events only up to ctl_limit)."""
    inf = np.inf
    while True:
        tc = st.heap_key[0] if st.ctr[HEAP_N] > 0 else inf
        tt = st.tr_key[0] if st.ctr[TRANSIT_N] > 0 else inf
        tk = st.fctr[NEXT_REFRESH]
        if tk > ctl_limit:
            tk = inf
        first = min(tc, tt, tk)
        if first > limit or first == inf:
            return
        if tc <= tt and tc <= tk:
            slot = st.heap_slot[0]
            st.ctr[HEAP_N] = heap_pop(st.heap_key, st.heap_slot, st.ctr[HEAP_N])
            _retire(cfg, st, met, slot, tc)
        elif tt <= tk:
            slot = st.tr_slot[0]
            st.ctr[TRANSIT_N] = heap_pop(st.tr_key, st.tr_slot, st.ctr[TRANSIT_N])
            _task_arrive(cfg, st, met, slot, tt)
        else:
            # stale information: a fresh global snapshot every stale_period seconds
            for j in range(st.snapshot.shape[0]):
                st.snapshot[j] = st.outstanding[j]
            st.fctr[NEXT_REFRESH] = tk + cfg.stale_period


@njit(cache=True)
def _kernel(cfg, st, met, arr, first, until):
    """Dispatch one chunk of arrivals, then apply events up to `until`.

    Returns 0, or 1 when the strategy returned a task outside its candidates (details in
    ctr[ERR_REQ], ctr[ERR_VALUE]).
    """
    n = arr.t.shape[0]
    has_client = arr.client.shape[0] > 0
    ctr = st.ctr
    for i in range(n):
        now = arr.t[i]
        if not cfg.direct:
            _advance(cfg, st, met, now, now)
        idx = first + i
        measured = idx >= cfg.warm_index
        if measured:
            if ctr[ARRIVED] == 0:
                st.fctr[T_FIRST] = now
            ctr[ARRIVED] += 1
        if cfg.ts_n > 0:
            met.ts_count[window_of(cfg, now), TS_ARRIVED] += 1
        s = arr.service[i]
        e = arr.entry[i]
        ts = cfg.table_start[s]
        tl = cfg.table_len[s]
        follow = -1
        if cfg.conn:
            c = arr.client[i] * cfg.n_services + s
            kc = st.conn_task[c]
            if st.conn_left[c] > 0 and kc >= 0 and cfg.table_pos[kc] >= 0 and cfg.table_pos[kc] < tl:
                follow = kc
                e = st.conn_entry[c]
                st.conn_left[c] -= 1
        b = 0 if cfg.central else e
        if tl == 0:
            # no live task of the service in the tables: the request fails at once
            if measured:
                ctr[FAILED] += 1
            if cfg.ts_n > 0:
                met.ts_count[window_of(cfg, now), TS_FAILED] += 1
            if cfg.trace:
                met.tr_status[idx] = ST_FAILED
            continue
        if follow >= 0:
            k = follow
        else:
            cands = cfg.table[ts:ts + tl]
            load = st.outstanding if cfg.info == INFO_GLOBAL else (st.local_out[b] if cfg.info == INFO_LOCAL else st.snapshot)
            client = arr.client[i] if has_client else -1
            view = View(load, cfg.task_node, cfg.task_speed, e, now, cfg.bal_start[b], cfg.params, client, s)
            k = _select(cands, view, st.bal_state[b * cfg.n_services + s], st.bal_rng[b])
            # The contract check: never index state with an id that is not a candidate.
            if k < 0 or k >= cfg.task_service.shape[0] or cfg.task_service[k] != s or cfg.table_pos[k] < 0 or cfg.table_pos[k] >= tl:
                ctr[ERR_CODE] = 1
                ctr[ERR_REQ] = idx
                ctr[ERR_VALUE] = k
                ctr[REQUESTS] = idx + 1
                st.fctr[T_LAST] = now
                return 1
            if cfg.conn:
                # a new keep-alive connection: it carries this request and G - 1 more
                c = arr.client[i] * cfg.n_services + s
                st.conn_task[c] = k
                st.conn_entry[c] = e
                u = 1.0 - uniform(st.conn_rng)
                st.conn_left[c] = np.int64(math.log(u) / cfg.conn_logq) if cfg.conn_logq < 0.0 else 0
        d_in = 0.0
        d_out = 0.0
        if cfg.task_node[k] != e:
            d_in = cfg.hop
            d_out = cfg.hop
            if cfg.has_jitter:
                d_in += arr.jitter[2 * i]
                d_out += arr.jitter[2 * i + 1]
            if measured:
                ctr[CROSS] += 1
        svc = arr.demand[i] / cfg.task_speed[k]
        if cfg.direct:
            # Nothing observes in-flight state (see Config.direct): the completion is known
            # now, so record it now instead of carrying the request in the heap.
            start, done = _place(cfg, st, k, now + d_in, svc)
            if cfg.trace:
                met.tr_task[idx] = k
                met.tr_start[idx] = start
                met.tr_done[idx] = done
            _record(cfg, st, met, k, idx, now, done + d_out - now, svc)
            continue
        st.outstanding[k] += 1
        st.local_out[b, k] += 1
        ctr[FREE_N] -= 1
        slot = st.free_slots[ctr[FREE_N]]
        st.slot_task[slot] = k
        st.slot_bal[slot] = b
        st.slot_t0[slot] = now
        st.slot_dout[slot] = d_out
        st.slot_svc[slot] = svc
        st.slot_idx[slot] = idx
        if cfg.trace:
            met.tr_task[idx] = k
            met.tr_status[idx] = ST_IN_FLIGHT
        if d_in > 0.0:
            ctr[TRANSIT_N] = heap_push(st.tr_key, st.tr_slot, ctr[TRANSIT_N], now + d_in, slot)
        else:
            _task_arrive(cfg, st, met, slot, now)
    if n > 0:
        ctr[REQUESTS] = first + n
        st.fctr[T_LAST] = arr.t[n - 1]
    _advance(cfg, st, met, until, st.fctr[T_LAST])
    return 0


# --------------------------------------------------------------------------------------------
# Specialisation per strategy.

_KERNEL_FUNCS = ("_retire", "_advance", "_kernel")
_ENGINE_HASH = None


def engine_hash() -> str:
    """Hash of the engine's source: part of every specialised kernel's cache name."""
    global _ENGINE_HASH
    if _ENGINE_HASH is None:
        h = hashlib.sha1()
        for name in ("engine.py", "rng.py"):
            h.update((Path(__file__).parent / name).read_bytes())
        _ENGINE_HASH = h.hexdigest()[:10]
    return _ENGINE_HASH


def specialise(key: str, select, on_complete=None):
    """A `_kernel` whose strategy hooks are `select` / `on_complete` (jitted functions).

    `key` names the specialisation in numba's disk cache; it must change whenever the
    plugin's code changes (the registry passes a hash of the plugin's source).
    """
    g = dict(globals())
    g["_select"] = select
    if on_complete is not None:
        g["_on_complete"] = on_complete
    tag = hashlib.sha1(f"{key}|{engine_hash()}".encode()).hexdigest()[:16]
    for name in _KERNEL_FUNCS:
        py = getattr(globals()[name], "py_func", globals()[name])
        f = types.FunctionType(py.__code__, g, py.__name__, py.__defaults__, py.__closure__)
        f.__qualname__ = f"{name}__{tag}"
        f.__module__ = __name__
        f.__doc__ = py.__doc__
        opts = {"inline": "always"} if name != "_kernel" else {"_nrt": False}
        g[name] = njit(cache=True, **opts)(f)
    return g["_kernel"]
