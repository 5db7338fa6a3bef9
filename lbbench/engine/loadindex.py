"""The load index: the least loaded candidate in O(log n) instead of a scan per decision
(docs/architecture.md, "The load index"; docs/strategies.md, "Going further").

For a strategy that declares `Strategy(load_index=True)`, the engine keeps, per row of the
information model in use (one for `global` and `stale`, one per balancer for `local` and
`piggyback`) and per service, a min segment tree over the positions of the service's table:
leaf `P + pos` holds the load the model reports for the task at table position `pos` (+inf past
the table's end), node `i` the least of nodes `2i` and `2i + 1`. The trees of a row lie side by
side in `State.li_tree[row]`, service s's at `Config.li_off[s]`, `2 * Config.li_p[s]` long.

What keeps them current is beside what changes a load: `touch` after every change of one task's
load (a send, a completion, a failure, a piggybacked response: O(log n), stopping where a node
does not change), `build` for a whole service when its table changes (a task leaves or joins:
positions shift) and for every service at a stale refresh. `kit.least_load_indexed` answers
from the tree with the scan's own tie rule (the first minimum met scanning round the list from
an offset), so decisions are the scan's.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .info import INFO_GLOBAL, INFO_LOCAL, INFO_PIGGYBACK, INFO_STALE, load_of
from .lowlevel import RunStateCompiler, inlined
from .. import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)

INF = np.iinfo(np.int32).max      # the trees are int32: in-flight requests are counted in int32 slots


def layout(task_service: np.ndarray, n_services: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(li_off, li_p, row length): each service's tree offset and leaf count (a power of two at
    least its number of task slots, which bounds its table's length)."""
    li_p = np.zeros(n_services, dtype=np.int64)
    li_off = np.zeros(n_services, dtype=np.int64)
    counts = np.bincount(task_service, minlength=n_services)
    at = 0
    for s in range(n_services):
        slots = int(counts[s])
        p = 1
        while p < max(slots, 1):
            p *= 2
        li_p[s], li_off[s] = p, at
        at += 2 * p
    return li_off, li_p, at


def rows_for(info_kind: str, n_bal: int) -> int:
    """Rows of trees an information model needs: one per balancer when each knows its own."""
    return n_bal if info_kind in ("local", "piggyback") else 1


@inlined
def _set(tree, off, p, pos, value):
    """Leaf pos of the tree at `off` (p leaves) to value, and its ancestors to their minima,
    stopping at the first that does not change."""
    i = p + pos
    tree[off + i] = value
    i >>= 1
    while i >= 1:
        a = tree[off + 2 * i]
        b = tree[off + 2 * i + 1]
        m = a if a <= b else b
        if tree[off + i] == m:
            break
        tree[off + i] = m
        i >>= 1


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def touch(cfg, st, b, k):
    """Task k's load as balancer b sees it changed (b: the balancer whose count changed; any
    under `global`). Nothing without an index, under `stale` (refreshes rebuild), or for a task
    out of the tables. Compiled once for every strategy and called, not inlined (inlined at its
    four sites in the kernel it doubled a first compile's time); callers pass int64 b and k, so
    that it has one signature."""
    tree = st.li_tree
    if tree.shape[1] == 0 or cfg.info == INFO_STALE:
        return
    pos = cfg.table_pos[k]
    if pos < 0:
        return
    s = cfg.task_service[k]
    row = np.int64(0) if cfg.info == INFO_GLOBAL else np.int64(b)
    _set(tree[row], cfg.li_off[s], cfg.li_p[s], pos, np.int32(load_of(cfg, st, b)[k]))


@inlined
def _build_row(cfg, tree, load, s):
    off = cfg.li_off[s]
    p = cfg.li_p[s]
    base = cfg.table_start[s]
    n = cfg.table_len[s]
    for pos in range(p):
        tree[off + p + pos] = np.int32(load[cfg.table[base + pos]]) if pos < n else np.int32(INF)
    for i in range(p - 1, 0, -1):
        a = tree[off + 2 * i]
        c = tree[off + 2 * i + 1]
        tree[off + i] = a if a <= c else c


@inlined
def build(cfg, st, s):
    """Service s's trees in every row, from the loads (its table changed)."""
    tree = st.li_tree
    if tree.shape[1] == 0:
        return
    if cfg.info == INFO_LOCAL or cfg.info == INFO_PIGGYBACK:
        for r in range(tree.shape[0]):
            _build_row(cfg, tree[r], load_of(cfg, st, r), s)
    else:
        _build_row(cfg, tree[0], load_of(cfg, st, 0), s)


@inlined
def build_all(cfg, st):
    """Every service's trees (a stale refresh: the snapshot changed as a whole)."""
    if st.li_tree.shape[1] == 0:
        return
    for s in range(cfg.li_p.shape[0]):
        build(cfg, st, s)


@njit(inline="always", cache=True)
def tree_of(cfg, st, b, s):
    """The tree of service s in the row balancer b reads (empty without an index): what a
    strategy sees as `view.load_index`."""
    tree = st.li_tree
    row = np.int64(b) if (cfg.info == INFO_LOCAL or cfg.info == INFO_PIGGYBACK) and tree.shape[1] > 0 else np.int64(0)
    off = cfg.li_off[s]
    return tree[row, off:off + 2 * cfg.li_p[s]]


def initial(table_len: np.ndarray, li_off: np.ndarray, li_p: np.ndarray,
            rows: int, row_len: int) -> np.ndarray:
    """The trees at the start of a run: every load 0, +inf past each table's end."""
    tree = np.full((rows, row_len), INF, dtype=np.int32)
    for s in range(len(li_p)):
        p, off = int(li_p[s]), int(li_off[s])
        if p == 0:
            continue
        leaves = np.full(p, INF, dtype=np.int32)
        leaves[:int(table_len[s])] = 0
        level = np.empty(2 * p, dtype=np.int32)
        level[p:] = leaves
        for i in range(p - 1, 0, -1):
            level[i] = min(level[2 * i], level[2 * i + 1])
        level[0] = INF
        tree[:, off:off + 2 * p] = level
    return tree
