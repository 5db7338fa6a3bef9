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
(one per task slot: detect, place, join), the nodes' background load (1: a cursor into its
sorted changes, cluster.background), a closed loop's users (one per user: the user's next
send). A new kind adds its class to `timers` and a branch to `control_step`; a user's send is
a new request, which the kernel dispatches itself (`_advance` stops at it, as at a retry), so
its branch is in the kernel, not here.
"""
import numpy as np
from numba import njit

from ..model.faults import F_NODE_DOWN, F_NODE_DRAIN, F_NODE_SLOW, F_NODE_UP, F_SERVICE_CRASH, F_TASK_CRASH
from ..rng import hash_uniform
from .info import refresh
from .heaps import _sift_down, timer_at, timer_set
from .loadindex import build, build_all
from .lowlevel import RunStateCompiler
from .cpu import ps_background, ps_crash, ps_speed
from .requests import fail_at_task
from .state import (CRASHES, EV_DETECT, EV_JOIN, EV_NONE, EV_PLACE, FAULT_I, HEAP_N, TASK_ALIVE, TASK_DEAD,
                    TASK_STARTING)

T_REFRESH, T_SCHEDULE, T_NODES = 0, 1, 2       # timer ids; node n is T_NODES + n, task k after the nodes,
                                                # a closed loop's user u after the tasks (user_timer)


def timers(n_nodes: int, n_tasks: int, n_users: int = 0) -> int:
    """Number of timers of a run."""
    return T_NODES + n_nodes + n_tasks + 1 + n_users


def background_timer(n_nodes: int, n_tasks: int) -> int:
    """The id of the background load's timer (Config.bg_timer): after the task slots."""
    return T_NODES + n_nodes + n_tasks


def user_timer(n_nodes: int, n_tasks: int) -> int:
    """The id of user 0's timer (Config.user_timer0): users come last, after the background's."""
    return T_NODES + n_nodes + n_tasks + 1


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
    for j in range(p - 1, 0, -1):
        c = 2 * j + (1 if t[2 * j + 1] < t[2 * j] else 0)
        t[j] = t[c]
        ids[j] = ids[c]
    return t, ids


@njit(inline="always", cache=True)
def task_timer(cfg, k):
    return T_NODES + cfg.node_speed.shape[0] + k


