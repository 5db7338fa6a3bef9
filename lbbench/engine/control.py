"""Control events: one queue for everything timed that is not a request's own event
(docs/model.md, "Event order"; docs/architecture.md, "Control events").

Each control event kind owns timers, one per key, and a timer holds at most one pending time
(inf: none). The timers' ids are laid out class by class in the order docs/model.md states
for events at equal times, so the queue is a tournament tree over the timers keyed by
(time, id): its root is the next control event, ties going to the lower id, that is, to
(class, key) order. Setting a timer is O(log timers); a run with no control events has an
all-inf tree and pays one load per event loop pass for it.

Timer classes, in order (`timers`): the stale refresh (1), the fault schedule (1: a cursor
into the sorted schedule), node detections (one per node), the orchestrator's task events
(one per task slot: detect, place, join, the end of a graceful stop), the nodes' background
load (1: a cursor into its sorted changes, cluster.background), the deployments (none without
them; else 1, a cursor into the sorted deploy schedule, one per service: its update's next
batch, and one per autoscaler), a closed loop's users (one per user: the user's next send). A
new kind adds its class to `timers` and a branch to `control_step`; a user's send is
a new request, which the kernel dispatches itself (`_advance` stops at it, as at a retry), so
its branch is in the kernel, not here.
"""
import math

import numpy as np
from numba import njit

from ..model.faults import F_NODE_DOWN, F_NODE_DRAIN, F_NODE_SLOW, F_NODE_UP, F_SERVICE_CRASH, F_TASK_CRASH
from ..rng import hash_uniform
from .info import refresh
from .heaps import _sift_down, timer_at, timer_set
from .loadindex import build_all, join, leave
from .lowlevel import RunStateCompiler, _view, apart, inlined
from .metrics import EMIN, TS_BUCKETS, TS_SUB, window_of
from .cpu import ps_background, ps_crash, ps_speed
from .requests import _give_up, fail_at_task
from ..model.deploy import AS_P99, AS_UTIL, D_SCALE, ORDER_START_FIRST
from .state import (CRASHES, DEPLOY_I, PLACE_WAIT, RAMP_N, TABLE_SEQ, EV_DETECT, EV_JOIN, EV_NONE, EV_PLACE, EV_STOP, FAULT_I, HEAP_N, ST_FAILED,
                    STOP_FREE, STOP_REPLACE, STOP_UPDATE, TASK_ALIVE, TASK_DEAD, TASK_STARTING,
                    LOG_N, LOG_AUTOSCALE, LOG_REPLACE, LOG_SCALE, LOG_START, LOG_STOP, LOG_UPDATE,
                    LOG_F_AFTER, LOG_F_BEFORE, LOG_F_KIND, LOG_F_NODE, LOG_F_SVC, LOG_F_TASK, LOG_F_WHY,
                    WHY_CRASH, WHY_DRAIN, WHY_SCALE, WHY_UPDATE)
from .. import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)

T_REFRESH, T_SCHEDULE, T_NODES = 0, 1, 2       # timer ids; node n is T_NODES + n, task k after the nodes,
                                                # a closed loop's user u after the tasks (user_timer)


def timers(n_nodes: int, n_tasks: int, n_users: int = 0, n_deploy: int = 0) -> int:
    """Number of timers of a run (n_deploy: deploy_timers)."""
    return T_NODES + n_nodes + n_tasks + 1 + n_deploy + n_users


def background_timer(n_nodes: int, n_tasks: int) -> int:
    """The id of the background load's timer (Config.bg_timer): after the task slots."""
    return T_NODES + n_nodes + n_tasks


def deploy_timers(n_events: int, n_services: int, n_autoscalers: int = 0) -> int:
    """The deployments' timers: none without deploy events or autoscalers, else the schedule's,
    one per service (its update's batches) and one per autoscaler."""
    return 1 + n_services + n_autoscalers if n_events or n_autoscalers else 0


def user_timer(n_nodes: int, n_tasks: int, n_deploy: int = 0) -> int:
    """The id of user 0's timer (Config.user_timer0): users come last, after the task slots,
    the background's and the deployments' timers (Config.deploy_timer0 = user_timer(n_nodes,
    n_tasks))."""
    return T_NODES + n_nodes + n_tasks + 1 + n_deploy


def tree_size(n_timers: int) -> int:
    """Length of the tree arrays (State.ctl_t, ctl_i): 2 P, P a power of two >= n_timers."""
    p = 1
    while p < n_timers:
        p *= 2
    return 2 * p


