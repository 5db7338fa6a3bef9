"""Nodes as shared machines: the requests in service on a node share its cores by processor
sharing (scenario `cluster.cores`; docs/model.md, "Nodes as shared machines").

Each request in service on node n progresses at `speed(n) * min(1, cores(n) / (in_service(n) +
background(n)))`
(work, in seconds of demand at speed 1.0, per second). Node n keeps a virtual clock `V(n)`, the
work each of its requests in service has received since the start: it advances at that rate,
which changes only when the node's count of requests in service (or its speed) changes. A
request that starts service at time t with demand D finishes when V(n) reaches V(n)(t) + D,
its virtual finish, fixed when it starts; the node's requests sit in a min-heap of their
virtual finishes (`State.ps_key[n]`, the 4-ary heaps of heaps.py), and the node's next
completion in real time, `tv + (min finish - V) / rate`, is a leaf of a tournament tree over
the nodes (`State.ps_t`), whose root `_advance` reads as the completions' next time. Every
event is O(log n): a start or a completion changes one heap and one leaf.

The CPU metrics (docs/model.md, "Nodes as shared machines"): node n also keeps a core clock
`node_ut(n)`, the core-seconds each of its requests in service has held, which advances at the
share `min(1, cores(n) / (in_service(n) + background(n)))`. A measured request that completes
held `node_ut` at its completion minus at its start (`slot_ps_u0`) core-seconds, which go to
`node_cpu[n]` (its demand / speed when the speed held), and its time in service beyond them,
the time it waited for a core, to `fctr[CONTENTION]`.

A task's `workers` still bound its requests in service: the others wait in the task's FIFO
queue (a list of slots, `task_qhead`, `task_qtail`, `slot_next`) and the head starts when one of
its requests completes.

The functions are compiled once and shared by every strategy's kernel (they call no hook).
"""
import numpy as np
from numba import njit

from .heaps import _sift_down, heap_pop, heap_push, tree_set
from .lowlevel import RunStateCompiler, apart, inlined
from .requests import fail_at_task
from .state import BG_I, CONTENTION
from .. import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)


@inlined
def _sync(st, n, t):
    """Bring node n's virtual clock and core clock to time t (its rate and share have held since
    node_tv)."""
    dt = t - st.node_tv[n]
    st.node_vt[n] += st.node_rate[n] * dt
    st.node_ut[n] += st.node_share[n] * dt
    st.node_tv[n] = t


@inlined
def _reschedule(cfg, st, n):
    """Node n's rate from its requests in service, and its next completion in the tree."""
    m = st.node_run[n] + st.node_bg[n]
    c = cfg.node_cores[n]
    share = c / m if m > c else 1.0
    r = cfg.node_speed[n] * share
    st.node_rate[n] = r
    st.node_share[n] = share
    st.node_load[n] = m / c
    t = np.inf
    if st.ps_n[n] > 0:
        t = st.node_tv[n] + max(st.ps_key[n, 0] - st.node_vt[n], 0.0) / r
    tree_set(st.ps_t, st.ps_i, n, t)


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def ps_speed(cfg, st, n, t):
    """Node n's speed changed at t (a node_slow fault; Config.node_speed holds the new one):
    its clock is brought to t at the old rate, then runs at the new one."""
    _sync(st, n, t)
    _reschedule(cfg, st, n)


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def ps_background(cfg, st, t):
    """The next change of a node's background load (cluster.background), due at t: the node's
    clock is brought to t, then its requests share the cores with the new load."""
    i = st.ctr[BG_I]
    st.ctr[BG_I] = i + 1
    tree_set(st.ctl_t, st.ctl_i, cfg.bg_timer, cfg.bg_time[i + 1] if i + 1 < cfg.bg_time.shape[0] else np.inf)
    n = cfg.bg_node[i]
    _sync(st, n, t)
    st.node_bg[n] = cfg.bg_level[i]
    _reschedule(cfg, st, n)


