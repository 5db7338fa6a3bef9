"""Information models: what a balancer knows of the tasks' loads when it decides
(docs/model.md, "Information models"; docs/architecture.md, "Adding an information model").

The scenario's `balancer.info` is a typed value `Info(kind, period)` (lbbench/model/scenario.py);
`CODES` maps its kind to the engine's `Config.info`, and `load_of` is the one place the
kernel turns it into the `view.load` array a strategy reads. What keeps each model's array
current is beside it: `on_response` (called at every completion) and `refresh` (the stale
snapshot's control event, control.py).
"""
from numba import njit
from .lowlevel import inlined
from .. import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)

INFO_GLOBAL, INFO_LOCAL, INFO_STALE, INFO_PIGGYBACK = 0, 1, 2, 3
# `work` reports the loads as `global` does and, besides, each candidate's unfinished work
# (`view.work`, filled by `fill_work` for a strategy that reads it): its load code is global's.
CODES = {"global": INFO_GLOBAL, "local": INFO_LOCAL, "stale": INFO_STALE, "piggyback": INFO_PIGGYBACK,
         "work": INFO_GLOBAL}


def code_of(info) -> int:
    """The engine's code of an `Info` value."""
    return CODES[info.kind]


@njit(inline="always", cache=True)
def load_of(cfg, st, b):
    """The loads balancer b sees: int32[T], indexed by task id."""
    if cfg.info == INFO_GLOBAL:
        return st.outstanding
    if cfg.info == INFO_LOCAL:
        # (a strategy that reads no load has no table: it sees the global counts, unread)
        return st.local_out[b] if st.local_out.shape[1] > 0 else st.outstanding
    if cfg.info == INFO_PIGGYBACK:
        return st.piggy[b]
    return st.snapshot


@inlined
def count_local(cfg, st, b, k, d):
    """Balancer b's own count of task k's outstanding requests changes by d. Kept under
    `local` only, and for a strategy that reads loads: the table is balancers x tasks,
    allocated (and written per request) only when it is read (otherwise balancers x 0)."""
    if cfg.info == INFO_LOCAL and st.local_out.shape[1] > 0:
        st.local_out[b, k] += d


@njit(inline="always", cache=True)
def node_load_of(cfg, st, b):
    """The nodes' loads per core balancer b sees (view.node_load; cluster.cores, cpu.py; empty
    without it): true under `global`, the last snapshot's under `stale:P`, and under `local` and
    `piggyback` what the node's last response to b reported (cpu.ps_complete)."""
    if cfg.info == INFO_STALE:
        return st.node_snap
    if cfg.info == INFO_LOCAL or cfg.info == INFO_PIGGYBACK:
        return st.node_piggy[b]
    return st.node_load


@inlined
def on_response(cfg, st, b, k):
    """A response of task k reaches balancer b (the request completed): under `piggyback` it
    carries the task's count of requests present (queued or in service) as it leaves."""
    if cfg.info == INFO_PIGGYBACK:
        st.piggy[b, k] = st.present[k]


@inlined
def refresh(st):
    """`stale:P`: a fresh global snapshot (a control event every P seconds). Inlined into
    control.refresh_step, its one caller: one compile fewer on a first run."""
    for j in range(st.snapshot.shape[0]):
        st.snapshot[j] = st.outstanding[j]
    for n in range(st.node_snap.shape[0]):      # (cluster.cores: the nodes' loads too)
        st.node_snap[n] = st.node_load[n]


@inlined
def fill_work(cfg, st, cands, now):
    """`work`: each candidate's unfinished work at `now` into st.work (seconds of demand at speed
    1.0): the work its workers have left on the requests that reached it (in service or queued),
    speed x the sum over its workers of max(0, next free time - now). Only the candidates'
    entries are written (the others keep older values); a strategy reads its candidates'."""
    for i in range(cands.shape[0]):
        k = cands[i]
        left = 0.0
        for w in range(cfg.task_wstart[k], cfg.task_wstart[k + 1]):
            left += max(0.0, st.worker_free[w] - now)
        st.work[k] = cfg.task_speed[k] * left
