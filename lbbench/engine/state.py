"""The run state of the engine, declared once per concern (docs/architecture.md, "The run state").

Three named tuples of numpy arrays go into the kernel: `Config` (static, written only by the
orchestrator: task placement and the tables), `State` (mutable, resumable across chunks) and
`Metrics` (streaming results). `State` is generated from `STATE`, a declaration grouped by
concern: every array's dtype, shape (in named sizes) and initial value, from which `new_state`
allocates it and `grow_slots` grows the in-flight slot pool. Adding an array to the state is
one line here; nothing else keeps a list of them.

Constants live with the state they describe: counter indices, task and event states, status
codes. Flat tuples rather than nested ones: numba passes a named tuple of arrays as one
struct either way, and the flat one keeps every access one field load.
"""
from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import numpy as np

# Static configuration of a run (never written by the kernel).
Config = namedtuple("Config", [
    "task_node", "task_service", "task_speed", "task_workers", "task_wstart", "task_qlimit",
    "table", "table_start", "table_len", "table_pos", "params", "bal_start",
    "n_services", "central", "info", "stale_period", "hop", "has_jitter", "warm_index", "trace",
    "ts_window", "ts_inv", "ts_n", "conn", "conn_logq",
    "faults", "f_time", "f_kind", "f_target", "f_count", "node_speed",
    "task_detect", "node_detect", "restart_delay", "startup", "entry_key",
    "retries", "backoff", "timeout", "retry_key",
    "li_off", "li_p",
    "users", "user_timer0", "n_req", "t_end", "warm_time",
    "dem_dist",
])
Config.__doc__ = """Static configuration of a run.

conn: 1 for connection-level balancing (balancer.unit = connection): a client's request
follows its open keep-alive connection (same entry node, same task) while it lasts; a new
connection is balanced and lasts 1 + Geometric requests (conn_logq = log(1 - 1/keepalive)).


Failures (faults = 1): f_time/f_kind/f_target/f_count is the run's fault schedule, sorted by
time (F_* kinds). task_node, task_speed and the table arrays change during the run
(replacements reuse their task slot on a new node). retries/backoff/timeout: the clients.
entry_key, retry_key: hash keys of the entry re-routing and the retry backoff jitter.

li_off, li_p: each service's tree offset and leaf count in a row of the load index
(loadindex.py; zeros without it).

Closed loop (users > 0; docs/model.md, "Closed loop"): user u's timer is user_timer0 + u; the
users send until n_req requests are sent or time t_end (int64 max / inf: no such bound); with
warm_index unknown (int64 max), the first send at or after warm_time is the first measured.

dem_dist: float64[S, 4], each service's demand distribution as `view.demand_dist` shows it
(lbbench/model/workload.py, `demand_descriptor`).
"""


# --------------------------------------------------------------------------------------------
# Mutable state: the declaration.

@dataclass(frozen=True)
class Array:
    """One array of the state: `shape` in named sizes (see `sizes` of new_state) or numbers."""

    name: str
    dtype: type
    shape: tuple
    fill: float = 0
    doc: str = ""


SLOTS = "slots"         # the size that grows: the in-flight slot pool (grow_slots)
HEAP_PAD = 4            # +inf keys past a heap's end (see heaps.py)