@inlined
def _start(cfg, st, met, slot, k, t):
    """The request in `slot` starts service at task k at time t: its virtual finish on k's node."""
    n = np.int64(cfg.task_node[k])
    _sync(st, n, t)
    st.task_run[k] += 1
    st.node_run[n] += 1
    st.ps_n[n] = heap_push(st.ps_key[n], st.ps_slot[n], st.ps_n[n], st.node_vt[n] + st.slot_dem[slot], slot)
    _reschedule(cfg, st, n)
    st.slot_ps_t0[slot] = t
    st.slot_ps_u0[slot] = st.node_ut[n]
    if cfg.trace:
        met.tr_start[st.slot_idx[slot]] = t


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def ps_arrive(cfg, st, met, slot, k, t):
    """The request in `slot` joins task k at time t: it starts if one of k's workers is free,
    else it waits at the end of k's FIFO queue."""
    if st.task_run[k] < cfg.task_workers[k]:
        _start(cfg, st, met, slot, k, t)
        return
    st.slot_next[slot] = -1
    last = st.task_qtail[k]
    if last < 0:
        st.task_qhead[k] = slot
    else:
        st.slot_next[last] = slot
    st.task_qtail[k] = slot


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def ps_complete(cfg, st, met, t):
    """The next completion of all nodes (the tree's root, due at t): the request leaves its
    node's heap and its task's worker, the head of the task's queue starts. Returns its slot
    (the caller retires it)."""
    n = np.int64(st.ps_i[1])
    _sync(st, n, t)
    key = st.ps_key[n]
    slots = st.ps_slot[n]
    slot = slots[0]
    st.node_vt[n] = key[0]      # exactly its virtual finish (the rate's rounding aside)
    st.ps_n[n] = heap_pop(key, slots, st.ps_n[n])
    k = np.int64(st.slot_task[slot])
    st.task_run[k] -= 1
    st.node_run[n] -= 1
    if st.slot_idx[slot] >= cfg.warm_index:
        # the core-seconds it held, and the time in service beyond them: waiting for a core
        held = st.node_ut[n] - st.slot_ps_u0[slot]
        st.node_cpu[n] += held
        st.fctr[CONTENTION] += (t - st.slot_ps_t0[slot]) - held
    if cfg.trace:
        met.tr_done[st.slot_idx[slot]] = t
    head = st.task_qhead[k]
    if head >= 0:
        nxt = st.slot_next[head]
        st.task_qhead[k] = nxt
        if nxt < 0:
            st.task_qtail[k] = -1
        _start(cfg, st, met, head, k, t)
    else:
        _reschedule(cfg, st, n)
    if st.node_piggy.shape[1] > 0:
        # local, piggyback: the response tells its balancer the node's load as it leaves
        st.node_piggy[st.slot_bal[slot], n] = st.node_load[n]
    return slot


@apart
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def ps_crash(cfg, st, met, k, t):
    """Task k dies at t: its requests in service leave its node's heap (the node's others then
    share the cores among fewer) and fail, and so do those in its queue, in its order."""
    n = np.int64(cfg.task_node[k])
    _sync(st, n, t)
    key = st.ps_key[n]
    slots = st.ps_slot[n]
    m = 0
    size = st.ps_n[n]
    for j in range(size):
        s = slots[j]
        if st.slot_task[s] == k:
            fail_at_task(cfg, st, met, s, k, t)
        else:
            key[m] = key[j]
            slots[m] = s
            m += 1
    for j in range(m, size):
        key[j] = np.inf
    st.ps_n[n] = m
    if m > 1:       # (the order of the survivors changed: heapify)
        for i in range((m - 2) // 4, -1, -1):
            _sift_down(key, slots, np.int64(m), np.int64(i))
    st.node_run[n] -= st.task_run[k]
    st.task_run[k] = 0
    s = st.task_qhead[k]
    st.task_qhead[k] = -1
    st.task_qtail[k] = -1
    while s >= 0:
        nxt = st.slot_next[s]
        fail_at_task(cfg, st, met, s, k, t)
        s = nxt
    _reschedule(cfg, st, n)