def new_tree(n_timers: int, at: dict) -> tuple[np.ndarray, np.ndarray]:
    """The tree with timer i at `at.get(i, inf)` (built in Python before the run)."""
    size = tree_size(n_timers)
    p = size // 2
    t = np.full(size, np.inf)
    ids = np.zeros(size, dtype=np.int32)
    ids[p:] = np.arange(p, dtype=np.int32)
    for i, v in at.items():
        t[p + i] = v
    lo = p // 2
    while lo >= 1:          # a level at a time, from the leaves' parents up
        j = np.arange(lo, 2 * lo)
        c = 2 * j + (t[2 * j + 1] < t[2 * j])
        t[j] = t[c]
        ids[j] = ids[c]
        lo //= 2
    return t, ids


@njit(inline="always", cache=True)
def task_timer(cfg, k):
    return T_NODES + cfg.node_speed.shape[0] + k


@inlined
def _kill(cfg, st, met, k, t):
    """Task k's queued and in-service requests fail at t: its workers' FIFOs are emptied, in
    order. Their entries in the completion heap go stale (the kernel skips an entry whose
    worker's head is not due then); when stale entries might fill the heap, they are taken out
    and the heap rebuilt (at most once per task-workers kills: O(1) per kill on average)."""
    for w in range(cfg.task_wstart[k], cfg.task_wstart[k + 1]):
        slot = st.wq_head[w]
        st.wq_head[w] = -1
        st.wq_tail[w] = -1
        while slot >= 0:
            nxt = st.slot_next[slot]
            fail_at_task(cfg, st, met, slot, k, t)
            slot = nxt
    n = st.ctr[HEAP_N]
    if n >= st.wq_head.shape[0]:
        # one entry per busy worker is kept (its head's, marked NaN meanwhile: a second entry
        # of the same time, which can only be stale, goes too), so that fewer than workers
        # stale entries ever remain: the heap has room for 2 x workers
        m = 0
        for j in range(n):
            w = st.heap_slot[j]
            h = st.wq_head[w]
            if h >= 0 and st.slot_done[h] == st.heap_key[j]:
                st.heap_key[m] = st.heap_key[j]
                st.heap_slot[m] = w
                st.slot_done[h] = np.nan
                m += 1
        for j in range(m):
            st.slot_done[st.wq_head[st.heap_slot[j]]] = st.heap_key[j]
        for j in range(m, n):
            st.heap_key[j] = np.inf
        st.ctr[HEAP_N] = m
        if m > 1:
            for i in range((m - 2) // 4, -1, -1):
                _sift_down(st.heap_key, st.heap_slot, np.int64(m), np.int64(i))
    if cfg.ps:      # under processor sharing, its requests in service are the node's (cpu.py)
        ps_crash(cfg, st, met, k, t)


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def _crash(cfg, st, met, k, t, detect):
    """Task slot k's running (or starting) task dies at t; the orchestrator notices at
    t + detect. Its queued and in-service requests fail now; requests on their way to it fail
    when they arrive (their incarnation is stale). A task being stopped (out of the tables
    already) ends its stop now instead."""
    state = st.task_state[k]
    if state == TASK_DEAD:
        return
    if st.task_ev_kind[k] == EV_STOP:
        st.ctr[CRASHES] += 1
        _exit(cfg, st, met, k, t)
        return
    st.task_state[k] = TASK_DEAD
    n = cfg.task_node[k]
    st.node_tasks[n] -= 1
    st.node_svc_tasks[n, cfg.task_service[k]] -= 1
    st.task_inc[k] += 1
    st.ctr[CRASHES] += 1
    if state == TASK_ALIVE:
        _kill(cfg, st, met, k, t)
    st.task_ev_kind[k] = EV_DETECT
    timer_set(st, task_timer(cfg, k), t + detect)


def node_lists(task_node: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(node_first, task_nnext, task_nprev) of a run's start: each node's task slots (those
    whose `task_node` is the node, whatever their state) as a list in ascending slot order, so
    that a node event visits its own slots, in the order a scan of all slots met them, not
    every slot (`_schedule_step`). A placement moves its slot (`_move_to_node`)."""
    T = len(task_node)
    nxt = np.full(T, -1, dtype=np.int32)
    prev = np.full(T, -1, dtype=np.int32)
    first = np.full(n_nodes, -1, dtype=np.int32)
    order = np.argsort(task_node, kind="stable").astype(np.int32)     # by node, then slot
    on = task_node[order]
    same = on[1:] == on[:-1]
    nxt[order[:-1][same]] = order[1:][same]
    prev[order[1:][same]] = order[:-1][same]
    heads = np.concatenate(([True], ~same)) if T else np.zeros(0, dtype=bool)
    first[on[heads]] = order[heads]
    return first, nxt, prev


@njit(inline="always", cache=True)
def _move_to_node(cfg, st, k, n):
    """Task slot k's task goes to node n: `task_node`, and the slot moves from its old node's
    list to n's, in slot order (O(slots on n))."""
    p = st.task_nprev[k]
    q = st.task_nnext[k]
    if p >= 0:
        st.task_nnext[p] = q
    else:
        st.node_first[cfg.task_node[k]] = q
    if q >= 0:
        st.task_nprev[q] = p
    p = np.int32(-1)
    q = st.node_first[n]
    while q >= 0 and q < k:
        p = q
        q = st.task_nnext[q]
    st.task_nprev[k] = p
    st.task_nnext[k] = q
    if p >= 0:
        st.task_nnext[p] = k
    else:
        st.node_first[n] = k
    if q >= 0:
        st.task_nprev[q] = k
    cfg.task_node[k] = n


@njit(inline="always", cache=True)
def _table_place(st, tb, k):
    """Task k's position in its service's table `tb`: a binary search by the order every table
    keeps, ascending `task_seq` (its tasks in the order they joined, those of a run's start by
    id), O(log tasks)."""
    key = st.task_seq[k]
    lo = np.uint64(0)
    hi = np.uint64(tb.shape[0])
    while lo < hi:
        mid = (lo + hi) >> np.uint64(1)
        if st.task_seq[np.uint64(tb[mid])] < key:
            lo = mid + np.uint64(1)
        else:
            hi = mid
    return lo


@njit(inline="always", cache=True)
def _table_remove(cfg, st, k):
    """Take task k out of its service's table, keeping the others' order (and out of the load
    index: loadindex.leave)."""
    if cfg.table_pos[k] < 0:
        return
    s = cfg.task_service[k]
    n = cfg.table_len[s]
    tb = _view(cfg.table, cfg.table_start[s], n)
    p = _table_place(st, tb, k)
    leave(cfg, st, k, np.int64(p))
    # The later tasks move down a place: a copy (a memmove, over unsigned indices, without
    # numba's wraparound of negative ones), O(tasks) but a few microseconds at 10,000 tasks; a
    # dense table is what strategies read (docs/strategies.md). Their positions too, only for a
    # strategy that reads them (Config.position): a loop of scattered stores, the most of a
    # crash's cost at 10,000 tasks (docs/architecture.md, "Control events").
    for j in range(p, np.uint64(n - 1)):
        tb[j] = tb[j + np.uint64(1)]
    if cfg.position.shape[0] > 0:
        for j in range(p, np.uint64(n - 1)):
            cfg.table_pos[np.uint64(tb[j])] = j
    cfg.table_len[s] = n - 1
    cfg.table_pos[k] = -1


@njit(inline="always", cache=True)
def _table_add(cfg, st, k):
    """Task k joins its service's table, last (and the load index: loadindex.join), after
    every task there in the tables' order (`task_seq`)."""
    s = cfg.task_service[k]
    n = cfg.table_len[s]
    cfg.table[cfg.table_start[s] + n] = k
    cfg.table_pos[k] = n
    cfg.table_len[s] = n + 1
    st.task_seq[k] = cfg.task_node.shape[0] + st.ctr[TABLE_SEQ]
    st.ctr[TABLE_SEQ] += 1
    join(cfg, st, k)


@inlined
def spread_node(cfg, st, s):
    """Swarm's spread rule over the up, non-drained nodes: fewest live or starting tasks of
    service s, then fewest overall, then the lowest id; -1 if no node is eligible. O(nodes):
    the counts are kept as tasks start and die (`node_tasks`, `node_svc_tasks`)."""
    best = -1
    bs = 0
    bt = 0
    for n in range(cfg.node_speed.shape[0]):
        if st.node_up[n] == 0 or st.node_drained[n] != 0:
            continue
        cs = st.node_svc_tasks[n, s]
        ct = st.node_tasks[n]
        if best < 0 or cs < bs or (cs == bs and ct < bt):
            best = n
            bs = cs
            bt = ct
    return best


@njit(inline="always", cache=True)
def _join_delay(cfg):
    """From a task's placement to its join: health.startup, or with health checks the first
    probe (every interval from the placement) once the task is up after startup."""
    if cfg.hc_interval == 0.0:
        return cfg.startup
    return max(1.0, math.ceil(cfg.startup / cfg.hc_interval)) * cfg.hc_interval


@njit(inline="always", cache=True)
def _detect_delay(cfg, st, k, t):
    """From task k's crash at t to its detection: health.task_detect, or with health checks
    the end (+ timeout) of the retries-th failing probe on the task's probe grid (every
    interval from its placement) at or after t, probes before start_period not counted."""
    if cfg.hc_interval == 0.0:
        return cfg.task_detect
    p = st.task_placed[k]
    first = max(t, p + cfg.hc_start)
    j = max(1.0, math.ceil((first - p) / cfg.hc_interval))
    return p + (j + cfg.hc_retries - 1) * cfg.hc_interval + cfg.hc_timeout - t


@njit(inline="always", cache=True)
def _log(st, t, kind, s, k, node, before, after, why, value):
    """One row of the orchestrator's event log (docs/model.md, "Deployments", its outputs); no
    log (0 rows: a run without deployments or autoscalers), nothing. Rows past its room are
    counted, not written (the run then fails: run.py, _Run.ensure_log)."""
    cap = st.log_t.shape[0]
    if cap == 0:
        return
    n = st.ctr[LOG_N]
    st.ctr[LOG_N] = n + 1
    if n >= cap:
        return
    st.log_t[n] = t
    st.log_v[n] = value
    row = st.log_i[n]
    row[LOG_F_KIND] = kind
    row[LOG_F_SVC] = s
    row[LOG_F_TASK] = k
    row[LOG_F_NODE] = node
    row[LOG_F_BEFORE] = before
    row[LOG_F_AFTER] = after
    row[LOG_F_WHY] = why


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def _schedule_step(cfg, st, met, t):
    """Apply the fault schedule's next event (due at t); the cursor moves on."""
    T = cfg.task_node.shape[0]
    i = st.ctr[FAULT_I]
    st.ctr[FAULT_I] = i + 1
    timer_set(st, np.int64(T_SCHEDULE), cfg.f_time[i + 1] if i + 1 < cfg.f_time.shape[0] else np.inf)
    kind = cfg.f_kind[i]
    x = cfg.f_target[i]
    if kind == F_TASK_CRASH:
        if st.kill_at.shape[0] > 0:     # the direct path with crashes: the slot's next one
            st.kill_at[x] = cfg.f_next[i]
        if st.task_state[x] == TASK_ALIVE:
            _crash(cfg, st, met, x, t, _detect_delay(cfg, st, x, t))
    elif kind == F_SERVICE_CRASH:
        left = cfg.f_count[i]
        for k in range(T):
            if left == 0:
                break
            if cfg.task_service[k] == x and st.task_state[k] == TASK_ALIVE and st.task_ev_kind[k] != EV_STOP:
                _crash(cfg, st, met, k, t, _detect_delay(cfg, st, k, t))
                left -= 1
    elif kind == F_NODE_DOWN:
        if st.node_up[x] != 0:
            st.node_up[x] = 0
            timer_set(st, T_NODES + x, t + cfg.node_detect)
            k = st.node_first[x]      # the node's slots, lowest first (a crash moves none)
            while k >= 0:
                if st.task_state[k] != TASK_DEAD:
                    _crash(cfg, st, met, k, t, cfg.node_detect)
                k = st.task_nnext[k]
    elif kind == F_NODE_UP:
        if st.node_up[x] == 0:
            st.node_up[x] = 1
            st.node_entry[x] = 1
            timer_set(st, T_NODES + x, np.inf)
            if st.ctr[PLACE_WAIT] != 0:     # replacements waiting for an eligible node
                st.ctr[PLACE_WAIT] = 0
                for k in range(T):
                    if st.task_ev_kind[k] == EV_PLACE and timer_at(st, task_timer(cfg, k)) == np.inf:
                        timer_set(st, task_timer(cfg, k), t)
    elif kind == F_NODE_DRAIN:     # the manager stops the node's tasks itself (no detection delay)
        st.node_drained[x] = 1
        k = st.node_first[x]          # (a stop or a crash moves no slot: placements are events)
        while k >= 0:
            if st.task_state[k] != TASK_DEAD:
                if cfg.grace > 0.0 and st.task_state[k] == TASK_ALIVE:
                    if st.task_ev_kind[k] != EV_STOP:     # a graceful stop, replaced once it is over
                        _stop(cfg, st, met, k, t, STOP_REPLACE, WHY_DRAIN)
                else:
                    _crash(cfg, st, met, k, t, 0.0)
            k = st.task_nnext[k]
    elif kind == F_NODE_SLOW:       # a gray failure: the node runs on at another speed, unnoticed
        cfg.node_speed[x] = cfg.f_value[i]
        if cfg.ps:
            ps_speed(cfg, st, x, t)
        k = st.node_first[x]
        while k >= 0:               # the node's speed times the task's version's factor
            v = st.task_version[k]
            cfg.task_speed[k] = cfg.f_value[i] * (cfg.d_factor[v - 1] if v > 0 else 1.0)
            k = st.task_nnext[k]
    else:
        raise ValueError("a fault kind the engine has no handler for (faults.FAULT_KINDS)")


@inlined
def _task_event(cfg, st, met, k, t):
    """The orchestrator's pending event of task slot k, due at t."""
    ev = st.task_ev_kind[k]
    i = task_timer(cfg, k)
    if ev == EV_DETECT:
        _table_remove(cfg, st, k)
        st.task_ev_kind[k] = EV_PLACE
        st.task_why[k] = WHY_CRASH
        timer_set(st, i, t + cfg.restart_delay)
    elif ev == EV_PLACE:
        n = spread_node(cfg, st, cfg.task_service[k])
        if n < 0:
            timer_set(st, i, np.inf)     # placed when a node comes up
            st.ctr[PLACE_WAIT] = 1
        else:
            s = cfg.task_service[k]
            _move_to_node(cfg, st, k, n)
            cfg.task_speed[k] = cfg.node_speed[n] * st.svc_factor[s]    # the service's current version
            st.task_version[k] = st.svc_version[s]
            st.task_state[k] = TASK_STARTING
            st.node_tasks[n] += 1
            st.node_svc_tasks[n, cfg.task_service[k]] += 1
            st.task_ev_kind[k] = EV_JOIN
            st.task_placed[k] = t
            timer_set(st, i, t + _join_delay(cfg))
            why = st.task_why[k]
            _log(st, t, LOG_REPLACE if why == WHY_CRASH or why == WHY_DRAIN else LOG_START, s, k, n, -1, -1, why,
                 np.nan)
    elif ev == EV_STOP:
        _exit(cfg, st, met, k, t)
    else:   # EV_JOIN: healthy, into the tables, with idle workers
        st.task_state[k] = TASK_ALIVE
        for w in range(cfg.task_wstart[k], cfg.task_wstart[k + 1]):
            st.worker_free[w] = t
        _table_add(cfg, st, k)
        st.task_restarts[k] += 1
        st.task_ev_kind[k] = EV_NONE
        timer_set(st, i, np.inf)
        if st.task_weight.shape[0] > 0:
            _ramp_start(cfg, st, k, t)
        if cfg.d_time.shape[0] > 0:
            _joined(cfg, st, met, k, t)


# --------------------------------------------------------------------------------------------
# Deployments and graceful stops (docs/model.md, "Deployments"). A slot is free when it holds
# no task and none is coming (TASK_DEAD, EV_NONE); a stopping task (EV_STOP) is still running,
# out of the tables and of the spread counts, until its grace is over.

@njit(inline="always", cache=True)
def _assigned(cfg, st, k, s):
    """Slot k belongs to service s's tasks: not free, not being stopped."""
    return (cfg.task_service[k] == s and st.task_ev_kind[k] != EV_STOP
            and not (st.task_state[k] == TASK_DEAD and st.task_ev_kind[k] == EV_NONE))


@njit(inline="always", cache=True)
def _counted(cfg, st, k, s):
    """Slot k counts among service s's tasks for a scale: assigned, or being stopped to be
    replaced (a drain, a stop-first update)."""
    return (cfg.task_service[k] == s and not (st.task_state[k] == TASK_DEAD and st.task_ev_kind[k] == EV_NONE)
            and not (st.task_ev_kind[k] == EV_STOP and st.task_stop_next[k] == STOP_FREE))


@njit(inline="always", cache=True)
def _n_counted(cfg, st, s):
    m = 0
    for k in range(cfg.task_node.shape[0]):
        if _counted(cfg, st, k, s):
            m += 1
    return m


@njit(inline="always", cache=True)
def _free_slot_of(cfg, st, s):
    """Service s's free slot of lowest id, -1 if none."""
    for k in range(cfg.task_node.shape[0]):
        if cfg.task_service[k] == s and st.task_state[k] == TASK_DEAD and st.task_ev_kind[k] == EV_NONE:
            return k
    return -1


@njit(inline="always", cache=True)
def _start_in(cfg, st, k, t, why):
    """A new task of the slot's service (its current version) is placed in slot k at t (for a
    scale or an update: `why`)."""
    st.task_ev_kind[k] = EV_PLACE
    st.task_why[k] = why
    timer_set(st, task_timer(cfg, k), t)


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def _after_stop(cfg, st, k, t):
    """Slot k's task has stopped at t: the slot is free (a new task waiting for one starts
    there), or a replacement follows (restart_delay after a drain, at once in an update)."""
    nxt = st.task_stop_next[k]
    st.task_stop_next[k] = STOP_FREE
    i = task_timer(cfg, k)
    s = cfg.task_service[k]
    if nxt == STOP_REPLACE:
        st.task_ev_kind[k] = EV_PLACE
        st.task_why[k] = WHY_DRAIN
        timer_set(st, i, t + cfg.restart_delay)
    elif nxt == STOP_UPDATE:
        _start_in(cfg, st, k, t, WHY_UPDATE)
    elif st.svc_want[s] > 0:
        st.svc_want[s] -= 1
        _start_in(cfg, st, k, t, WHY_SCALE)
    else:
        st.task_ev_kind[k] = EV_NONE
        timer_set(st, i, np.inf)


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def _exit(cfg, st, met, k, t):
    """A stopping task ends at t (its grace is over, or it crashed): the requests still at it
    fail; then what its stop was for."""
    if st.task_state[k] == TASK_ALIVE:
        _kill(cfg, st, met, k, t)
    st.task_state[k] = TASK_DEAD
    st.task_inc[k] += 1
    _after_stop(cfg, st, k, t)


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def _stop(cfg, st, met, k, t, nxt, why):
    """The orchestrator stops slot k's task at t (for a scale, an update or a drain: `why`),
    then `nxt` (STOP_*). A running task leaves the tables at once and goes on serving what it
    holds for health.grace, then ends; a starting one stops at once; a crashed one not yet
    replaced leaves the tables now (a slot whose task is not placed yet logs no stop)."""
    s = cfg.task_service[k]
    state = st.task_state[k]
    st.task_stop_next[k] = nxt
    if state != TASK_DEAD or st.task_ev_kind[k] == EV_DETECT:
        _log(st, t, LOG_STOP, s, k, cfg.task_node[k], -1, -1, why, np.nan)
    if state == TASK_DEAD:
        if st.task_ev_kind[k] == EV_DETECT:
            _table_remove(cfg, st, k)
        _after_stop(cfg, st, k, t)
        return
    n = cfg.task_node[k]
    st.node_tasks[n] -= 1
    st.node_svc_tasks[n, s] -= 1
    if state == TASK_STARTING:
        st.task_state[k] = TASK_DEAD
        st.task_inc[k] += 1
        _after_stop(cfg, st, k, t)
        return
    _table_remove(cfg, st, k)
    st.task_ev_kind[k] = EV_STOP
    if cfg.grace > 0.0:
        timer_set(st, task_timer(cfg, k), t + cfg.grace)
    else:
        _exit(cfg, st, met, k, t)


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def _upd_joined(cfg, st, s, t):
    """One of the joins service s's update awaits happened: the batch is done when none is
    left, and the next one starts `delay` later."""
    st.upd_wait[s] -= 1
    if st.upd_wait[s] == 0 and st.upd_ev[s] >= 0:
        st.d_last[st.upd_ev[s]] = t
        timer_set(st, cfg.deploy_timer0 + 1 + s, t + cfg.d_delay[st.upd_ev[s]])


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def _joined(cfg, st, met, k, t):
    """Slot k's new task joined at t: start-first, the old task it replaces stops now; the
    update waiting for it counts it."""
    s = cfg.task_service[k]
    old = st.task_upd_old[k]
    if old >= 0:
        st.task_upd_old[k] = -1
        st.task_replaced[old] = 0
        if _assigned(cfg, st, old, s):
            _stop(cfg, st, met, old, t, STOP_FREE, WHY_UPDATE)
    if st.task_upd_wait[k] != 0:
        st.task_upd_wait[k] = 0
        _upd_joined(cfg, st, s, t)


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def _scale(cfg, st, met, s, want, t):
    """Service s to `want` tasks at t. More: new tasks in its free slots, lowest first (placed
    by spread; without a free slot, one waits for the next to free). Fewer: first those still
    waiting for a slot, then Swarm's choice: the tasks counted as each node's n-th copy of the
    service (running tasks counted first, then the others, each in slot order), highest n
    removed first, tasks with no node before all."""
    T = cfg.task_node.shape[0]
    m = _n_counted(cfg, st, s)
    have = m + st.svc_want[s]
    if want >= have:
        for _ in range(want - have):
            k = _free_slot_of(cfg, st, s)
            if k < 0:
                st.svc_want[s] += 1
            else:
                _start_in(cfg, st, k, t, WHY_SCALE)
        return
    cut = have - want
    w = min(cut, st.svc_want[s])
    st.svc_want[s] -= w
    cut -= w
    if cut == 0:
        return
    keys, ids, copies = st.scr_key, st.scr_id, st.scr_copies
    copies[:] = 0
    j = 0
    for running in (1, 0):
        for k in range(T):
            live = st.task_state[k] == TASK_ALIVE and st.task_ev_kind[k] != EV_STOP
            if not _counted(cfg, st, k, s) or live != (running == 1):
                continue
            if st.task_ev_kind[k] == EV_PLACE or st.task_ev_kind[k] == EV_STOP:
                nth = T + 1                    # no node yet (or its task is still stopping): removed first
            else:
                n = cfg.task_node[k]
                copies[n] += 1
                nth = copies[n]
            keys[j] = nth * (T + 1) + j
            ids[j] = k
            j += 1
    for _ in range(cut):            # the largest key left goes (keys are distinct)
        r = 0
        for x in range(1, m):
            if keys[x] > keys[r]:
                r = x
        keys[r] = -1
        k = ids[r]
        for x in range(T):          # an update's new task replacing it replaces nothing now
            if st.task_upd_old[x] == k:
                st.task_upd_old[x] = -1
        st.task_replaced[k] = 0
        old = st.task_upd_old[k]
        if old >= 0:                # a start-first new task removed: its old task stays
            st.task_upd_old[k] = -1
            st.task_replaced[old] = 0
        if st.task_ev_kind[k] == EV_STOP:
            st.task_stop_next[k] = STOP_FREE        # stopping already: no task follows it
        else:
            _stop(cfg, st, met, k, t, STOP_FREE, WHY_SCALE)
        if st.task_upd_wait[k] != 0:
            st.task_upd_wait[k] = 0
            _upd_joined(cfg, st, s, t)


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def _batch(cfg, st, met, s, t):
    """Service s's update takes its next batch at t: up to `parallelism` tasks of an older
    version (lowest slots first), each replaced stop-first (stopped, its slot's new task placed
    when the stop ends) or start-first (a new task in a free slot; the old one stops when the
    new one joins; stop-first when no slot is free). None left: the update is over."""
    i = st.upd_ev[s]
    timer_set(st, cfg.deploy_timer0 + 1 + s, np.inf)
    if i < 0:
        return
    taken = 0
    for k in range(cfg.task_node.shape[0]):
        if taken == cfg.d_par[i]:
            break
        if (not _assigned(cfg, st, k, s) or st.task_version[k] == st.svc_version[s] or st.task_replaced[k] != 0
                or st.task_upd_wait[k] != 0):
            continue
        taken += 1
        st.upd_wait[s] += 1
        if cfg.d_order[i] == ORDER_START_FIRST:
            j = _free_slot_of(cfg, st, s)
            if j >= 0:
                st.task_upd_old[j] = k
                st.task_replaced[k] = 1
                st.task_upd_wait[j] = 1
                _start_in(cfg, st, j, t, WHY_UPDATE)
                continue
        st.task_upd_wait[k] = 1
        _stop(cfg, st, met, k, t, STOP_UPDATE, WHY_UPDATE)
    if taken == 0:
        st.upd_ev[s] = -1
        # over: at its last batch's last join (at its start when it had nothing to replace)
        st.d_done[i] = t if np.isnan(st.d_last[i]) else st.d_last[i]


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def _deploy_step(cfg, st, met, t):
    """Apply the deploy schedule's next event (due at t); the cursor moves on."""
    i = st.ctr[DEPLOY_I]
    st.ctr[DEPLOY_I] = i + 1
    timer_set(st, cfg.deploy_timer0, cfg.d_time[i + 1] if i + 1 < cfg.d_time.shape[0] else np.inf)
    s = cfg.d_svc[i]
    if cfg.d_kind[i] == D_SCALE:
        st.d_from[i] = _n_counted(cfg, st, s) + st.svc_want[s]
        _log(st, t, LOG_SCALE, s, -1, -1, st.d_from[i], cfg.d_replicas[i], i, np.nan)
        _scale(cfg, st, met, s, cfg.d_replicas[i], t)
    else:           # an update (a newer one takes over a running one)
        st.d_from[i] = st.svc_version[s]
        _log(st, t, LOG_UPDATE, s, -1, -1, st.d_from[i], i + 1, i, np.nan)
        st.svc_version[s] = i + 1
        st.svc_factor[s] = cfg.d_factor[i]
        st.upd_ev[s] = i
        _batch(cfg, st, met, s, t)


@njit(inline="always", cache=True)
def _window_p99(st, a, filled):
    """The p99 of the latencies in autoscaler a's window (its first `filled` intervals): the
    midpoint of the first bucket of the time series' layout (metrics.py) whose running count
    reaches 0.99 x the total, as run.py's percentiles; NaN if none completed."""
    total = 0
    for i in range(filled):
        for j in range(TS_BUCKETS):
            total += st.as_rhist[a, i, j]
    if total == 0:
        return np.nan
    goal = 0.99 * total
    c = 0
    for j in range(TS_BUCKETS):
        for i in range(filled):
            c += st.as_rhist[a, i, j]
        if c >= goal:
            e = EMIN + j // TS_SUB
            return (0.5 + ((j % TS_SUB) + 0.5) / (2 * TS_SUB)) * 2.0 ** e
    return np.nan


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def _autoscale_step(cfg, st, met, a, t):
    """Autoscaler a's evaluation at t (the Kubernetes HPA rule, docs/model.md "Autoscaler"):
    the metric over the window's last intervals, per task in the tables; desire
    ceil(tasks x metric / target) (the tasks unchanged within the tolerance); up at once, down
    to the largest desire of the stabilization window; within [min, max]; through _scale."""
    s = cfg.as_svc[a]
    nb = cfg.as_buckets[a]
    n = st.as_tick[a]
    st.as_rbusy[a, n % nb] = st.as_busy[s]
    st.as_rdone[a, n % nb] = st.as_done[s]
    st.as_busy[s] = 0.0
    st.as_done[s] = 0
    p99 = cfg.as_metric[a] == AS_P99
    if p99:             # (element by element: the run-state functions have no NRT for slices)
        r = n % nb
        for j in range(TS_BUCKETS):
            st.as_rhist[a, r, j] = st.as_hist[s, j]
            st.as_hist[s, j] = 0
    st.as_tick[a] = n + 1
    timer_set(st, cfg.as_timer0 + a, t + cfg.as_interval[a])
    filled = min(n + 1, nb)
    busy = 0.0
    done = 0
    for i in range(filled):
        busy += st.as_rbusy[a, i]
        done += st.as_rdone[a, i]
    span = filled * cfg.as_interval[a]
    cur = _n_counted(cfg, st, s) + st.svc_want[s]
    live = cfg.table_len[s]
    rec = cur
    metric = np.nan
    if live > 0:
        if cfg.as_metric[a] == AS_UTIL:
            metric = busy / (span * live * cfg.as_workers[a])
        elif p99:
            metric = _window_p99(st, a, filled)
        else:
            metric = done / (span * live)
        ratio = metric / cfg.as_target[a]
        if abs(ratio - 1.0) > cfg.as_tol[a]:       # (False for NaN: no completion in the window)
            rec = np.int64(math.ceil(cur * ratio))
    nr = cfg.as_recs[a]
    st.as_rec[a, n % nr] = rec
    want = rec
    if rec <= cur:
        down = rec
        for i in range(min(n + 1, nr)):
            down = max(down, st.as_rec[a, i])
        want = min(cur, down)
    want = min(max(want, cfg.as_lo[a]), cfg.as_hi[a])
    if want != cur:
        _log(st, t, LOG_AUTOSCALE, s, -1, -1, cur, want, a, metric)
        _scale(cfg, st, met, s, want, t)


# --------------------------------------------------------------------------------------------
# Slow start (docs/model.md, "Slow start"): the weights of the tasks that joined less than a
# window ago, brought up to date before a decision reads them.

@njit(inline="always", cache=True)
def _ramp_start(cfg, st, k, t):
    """Task k joined at t: its weight starts at min_weight and it is among the ramping tasks."""
    st.task_joined[k] = t
    st.task_weight[k] = cfg.ss_min
    n = st.ctr[RAMP_N]
    for i in range(n):
        if st.ramp_ids[i] == k:
            return
    st.ramp_ids[n] = k
    st.ctr[RAMP_N] = n + 1


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def ramp(cfg, st, now):
    """The ramping tasks' weights at `now`: max(min_weight, (age / window) ** (1 / aggression)),
    1 from `window` on (and the task is no longer ramping)."""
    n = st.ctr[RAMP_N]
    i = 0
    while i < n:
        k = st.ramp_ids[i]
        age = now - st.task_joined[k]
        if age >= cfg.ss_window:
            st.task_weight[k] = 1.0
            n -= 1
            st.ramp_ids[i] = st.ramp_ids[n]
        else:
            st.task_weight[k] = max(cfg.ss_min, (age / cfg.ss_window) ** cfg.ss_inv_aggr)
            i += 1
    st.ctr[RAMP_N] = n


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def refresh_step(cfg, st, t):
    """The stale snapshot's timer: refresh, and again stale_period later."""
    refresh(st)
    build_all(cfg, st)
    timer_set(st, np.int64(T_REFRESH), t + cfg.stale_period)


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def control_step(cfg, st, met, t):
    """Apply the control event at the root of the queue, due at t, other than the stale
    refresh: the kernel calls refresh_step itself (linked, not compiled apart: a refresh can be
    more frequent than requests, and a call apart costs about 1 us)."""
    i = st.ctl_i[1]
    if i == T_SCHEDULE:
        _schedule_step(cfg, st, met, t)
    elif i < T_NODES + cfg.node_speed.shape[0]:
        # the heartbeat noticed the node is down: the entry policy stops sending clients there
        n = i - T_NODES
        st.node_entry[n] = 0
        timer_set(st, np.int64(i), np.inf)
    elif i < cfg.bg_timer:
        _task_event(cfg, st, met, i - T_NODES - cfg.node_speed.shape[0], t)
    elif i == cfg.bg_timer:
        ps_background(cfg, st, t)
    elif i == cfg.deploy_timer0:
        _deploy_step(cfg, st, met, t)
    elif i < cfg.as_timer0:
        _batch(cfg, st, met, i - cfg.deploy_timer0 - 1, t)
    else:
        _autoscale_step(cfg, st, met, i - cfg.as_timer0, t)
    if met.ts_replicas.shape[0] > 0:      # deployments: each service's tasks in the tables now
        w = window_of(cfg.ts_inv, cfg.ts_n, t)
        for s in range(met.ts_replicas.shape[1]):
            met.ts_replicas[w, s] = cfg.table_len[s]


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
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