STATE = {
    "tasks": (
        Array("worker_free", np.float64, ("workers",), 0.0, "when each worker slot is next free"),
        Array("outstanding", np.int64, ("tasks",), 0, "sent to the task, not completed, rejected or failed"),
        Array("present", np.int64, ("tasks",), 0, "arrived at the task (queued or in service)"),
        Array("task_state", np.int8, ("tasks",), 1, "TASK_DEAD, TASK_ALIVE or TASK_STARTING"),
        Array("task_inc", np.int64, ("tasks",), 0, "incarnation, bumped at every crash (slot_inc)"),
        Array("task_ev_kind", np.int8, ("tasks",), 0, "the task slot's pending orchestrator event (EV_*)"),
        Array("task_restarts", np.int64, ("tasks",), 0, "replacements that joined"),
    ),
    "information": (        # what balancers know of loads (info.py)
        Array("local_out", np.int64, ("balancers", "tasks"), 0, "outstanding per sending balancer (local)"),
        Array("snapshot", np.int64, ("tasks",), 0, "the last global snapshot (stale)"),
        Array("piggy", np.int64, ("piggy_balancers", "piggy_tasks"), 0,
              "per balancer, each task's count as its last response reported it (piggyback)"),
        Array("li_tree", np.int32, ("index_rows", "index_len"), 0,
              "the load index's min trees per row and service (loadindex.py; 1 x 0 without it)"),
        Array("work", np.float64, ("work_tasks",), 0.0,
              "each candidate's unfinished work at the last decision (info.fill_work; 0 long without `work`)"),
    ),
    "slots": (              # in-flight requests, one slot each (grows with concurrency)
        Array("slot_task", np.int32, (SLOTS,), 0, "task the attempt was sent to"),
        Array("slot_bal", np.int32, (SLOTS,), 0, "balancer that sent it"),
        Array("slot_t0", np.float64, (SLOTS,), 0.0, "first arrival time of the request"),
        Array("slot_dout", np.float64, (SLOTS,), 0.0, "return hop of the response"),
        Array("slot_svc", np.float64, (SLOTS,), 0.0, "service time at the task"),
        Array("slot_idx", np.int64, (SLOTS,), 0, "request index"),
        Array("slot_inc", np.int64, (SLOTS,), 0, "incarnation of the task it was sent to"),
        Array("slot_s", np.int32, (SLOTS,), 0, "service (kept for a retry)"),
        Array("slot_e0", np.int32, (SLOTS,), 0, "drawn entry node (retry)"),
        Array("slot_dem", np.float64, (SLOTS,), 0.0, "demand (retry)"),
        Array("slot_client", np.int64, (SLOTS,), 0, "client id (retry)"),
        Array("slot_jin", np.float64, (SLOTS,), 0.0, "hop jitter in (retry)"),
        Array("slot_jout", np.float64, (SLOTS,), 0.0, "hop jitter out (retry)"),
        Array("slot_try", np.int32, (SLOTS,), 0, "attempt number"),
        Array("slot_user", np.int32, (SLOTS,), 0, "the closed loop's user who sent it"),
        Array("free_slots", np.int32, (SLOTS,), 0, "stack of free slots (ctr[FREE_N] of them)"),
    ),
    "heaps": (              # request events: (time, slot) 4-ary min-heaps (heaps.py)
        Array("heap_key", np.float64, ("heap",), np.inf, "completions"),
        Array("heap_slot", np.int32, ("heap",), 0),
        Array("tr_key", np.float64, ("heap",), np.inf, "arrivals at a task after the hop"),
        Array("tr_slot", np.int32, ("heap",), 0),
        Array("rt_key", np.float64, ("heap",), np.inf, "client retries"),
        Array("rt_slot", np.int32, ("heap",), 0),
    ),
    "control": (            # control events: one timer per (class, key) in a tournament tree (control.py)
        Array("ctl_t", np.float64, ("timer_tree",), np.inf, "subtree minimum time; leaves from timer_tree / 2"),
        Array("ctl_i", np.int32, ("timer_tree",), 0, "the timer holding that minimum"),
    ),
    "balancers": (
        Array("bal_state", np.float64, ("balancer_services", "state_size"), 0.0, "the strategy's state"),
        Array("bal_rng", np.uint64, ("balancers", 1), 0, "each balancer's random stream"),
        Array("bal_task_state", np.float64, ("balancers", "strategy_tasks", "task_state"), 0.0,
              "the strategy's per-task memory, seen as View.task_state (0 x 0 per balancer without it)"),
    ),
    "nodes": (
        Array("node_up", np.int8, ("nodes",), 1, "running"),
        Array("node_entry", np.int8, ("nodes",), 1, "still used by the entry policy"),
        Array("node_drained", np.int8, ("nodes",), 0, "given no tasks"),
        Array("node_tasks", np.int64, ("nodes",), 0, "live or starting tasks on the node (the spread rule)"),
        Array("node_svc_tasks", np.int64, ("nodes", "services"), 0, "the same per service"),
    ),
    "connections": (        # balancer.unit = connection
        Array("conn_task", np.int32, ("connections",), -1, "task of a client's open connection"),
        Array("conn_left", np.int64, ("connections",), 0, "requests it still carries"),
        Array("conn_entry", np.int32, ("connections",), 0, "its entry node"),
        Array("conn_rng", np.uint64, (1,), 0, "the CONNECTION stream"),
    ),
    "users": (              # a closed loop: each user's draws, in its own order (workload.UserDraws)
        Array("usr_think", np.float64, ("users", "user_draws"), 0.0, "think time before each next request"),
        Array("usr_dem", np.float64, ("users", "user_draws"), 0.0, "demand of each next request"),
        Array("usr_svc", np.int32, ("users", "user_draws"), 0, "service of each next request"),
        Array("usr_jit", np.float64, ("users", "user_jitter"), 0.0, "hop jitter (in, out) of each next request"),
        Array("usr_pos", np.int64, ("users",), 0, "the row of the user's next request"),
        Array("usr_entry", np.int32, ("users",), 0, "the user's entry node"),
    ),
    "counters": (
        Array("ctr", np.int64, ("n_ctr",), 0, "int64 counters (ARRIVED, ...)"),
        Array("fctr", np.float64, ("n_fctr",), 0.0, "float64 counters (LAT_SUM, ...)"),
    ),
}
STATE_ARRAYS = tuple(a for group in STATE.values() for a in group)
State = namedtuple("State", [a.name for a in STATE_ARRAYS])
State.__doc__ = "Mutable state, resumable across chunks: the arrays of `STATE`, in its order."

# ctr (int64) fields
(ARRIVED, COMPLETED, REJECTED, FAILED, CROSS, HEAP_N, TRANSIT_N, FREE_N, ERR_CODE, ERR_REQ, ERR_VALUE, REQUESTS,
 IN_FLIGHT_M, RETRIED, TIMED_OUT, RT_N, FAULT_I, CRASHES, NEED, N_CTR) = range(20)