@njit(cache=True, no_cpython_wrapper=True, pipeline_class=RunStateCompiler)
def _crash(cfg, st, met, k, t, detect):
    """Task slot k's running (or starting) task dies at t; the orchestrator notices at
    t + detect. Its queued and in-service requests fail now; requests on their way to it fail
    when they arrive (their incarnation is stale)."""
    state = st.task_state[k]
    if state == TASK_DEAD:
        return
    st.task_state[k] = TASK_DEAD
    n = cfg.task_node[k]
    st.node_tasks[n] -= 1
    st.node_svc_tasks[n, cfg.task_service[k]] -= 1
    st.task_inc[k] += 1
    st.ctr[CRASHES] += 1
    if state == TASK_ALIVE:
        n = st.ctr[HEAP_N]
        m = 0
        for j in range(n):
            slot = st.heap_slot[j]
            if st.slot_task[slot] == k:
                fail_at_task(cfg, st, met, slot, k, t)
            else:
                st.heap_key[m] = st.heap_key[j]
                st.heap_slot[m] = slot
                m += 1
        for j in range(m, n):
            st.heap_key[j] = np.inf
        st.ctr[HEAP_N] = m
        if m > 1:
            for i in range((m - 2) // 4, -1, -1):
                _sift_down(st.heap_key, st.heap_slot, np.int64(m), np.int64(i))
        if cfg.ps:
            ps_crash(cfg, st, met, k, t)
    st.task_ev_kind[k] = EV_DETECT
    timer_set(st, task_timer(cfg, k), t + detect)


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


@njit(cache=True, no_cpython_wrapper=True, pipeline_class=RunStateCompiler)
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


@njit(cache=True, no_cpython_wrapper=True, pipeline_class=RunStateCompiler)
def _schedule_step(cfg, st, met, t):
    """Apply the fault schedule's next event (due at t); the cursor moves on."""
    T = cfg.task_node.shape[0]
    i = st.ctr[FAULT_I]
    st.ctr[FAULT_I] = i + 1
    timer_set(st, np.int64(T_SCHEDULE), cfg.f_time[i + 1] if i + 1 < cfg.f_time.shape[0] else np.inf)
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
            timer_set(st, T_NODES + x, t + cfg.node_detect)
            for k in range(T):
                if cfg.task_node[k] == x and st.task_state[k] != TASK_DEAD:
                    _crash(cfg, st, met, k, t, cfg.node_detect)
    elif kind == F_NODE_UP:
        if st.node_up[x] == 0:
            st.node_up[x] = 1
            st.node_entry[x] = 1
            timer_set(st, T_NODES + x, np.inf)
            for k in range(T):   # replacements waiting for an eligible node
                if st.task_ev_kind[k] == EV_PLACE and timer_at(st, task_timer(cfg, k)) == np.inf:
                    timer_set(st, task_timer(cfg, k), t)
    elif kind == F_NODE_DRAIN:     # the manager stops the node's tasks itself (no detection delay)
        st.node_drained[x] = 1
        for k in range(T):
            if cfg.task_node[k] == x and st.task_state[k] != TASK_DEAD:
                _crash(cfg, st, met, k, t, 0.0)
    elif kind == F_NODE_SLOW:       # a gray failure: the node runs on at another speed, unnoticed
        cfg.node_speed[x] = cfg.f_value[i]
        if cfg.ps:
            ps_speed(cfg, st, x, t)
        for k in range(T):
            if cfg.task_node[k] == x:
                cfg.task_speed[k] = cfg.f_value[i]
    else:
        raise ValueError("a fault kind the engine has no handler for (faults.FAULT_KINDS)")


@njit(cache=True, no_cpython_wrapper=True, pipeline_class=RunStateCompiler)
def _task_event(cfg, st, k, t):
    """The orchestrator's pending event of task slot k, due at t."""
    ev = st.task_ev_kind[k]
    i = task_timer(cfg, k)
    if ev == EV_DETECT:
        _table_remove(cfg, k)
        build(cfg, st, cfg.task_service[k])
        st.task_ev_kind[k] = EV_PLACE
        timer_set(st, i, t + cfg.restart_delay)
    elif ev == EV_PLACE:
        n = spread_node(cfg, st, cfg.task_service[k])
        if n < 0:
            timer_set(st, i, np.inf)     # placed when a node comes up
        else:
            cfg.task_node[k] = n
            cfg.task_speed[k] = cfg.node_speed[n]
            st.task_state[k] = TASK_STARTING
            st.node_tasks[n] += 1
            st.node_svc_tasks[n, cfg.task_service[k]] += 1
            st.task_ev_kind[k] = EV_JOIN
            timer_set(st, i, t + cfg.startup)
    else:   # EV_JOIN: healthy, into the tables, with idle workers
        st.task_state[k] = TASK_ALIVE
        for w in range(cfg.task_wstart[k], cfg.task_wstart[k + 1]):
            st.worker_free[w] = t
        _table_add(cfg, k)
        build(cfg, st, cfg.task_service[k])
        st.task_restarts[k] += 1
        st.task_ev_kind[k] = EV_NONE
        timer_set(st, i, np.inf)


@njit(cache=True, no_cpython_wrapper=True, pipeline_class=RunStateCompiler)
def refresh_step(cfg, st, t):
    """The stale snapshot's timer: refresh, and again stale_period later."""
    refresh(st)
    build_all(cfg, st)
    timer_set(st, np.int64(T_REFRESH), t + cfg.stale_period)


@njit(cache=True, no_cpython_wrapper=True, pipeline_class=RunStateCompiler)
def control_step(cfg, st, met, t):
    """Apply the control event at the root of the queue, due at t. (A kernel compiled without
    failures and retries, FULL = False, has only the refresh and the background load's changes,
    and calls refresh_step itself for the refresh.)"""
    i = st.ctl_i[1]
    if i == T_REFRESH:
        refresh_step(cfg, st, t)
    elif i == T_SCHEDULE:
        _schedule_step(cfg, st, met, t)
    elif i < T_NODES + cfg.node_speed.shape[0]:
        # the heartbeat noticed the node is down: the entry policy stops sending clients there
        n = i - T_NODES
        st.node_entry[n] = 0
        timer_set(st, np.int64(i), np.inf)
    elif i < cfg.bg_timer:
        _task_event(cfg, st, i - T_NODES - cfg.node_speed.shape[0], t)
    else:
        ps_background(cfg, st, t)


@njit(cache=True, no_cpython_wrapper=True, pipeline_class=RunStateCompiler)
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
