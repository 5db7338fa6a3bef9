"""Pieces of a request's life shared by the dispatch loop and the control events: the slot pool,
the FIFO in front of a task's workers, and giving up on an attempt (a failure or a rejection,
then a client retry or the request's outcome). docs/model.md, "A request's life"."""
import numpy as np
from numba import njit

from ..rng import hash_uniform
from .heaps import heap_push, timer_set
from .info import count_local
from .loadindex import touch
from .lowlevel import RunStateCompiler, inlined
from .metrics import window_of
from .state import (FAILED, FREE_N, REJECTED, RETRIED, RT_N, SES_BASE, SES_I, ST_FAILED, ST_IN_FLIGHT, ST_REJECTED,
                    TS_FAILED, TS_REJECTED, TS_RETRIED, USR_FREE_N)
from .. import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)

@inlined
def _free_slot(free_slots, ctr, slot):
    free_slots[ctr[FREE_N]] = slot
    ctr[FREE_N] += 1


@njit(inline="always", cache=True)
def _place(wstart, worker_free, k, ta, svc):
    """FIFO in front of the task's workers: the request starts when it has arrived (ta) and the
    earliest-free worker is free (lowest index on a tie). Returns (start, completion)."""
    w, start, done = _place_on(wstart, worker_free, k, ta, svc)
    return start, done


@njit(inline="always", cache=True)
def _place_on(wstart, worker_free, k, ta, svc):
    """`_place`, and the worker it placed the request on: (worker, start, completion)."""
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
    return best, start, done


@inlined
def _user_wait_over(cfg, st, slot, t):
    """A closed loop's user has its request's outcome at t (the response back, or its final
    failure or rejection): it thinks, then sends its next request (its timer)."""
    user_outcome(cfg, st, np.int64(st.slot_user[slot]), t)


@inlined
def user_outcome(cfg, st, u, t):
    """`_user_wait_over` for user u (the direct path's closed loop has no slot: it calls this at
    the request's placement, when its response time is known)."""
    z = st.usr_think[u, st.usr_pos[u]]
    if z < 0.0:
        # sessions: that was the session's last request; its user slot is free (a think time
        # of -1 marks the end: state.py, Config)
        st.usr_free[st.ctr[USR_FREE_N]] = u
        st.ctr[USR_FREE_N] += 1
    else:
        timer_set(st, cfg.user_timer0 + u, t + z)


@inlined
def session_arrives(cfg, st, tu, now):
    """Sessions mode: the next session (ctr[SES_I]) arrives at `now` (its timer tu): it takes a
    free user slot, its requests' draws go into the slot's rows, and the slot's timer is set to
    now (its first request goes at its arrival); the timer moves to the next session. False,
    changing nothing, when Python must act first (K_SESSIONS): the session buffer holds no next
    session, no slot is free, or the slot's rows are too short for the session."""
    i = st.ctr[SES_I]
    if i + 1 >= st.ses_t.shape[0] or st.ctr[USR_FREE_N] == 0:
        return False
    n = st.ses_n[i]
    if n + 1 > st.usr_think.shape[1]:
        return False
    st.ctr[USR_FREE_N] -= 1
    v = st.usr_free[st.ctr[USR_FREE_N]]
    o = st.ses_off[i]
    for k in range(n):
        st.usr_think[v, k] = st.ses_think[o + k]
        st.usr_svc[v, k] = st.ses_svc[o + k]
        st.usr_dem[v, k] = st.ses_dem[o + k]
    st.usr_think[v, n] = -1.0
    if st.usr_jit.shape[1] > 0:
        for k in range(2 * n):
            st.usr_jit[v, k] = st.ses_jit[2 * o + k]
    st.usr_pos[v] = 0
    st.usr_entry[v] = st.ses_entry[i]
    st.usr_ses[v] = st.ctr[SES_BASE] + i
    st.ctr[SES_I] = i + 1
    timer_set(st, tu, st.ses_t[i + 1])
    timer_set(st, cfg.user_timer0 + v, now)
    return True


# compile time on a first run).
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
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
    if cfg.users > 0:
        _user_wait_over(cfg, st, slot, t)
    _free_slot(st.free_slots, st.ctr, slot)


@inlined
def fail_at_task(cfg, st, met, slot, k, t):
    """The request in `slot`, present at task k (queued or in service), fails at t: its task
    died (control._crash, cpu.ps_crash)."""
    st.present[k] -= 1
    st.outstanding[k] -= 1
    count_local(cfg, st, st.slot_bal[slot], k, -1)
    touch(cfg, st, np.int64(st.slot_bal[slot]), np.int64(k))
    _give_up(cfg, st, met, slot, t, np.int64(ST_FAILED))