# The kernel's return codes: done, a strategy's answer not a candidate (ERR_*), and a closed
# loop's stops for Python: user ctr[NEED] has used its draws (refill them), the first measured
# request of a duration-bounded run is ctr[NEED] (set warm_index).
K_DONE, K_NOT_A_CANDIDATE, K_USER_DRAWS, K_WARM = range(4)
# fctr (float64) fields
LAT_SUM, LAT_MAX, T_FIRST, T_LAST, N_FCTR = range(5)

# Task slot states and orchestrator events
TASK_DEAD, TASK_ALIVE, TASK_STARTING = 0, 1, 2
EV_NONE, EV_DETECT, EV_PLACE, EV_JOIN = 0, 1, 2, 3

# Trace status codes
ST_COMPLETED, ST_REJECTED, ST_FAILED, ST_IN_FLIGHT = 0, 1, 2, 3


def _shape(a: Array, sizes: dict) -> tuple:
    return tuple(sizes[d] if isinstance(d, str) else d for d in a.shape)


def new_state(sizes: dict, **given) -> State:
    """Every array of `STATE` at its declared shape and fill; `given` arrays replace the
    declared ones (a seeded random state, the cluster's drained nodes), checked against the
    declaration. `sizes` names the sizes: tasks, workers, nodes, balancers, balancer_services,
    state_size, strategy_tasks, task_state, connections, piggy_balancers, piggy_tasks,
    timer_tree, index_rows, index_len, services, users, user_draws, user_jitter (0 when not
    given: no closed loop), work_tasks (0 when not given: no `work` information), slots; heap
    is slots + HEAP_PAD."""
    sizes = dict({"users": 0, "user_draws": 0, "user_jitter": 0, "work_tasks": 0}, **sizes)
    sizes = dict(sizes, heap=sizes[SLOTS] + HEAP_PAD, n_ctr=N_CTR, n_fctr=N_FCTR)
    out = {}
    for a in STATE_ARRAYS:
        shape = _shape(a, sizes)
        if a.name in given:
            v = np.ascontiguousarray(given.pop(a.name), dtype=a.dtype)
            if v.shape != shape:
                raise ValueError(f"state array {a.name}: shape {v.shape}, declared {shape}")
            out[a.name] = v
        else:
            out[a.name] = np.full(shape, a.fill, dtype=a.dtype)
    if given:
        raise ValueError(f"not state arrays: {sorted(given)}")
    cap = sizes[SLOTS]
    out["free_slots"][:] = np.arange(cap - 1, -1, -1, dtype=np.int32)
    out["ctr"][FREE_N] = cap
    return State(**out)


def grow_slots(st: State, new: int) -> State:
    """The state with its slot pool (every array sized by `slots` or `heap`) grown to `new`
    slots, the new ones free."""
    cap = len(st.slot_task)
    grown = {}
    for a in STATE_ARRAYS:
        if SLOTS not in a.shape and "heap" not in a.shape:
            continue
        old = getattr(st, a.name)
        b = np.full(new + (HEAP_PAD if "heap" in a.shape else 0), a.fill, dtype=a.dtype)
        b[:cap] = old[:cap]
        grown[a.name] = b
    nf = int(st.ctr[FREE_N])
    free = grown["free_slots"]
    free[:nf] = st.free_slots[:nf]
    free[nf:nf + new - cap] = np.arange(new - 1, cap - 1, -1, dtype=np.int32)
    st.ctr[FREE_N] = nf + new - cap
    return st._replace(**grown)


# Streaming metrics and the optional per-request trace.
Metrics = namedtuple("Metrics", [
    "hist", "task_served", "task_busy",
    "tr_task", "tr_start", "tr_done", "tr_latency", "tr_status", "tr_tries", "tr_user",
    "ts_count", "ts_lat_sum", "ts_hist", "ts_node_busy",
])
Metrics.__doc__ = """Streaming metrics.

hist          int64[N_BUCKETS] latency histogram of measured completions
task_served   int64[T], task_busy float64[T] (seconds of service of measured requests)
tr_*          per-request trace (length = requests when tracing, else 0; tr_user, the closed
              loop's user of each request, 0 without one)
ts_count      int64[W, 6]: per window of (first) arrival time: arrived, completed, rejected,
              failed, retried (attempts re-sent), timed_out
ts_lat_sum    float64[W], ts_hist int64[W, TS_BUCKETS] (coarse latency histogram)
ts_node_busy  float64[W, N]: service seconds given by each node to requests of the window
Windows cover all requests (warm-up included), indexed by arrival time // ts_window and
clamped to the last window.
"""
TS_ARRIVED, TS_COMPLETED, TS_REJECTED, TS_FAILED, TS_RETRIED, TS_TIMED_OUT, TS_N = range(7)

Arrivals = namedtuple("Arrivals", ["t", "service", "demand", "entry", "client", "jitter"])
