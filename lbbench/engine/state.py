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
    "li_off", "li_p", "li_toff", "li_nb", "li_leaf", "li_map", "li_next",
    "users", "user_timer0", "n_req", "t_end", "warm_time",
    "ps", "node_cores", "f_value", "bg_time", "bg_node", "bg_level", "bg_timer",
    "d_time", "d_kind", "d_svc", "d_replicas", "d_par", "d_delay", "d_order", "d_factor", "grace", "deploy_timer0",
    "hc_interval", "hc_timeout", "hc_retries", "hc_start",
    "ss_window", "ss_inv_aggr", "ss_min",
    "as_svc", "as_metric", "as_target", "as_interval", "as_buckets", "as_tol", "as_recs", "as_lo", "as_hi",
    "as_workers", "as_timer0",
    "dem_dist", "sessions", "d_ring", "f_next", "position",
])
Config.__doc__ = """Static configuration of a run.

conn: 1 for connection-level balancing (balancer.unit = connection): a client's request
follows its open keep-alive connection (same entry node, same task) while it lasts; a new
connection is balanced and lasts 1 + Geometric requests (conn_logq = log(1 - 1/keepalive)).
The connection rows are per client and service; in a closed loop per user, in sessions mode per
user slot (a session's connection lasts the session; its slot's rows are closed when the next
session starts in it).


Failures (faults = 1): f_time/f_kind/f_target/f_count/f_value is the run's fault schedule, sorted by
time (F_* kinds; f_value: a node_slow's speed). task_node, task_speed and the table arrays change during the run
(replacements reuse their task slot on a new node). retries/backoff/timeout: the clients.
entry_key, retry_key: hash keys of the entry re-routing and the retry backoff jitter.

f_next: the direct path with crashes (_Run.crashes_only): for each schedule event that is a task's
crash, the time of that task's next crash (inf: none); what State.kill_at moves to (empty
otherwise).

table_pos, position: table_pos[k] >= 0 while task k is in its service's table, -1 otherwise.
For a strategy that reads `view.position` (Strategy.reads_position) `position` is the same
array and it holds each task's exact position (control._table_remove moves the later tasks'
positions down); otherwise `position` is empty and table_pos[k] is where k joined, at or after
where it is now (a task's leaving finds its place by State.task_seq: O(log tasks)).

li_off, li_p: each service's offset in the load index's map and its leaf count; li_toff,
li_nb: its tree's offset in a row of the index and its blocks (loadindex.py; zeros without it). li_leaf, li_map, li_next: which task holds which of the
index's leaves, changed with the tables (loadindex.py, `leave` and `join`; empty without it):
task k's leaf (-1: out of the tables); per service, laid out as a row of the index, its leaves'
tasks (-1: none) then its table positions' leaves; each service's next leaf.

Closed loop (users > 0; docs/model.md, "Closed loop"): user u's timer is user_timer0 + u; the
users send until n_req requests are sent or time t_end (int64 max / inf: no such bound); with
warm_index unknown (int64 max), the first send at or after warm_time is the first measured.

Processor sharing (ps = 1: cluster.cores; cpu.py): node_cores[n], the cores of node n, shared by
the requests in service on it (empty without it). bg_time/bg_node/bg_level: the nodes'
background load changes (cluster.background, model/background.py), applied by the control
timer bg_timer (ctr[BG_I] the next one).

Deployments (docs/model.md, "Deployments"): d_* is the deploy schedule (lbbench/model/deploy.py,
DeploySchedule), sorted by time; grace is health.grace; the deploy schedule's timer is
deploy_timer0, service s's update batches deploy_timer0 + 1 + s (no such timers without
deployments: deploy_timer0 is then the users' first).

Health checks (hc_interval > 0; docs/model.md, "Health checks"): the probes' interval, timeout,
retries and start period; 0: the fixed startup and task_detect.

Slow start (ss_window > 0; docs/model.md, "Slow start"): the window, 1 / aggression and the
minimum weight of a task that joins during the run.

Autoscalers (as_*, one per autoscaled service; docs/model.md, "Autoscaler"): their service,
metric, target, interval, window in intervals, tolerance, stabilization in desires, min, max,
the service's workers per task; autoscaler a's timer is as_timer0 + a.

Sessions (sessions = 1; docs/model.md, "Sessions"): the closed loop's machinery with `users`
user slots (the pool; it grows between kernel calls) and one more timer, user_timer0 + users,
the next session's arrival: an arriving session takes a free slot (usr_free), its requests'
draws are copied from the session buffer (ses_*) into the slot's rows, with a think time of -1
after the last (the slot is free again after that request's outcome).

d_ring: 1 on the direct path when a request may cross the hop while requests from other entry
nodes reach its task before it (network.hop > 0, more than one entry node): the kernel holds
it in a transit ring until it arrives (kernel._ring_flush).

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
# What only some runs read of a slot is sized by one of these: the pool's size (or the heap's)
# in a run that reads it, 0 in the others, and grown only when not 0. A run without client
# retries or processor sharing keeps 88 of its 152 bytes a slot.
RETRY_SLOTS = "retry_slots"     # client retries (Config.retries > 0): what the retry resends
RETRY_HEAP = "retry_heap"       # their heap (ctr[RT_N])
PS_SLOTS = "ps_slots"           # processor sharing (cluster.cores; cpu.py)
GROWN = (SLOTS, "heap", RETRY_SLOTS, RETRY_HEAP, PS_SLOTS)
HEAP_PAD = 4            # +inf keys past a heap's end (see heaps.py)

STATE = {
    "tasks": (
        Array("worker_free", np.float64, ("workers",), 0.0, "when each worker slot is next free"),
        Array("outstanding", np.int32, ("tasks",), 0,
              "sent to the task, not completed, rejected or failed (int32, as every load a strategy sees: "
              "at most the slot pool's size, whose indices are int32; half the bytes of the local table)"),
        Array("present", np.int64, ("tasks",), 0, "arrived at the task (queued or in service)"),
        Array("task_state", np.int8, ("tasks",), 1, "TASK_DEAD, TASK_ALIVE or TASK_STARTING"),
        Array("task_inc", np.int64, ("tasks",), 0, "incarnation, bumped at every crash (slot_inc)"),
        Array("task_seq", np.int64, ("tasks",), 0,
              "the order of the tables: ascending in each (a run's start: the slot's id; a join: the task count + "
              "ctr[TABLE_SEQ], then one more; control._table_remove finds a task's place by it)"),
        Array("kill_at", np.float64, ("kill_tasks",), np.inf,
              "the direct path with crashes: the task slot's next crash in the schedule (Config.f_next; else 0 long)"),
        Array("task_ev_kind", np.int8, ("tasks",), 0, "the task slot's pending orchestrator event (EV_*)"),
        Array("task_restarts", np.int64, ("tasks",), 0, "replacements that joined"),
        Array("wq_head", np.int32, ("workers",), -1,
              "the slot each worker serves, first of its FIFO of the requests placed on it (-1: idle)"),
        Array("wq_tail", np.int32, ("workers",), -1, "the last slot of that FIFO (slot_next links them)"),
    ),
    "information": (        # what balancers know of loads (info.py)
        Array("local_out", np.int32, ("local_balancers", "local_tasks"), 0,
              "outstanding per sending balancer (local, for a strategy that reads loads; else B x 0 or 0 x 0: info.count_local)"),
        Array("snapshot", np.int32, ("tasks",), 0, "the last global snapshot (stale)"),
        Array("piggy", np.int32, ("piggy_balancers", "piggy_tasks"), 0,
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
        Array("slot_s", np.int32, (RETRY_SLOTS,), 0, "service (kept for a retry)"),
        Array("slot_e0", np.int32, (RETRY_SLOTS,), 0, "drawn entry node (retry)"),
        Array("slot_dem", np.float64, (SLOTS,), 0.0, "demand (retry)"),
        Array("slot_client", np.int64, (RETRY_SLOTS,), 0, "client id (retry)"),
        Array("slot_jin", np.float64, (RETRY_SLOTS,), 0.0, "hop jitter in (retry)"),
        Array("slot_jout", np.float64, (RETRY_SLOTS,), 0.0, "hop jitter out (retry)"),
        Array("slot_try", np.int32, (RETRY_SLOTS,), 0, "attempt number"),
        Array("slot_user", np.int32, (SLOTS,), 0, "the closed loop's user who sent it"),
        Array("slot_done", np.float64, (SLOTS,), 0.0, "when it completes, once placed on a worker"),
        Array("slot_next", np.int32, (SLOTS,), -1,
              "the slot after this one in its worker's FIFO (wq_head), or its task's (cpu.py, task_qhead)"),
        Array("free_slots", np.int32, (SLOTS,), 0, "stack of free slots (ctr[FREE_N] of them)"),
    ),
    "heaps": (              # request events: (time, slot) 4-ary min-heaps (heaps.py)
        Array("heap_key", np.float64, ("worker_heap",), np.inf,
              "completions: each busy worker's next, (time, worker); entries of a killed task's workers go stale"),
        Array("heap_slot", np.int32, ("worker_heap",), 0),
        Array("tr_key", np.float64, ("heap",), np.inf,
              "arrivals at a task after the hop: a heap, or without jitter a ring from ctr[TR_HEAD] (kernel._send)"),
        Array("tr_slot", np.int32, ("heap",), 0),
        Array("rt_key", np.float64, (RETRY_HEAP,), np.inf, "client retries"),
        Array("rt_slot", np.int32, (RETRY_HEAP,), 0),
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
        Array("node_first", np.int32, ("nodes",), -1,
              "the lowest task slot on the node (-1: none): with task_nnext, each node's slots in "
              "ascending order, what a node event visits (control.node_lists)"),
        Array("task_nnext", np.int32, ("tasks",), -1, "the next higher slot on the slot's node (-1: last)"),
        Array("task_nprev", np.int32, ("tasks",), -1, "the next lower slot on the slot's node (-1: first)"),
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
        Array("usr_free", np.int32, ("session_slots",), 0, "sessions: the free user slots (a stack, ctr[USR_FREE_N])"),
        Array("usr_ses", np.int64, ("session_slots",), 0, "sessions: the session a slot runs (its client id)"),
    ),
    "sessions": (           # sessions mode: the next sessions, drawn ahead by Python (workload.SessionDraws)
        Array("ses_t", np.float64, ("ses_buf",), 0.0, "arrival time of each (ctr[SES_I] the next to arrive)"),
        Array("ses_n", np.int64, ("ses_buf",), 0, "its requests"),
        Array("ses_entry", np.int32, ("ses_buf",), 0, "its entry node"),
        Array("ses_off", np.int64, ("ses_buf",), 0, "where its requests' draws start in ses_think, ..."),
        Array("ses_think", np.float64, ("ses_reqs",), 0.0, "think time before each request"),
        Array("ses_dem", np.float64, ("ses_reqs",), 0.0, "demand of each request"),
        Array("ses_svc", np.int32, ("ses_reqs",), 0, "service of each request"),
        Array("ses_jit", np.float64, ("ses_jit",), 0.0, "hop jitter (in, out) of each request"),
    ),
    "cpu": (                # cluster.cores: the nodes' cores shared by processor sharing (cpu.py); 0-sized without
        Array("task_run", np.int64, ("ps_tasks",), 0, "requests in service at the task (at most its workers)"),
        Array("task_qhead", np.int32, ("ps_tasks",), -1, "first slot waiting in the task's FIFO (-1: none)"),
        Array("task_qtail", np.int32, ("ps_tasks",), -1, "last slot waiting in the task's FIFO"),
        Array("node_vt", np.float64, ("ps_nodes",), 0.0, "virtual time: the work each request in service has had"),
        Array("node_tv", np.float64, ("ps_nodes",), 0.0, "the time node_vt is of"),
        Array("node_rate", np.float64, ("ps_nodes",), 0.0, "work per second of each request in service"),
        Array("node_run", np.int64, ("ps_nodes",), 0, "requests in service on the node"),
        Array("node_bg", np.float64, ("ps_nodes",), 0.0, "background load (cluster.background): always-busy work"),
        Array("node_load", np.float64, ("ps_nodes",), 0.0, "(requests in service + background) per core (view.node_load)"),
        Array("node_share", np.float64, ("ps_nodes",), 0.0, "cores held by each request in service: min(1, cores / (in service + background))"),
        Array("node_ut", np.float64, ("ps_nodes",), 0.0, "core clock: the core-seconds each request in service has held since the start (of node_tv)"),
        Array("node_cpu", np.float64, ("ps_nodes",), 0.0, "core-seconds held by the node's measured completed requests"),
        Array("slot_ps_t0", np.float64, (PS_SLOTS,), 0.0, "when the request in the slot started service (cpu.py)"),
        Array("slot_ps_u0", np.float64, (PS_SLOTS,), 0.0, "its node's core clock node_ut then"),
        Array("node_snap", np.float64, ("ps_snap_nodes",), 0.0, "node_load at the last stale snapshot (stale:P)"),
        Array("node_piggy", np.float64, ("balancers", "ps_piggy_nodes"), 0.0,
              "per balancer, each node's node_load as its last response reported it (local, piggyback)"),
        Array("ps_n", np.int64, ("ps_nodes",), 0, "requests in the node's heap (node_run)"),
        Array("ps_key", np.float64, ("ps_nodes", "ps_heap"), np.inf,
              "per node, a 4-ary min-heap of its requests' virtual finish times (heaps.py)"),
        Array("ps_slot", np.int32, ("ps_nodes", "ps_heap"), 0),
        Array("ps_t", np.float64, ("ps_tree",), np.inf, "each node's next completion, a tournament tree (heaps.tree_set)"),
        Array("ps_i", np.int32, ("ps_tree",), 0, "the node holding that minimum"),
    ),
    "deploy": (             # deployments and graceful stops (control.py; docs/model.md, "Deployments")
        Array("task_version", np.int64, ("tasks",), 0, "the version of the slot's task (an update's index + 1)"),
        Array("task_placed", np.float64, ("tasks",), 0.0, "when the slot's task was placed (its probe grid's origin)"),
        Array("task_stop_next", np.int8, ("tasks",), 0, "what follows the slot's stop (STOP_*)"),
        Array("task_upd_old", np.int32, ("tasks",), -1, "start-first: the old task this one replaces when it joins"),
        Array("task_replaced", np.int8, ("tasks",), 0, "start-first: its replacement is starting"),
        Array("task_upd_wait", np.int8, ("tasks",), 0, "its next join is awaited by its service's update"),
        Array("svc_version", np.int64, ("services",), 0, "the service's current version (new tasks get it)"),
        Array("svc_factor", np.float64, ("services",), 1.0, "its speed factor (new tasks run at node speed x it)"),
        Array("svc_want", np.int64, ("services",), 0, "new tasks waiting for a free slot"),
        Array("upd_ev", np.int64, ("services",), -1, "the service's running update (deploy index), -1: none"),
        Array("upd_wait", np.int64, ("services",), 0, "joins the update's current batch awaits"),
        Array("task_weight", np.float64, ("weight_tasks",), 1.0,
              "slow start: each task's weight, View.weight (length 0 without slow start)"),
        Array("task_joined", np.float64, ("weight_tasks",), 0.0, "slow start: when the task joined"),
        Array("ramp_ids", np.int64, ("weight_tasks",), 0, "slow start: the tasks still ramping up (ctr[RAMP_N])"),
        Array("as_busy", np.float64, ("services",), 0.0, "autoscalers: service seconds completed since the last evaluation"),
        Array("as_done", np.int64, ("services",), 0, "autoscalers: requests completed since the last evaluation"),
        Array("as_rbusy", np.float64, ("autoscalers", "as_buckets"), 0.0, "per autoscaler, the window's intervals' seconds"),
        Array("as_rdone", np.int64, ("autoscalers", "as_buckets"), 0, "and their completions"),
        Array("as_rec", np.int64, ("autoscalers", "as_recs"), 0, "its desires over the stabilization window"),
        Array("as_hist", np.int64, ("services", "as_hbuckets"), 0,
              "latency_p99: latencies completed since the last evaluation, per service (TS_BUCKETS wide; 0 without)"),
        Array("as_rhist", np.int64, ("autoscalers", "as_buckets", "as_hbuckets"), 0,
              "and per autoscaler those of the window's intervals"),
        Array("as_tick", np.int64, ("autoscalers",), 0, "its evaluations so far"),
        Array("d_from", np.int64, ("deploy_events",), -1,
              "each deploy event's service's replicas (a scale) or version (an update) before it"),
        Array("d_last", np.float64, ("deploy_events",), np.nan, "an update: when its latest batch's last task joined"),
        Array("d_done", np.float64, ("deploy_events",), np.nan,
              "an update: when it was over, its last batch's last join (NaN: not over, or a newer one took over)"),
        Array("task_why", np.int8, ("tasks",), 0, "why the slot's pending placement happens (WHY_*: the event log's detail)"),
        Array("log_t", np.float64, ("log_cap",), np.nan, "the orchestrator's event log (ctr[LOG_N] rows; 0 long without deployments): time"),
        Array("log_v", np.float64, ("log_cap",), np.nan, "an autoscaler's metric value (NaN on other rows)"),
        Array("log_i", np.int64, ("log_cap", "log_fields"), -1, "kind (LOG_*), service, task, node, before, after, why (LOG_F_*)"),
        Array("scr_key", np.int64, ("tasks",), 0, "scratch of a scale-down's choice (compiled code allocates nothing)"),
        Array("scr_id", np.int64, ("tasks",), 0, "the same: the slots"),
        Array("scr_copies", np.int64, ("nodes",), 0, "the same: copies of the service per node"),
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
 IN_FLIGHT_M, RETRIED, TIMED_OUT, RT_N, FAULT_I, CRASHES, NEED, BG_I, DEPLOY_I, RAMP_N, LOG_N,
 SESSIONS, SES_I, SES_BASE, USR_FREE_N, PLACE_WAIT, TR_HEAD, TABLE_SEQ, N_CTR) = range(31)
# The kernel's return codes: done, a strategy's answer not a candidate (ERR_*), and a closed
# loop's stops for Python: user ctr[NEED] has used its draws (refill them), the first measured
# request of a duration-bounded run is ctr[NEED] (set warm_index); sessions: the next session
# needs Python (more sessions drawn, a free user slot, longer rows).
# (PLACE_WAIT: 1 once a placement found no eligible node since the last node_up, which then
# looks for the slots waiting; TR_HEAD: where the transit ring starts in tr_key / tr_slot, on
# the heap path without jitter (kernel._send); SESSIONS: sessions started in the measurement
# window; SES_I: the next session's place in the session buffer; SES_BASE: the session index
# of the buffer's first)
K_DONE, K_NOT_A_CANDIDATE, K_USER_DRAWS, K_WARM, K_SESSIONS = range(5)
# fctr (float64) fields
# (CONTENTION: the measured completions' time in service beyond the core-seconds they held; cpu.py)
LAT_SUM, LAT_MAX, T_FIRST, T_LAST, CONTENTION, N_FCTR = range(6)

# Task slot states and orchestrator events
TASK_DEAD, TASK_ALIVE, TASK_STARTING = 0, 1, 2
EV_NONE, EV_DETECT, EV_PLACE, EV_JOIN, EV_STOP = 0, 1, 2, 3, 4
# What follows a stop (task_stop_next): the slot is free (scale-down, start-first update), a
# replacement after restart_delay (drain), the new version at once (stop-first update)
STOP_FREE, STOP_REPLACE, STOP_UPDATE = 0, 1, 2

# The orchestrator's event log (log_t, log_v, log_i; docs/model.md, "Deployments", its outputs):
# the kinds of row, the fields of log_i, and why a task starts or stops (LOG_F_WHY; a deploy
# event's row holds its index there, an autoscaler's row its autoscaler)
LOG_SCALE, LOG_UPDATE, LOG_AUTOSCALE, LOG_START, LOG_STOP, LOG_REPLACE = range(6)
LOG_KINDS = ("scale", "update", "autoscale", "start", "stop", "replace")
LOG_F_KIND, LOG_F_SVC, LOG_F_TASK, LOG_F_NODE, LOG_F_BEFORE, LOG_F_AFTER, LOG_F_WHY, LOG_FIELDS = range(8)
WHY_SCALE, WHY_UPDATE, WHY_CRASH, WHY_DRAIN = range(4)
WHYS = ("scale", "update", "crash", "drain")

# Trace status codes
ST_COMPLETED, ST_REJECTED, ST_FAILED, ST_IN_FLIGHT = 0, 1, 2, 3


def _shape(a: Array, sizes: dict) -> tuple:
    return tuple(sizes[d] if isinstance(d, str) else d for d in a.shape)


def new_state(sizes: dict, **given) -> State:
    """Every array of `STATE` at its declared shape and fill; `given` arrays replace the
    declared ones (a seeded random state, the cluster's drained nodes), checked against the
    declaration. `sizes` names the sizes: tasks, workers, nodes, balancers, balancer_services,
    state_size, strategy_tasks, task_state, connections, local_balancers, local_tasks, piggy_balancers, piggy_tasks,
    timer_tree, index_rows, index_len, services, users, user_draws, user_jitter (0 when not
    given: no closed loop), session_slots, ses_buf, ses_reqs, ses_jit (0 when not given: no sessions), ps_tasks, ps_nodes, ps_heap, ps_tree, ps_snap_nodes, ps_piggy_nodes
    (0 when not given: no processor sharing), weight_tasks (0 when not given: no slow start),
    log_cap (0 when not given: no event log), kill_tasks (0 when not given: not the direct path with crashes),
    work_tasks (0 when not given: no `work` information), slots, retry (1: client retries; 0 when
    not given); heap is slots + HEAP_PAD, worker_heap 2 x workers + HEAP_PAD (kernel._kill keeps
    its stale entries under workers); retry_slots and retry_heap are slots and heap with
    retries, else 0, ps_slots slots with processor sharing (ps_tasks > 0), else 0."""
    return _fill(None, sizes, given)


def reset_state(st: State, sizes: dict, **given) -> State:
    """`new_state(sizes, **given)` in the arrays of `st`, a state made by `new_state` with the
    same sizes and given arrays of the same shapes (and never grown): every array as a new
    state has it, the given ones copied in. A run of a sweep's many short ones takes the
    state its predecessor of the same shape left (lbbench.engine.run)."""
    return _fill(st, sizes, given)


def _filled(shape, fill, dtype) -> np.ndarray:
    """An array of `fill`; zeros from the allocator's zeroed pages, with no pass over them here
    (np.full wrote a 40 MB `local` table once more)."""
    return np.zeros(shape, dtype=dtype) if fill == 0 else np.full(shape, fill, dtype=dtype)


def _fill(st: State | None, sizes: dict, given: dict) -> State:
    sizes = dict({"users": 0, "user_draws": 0, "user_jitter": 0, "session_slots": 0, "ses_buf": 0, "ses_reqs": 0,
                  "ses_jit": 0, "ps_tasks": 0, "ps_nodes": 0, "ps_heap": 0,
                  "ps_tree": 0, "ps_snap_nodes": 0, "ps_piggy_nodes": 0, "weight_tasks": 0, "autoscalers": 0,
                  "as_buckets": 0, "as_recs": 0, "as_hbuckets": 0, "work_tasks": 0, "deploy_events": 0, "log_cap": 0, "retry": 0,
                  "kill_tasks": 0}, **sizes)
    heap = sizes[SLOTS] + HEAP_PAD
    retry = sizes["retry"] > 0
    sizes = dict(sizes, heap=heap, worker_heap=2 * sizes["workers"] + HEAP_PAD, n_ctr=N_CTR, n_fctr=N_FCTR, log_fields=LOG_FIELDS,
                 retry_slots=sizes[SLOTS] if retry else 0, retry_heap=heap if retry else 0,
                 ps_slots=sizes[SLOTS] if sizes["ps_tasks"] > 0 else 0)
    out = {}
    for a in STATE_ARRAYS:
        shape = _shape(a, sizes)
        old = None if st is None else getattr(st, a.name)
        if old is not None and old.shape != shape:
            raise ValueError(f"state array {a.name}: shape {old.shape} to reset, declared {shape}")
        if a.name in given:
            v = np.ascontiguousarray(given.pop(a.name), dtype=a.dtype)
            if v.shape != shape:
                raise ValueError(f"state array {a.name}: shape {v.shape}, declared {shape}")
            if old is None:
                out[a.name] = v
            else:
                old[...] = v
        elif old is None:
            out[a.name] = _filled(shape, a.fill, a.dtype)
        else:
            old.fill(a.fill)
    if given:
        raise ValueError(f"not state arrays: {sorted(given)}")
    if st is None:
        st = State(**out)
    cap = sizes[SLOTS]
    st.free_slots[:] = np.arange(cap - 1, -1, -1, dtype=np.int32)
    st.ctr[FREE_N] = cap
    return st


def grow_slots(st: State, new: int) -> State:
    """The state with its slot pool (every array sized by `slots` or `heap`) grown to `new`
    slots, the new ones free."""
    cap = len(st.slot_task)
    h, n = int(st.ctr[TR_HEAD]), int(st.ctr[TRANSIT_N])
    if h > 0:       # the transit ring (kernel._send) from its start: it holds at most `cap` slots
        at = (h + np.arange(n)) % len(st.tr_key)
        st.tr_key[:n], st.tr_slot[:n] = st.tr_key[at], st.tr_slot[at]
        st.ctr[TR_HEAD] = 0
    grown = {}
    for a in STATE_ARRAYS:
        if not any(d in GROWN for d in a.shape):
            continue
        old = getattr(st, a.name)
        if len(old) == 0:       # a part of the slot that this run does not read (RETRY_SLOTS, ...)
            continue
        b = _filled(new + (HEAP_PAD if "heap" in a.shape or RETRY_HEAP in a.shape else 0), a.fill, a.dtype)
        b[:cap] = old[:cap]
        grown[a.name] = b
    nf = int(st.ctr[FREE_N])
    free = grown["free_slots"]
    free[:nf] = st.free_slots[:nf]
    free[nf:nf + new - cap] = np.arange(new - 1, cap - 1, -1, dtype=np.int32)
    st.ctr[FREE_N] = nf + new - cap
    return st._replace(**grown)


def grow_log(st: State, new: int) -> State:
    """The state with its event log (every array sized by `log_cap`) grown to `new` rows."""
    grown = {}
    for a in STATE_ARRAYS:
        if "log_cap" in a.shape:
            old = getattr(st, a.name)
            b = np.full((new,) + old.shape[1:], a.fill, dtype=a.dtype)
            b[:len(old)] = old
            grown[a.name] = b
    return st._replace(**grown)


# Streaming metrics and the optional per-request trace.
Metrics = namedtuple("Metrics", [
    "hist", "task_served", "task_busy",
    "tr_task", "tr_start", "tr_done", "tr_latency", "tr_status", "tr_tries", "tr_user",
    "ts_count", "ts_lat_sum", "ts_hist", "ts_node_busy", "ts_replicas",
])
Metrics.__doc__ = """Streaming metrics.

hist          int64[N_BUCKETS] latency histogram of measured completions
task_served   int64[T], task_busy float64[T] (seconds of service of measured requests)
tr_*          per-request trace (length = requests when tracing, else 0; tr_user, the closed
              loop's user of each request, or the session's index in sessions mode, 0 long without either)
ts_count      int64[W, 6]: per window of (first) arrival time: arrived, completed, rejected,
              failed, retried (attempts re-sent), timed_out
ts_lat_sum    float64[W], ts_hist int64[W, TS_BUCKETS] (coarse latency histogram)
ts_node_busy  float64[W, N]: service seconds given by each node to requests of the window
ts_replicas   int64[W, S] with deployments (else 0 x S): each service's tasks in the tables after
              the window's last control event (-1: none in the window; control.control_step)
Windows cover all requests (warm-up included), indexed by arrival time // ts_window and
clamped to the last window.
"""
TS_ARRIVED, TS_COMPLETED, TS_REJECTED, TS_FAILED, TS_RETRIED, TS_TIMED_OUT, TS_N = range(7)

Arrivals = namedtuple("Arrivals", ["t", "service", "demand", "entry", "client", "jitter"])
