"""The load index: the least loaded candidate in O(log n) instead of a scan per decision
(docs/architecture.md, "The load index"; docs/strategies.md, "Going further").

For a strategy that declares `Strategy(load_index=True)`, the engine keeps, per row of the
information model in use (one for `global` and `stale`, one per balancer for `local` and
`piggyback`) and per service, a min segment tree over the service's *sequence positions*: each
task that joins the service's table takes the service's next one (its leaf), so the leaves'
order is the table's order (a task that leaves keeps the others' order, one that joins goes
last: `control._table_remove`, `_table_add`). Leaf `P + q` holds the load the model reports for
the task at leaf q (+inf for a leaf no task holds), node `i` the least of nodes `2i` and
`2i + 1`. The trees of a row lie side by side in `State.li_tree[row]`, service s's at
`Config.li_off[s]`, `2 * Config.li_p[s]` long. Which task holds which leaf is one map for all
rows, `Config.li_map`, laid out as a row: in service s's `2 * P` entries, `[q]` is the task at
leaf q (-1: none) and `[P + i]` the leaf of the task at table position i; `Config.li_leaf[k]`
is task k's leaf (-1: out of the tables) and `Config.li_next[s]` the service's next leaf.

What keeps them current is beside what changes a load or a table: `touch` after every change of
one task's load (a send, a completion, a failure, a piggybacked response: O(log n), stopping
where a node does not change); `leave` and `join` when a task leaves or joins its service's
table (its leaf to +inf, or a fresh leaf to its load, in every row: O(rows x log n)); when a
join finds the service's leaves used up, the live ones are renumbered 0..n-1 in table order and
the service's trees rebuilt (`build`, O(rows x P); `layout` leaves room, so that this happens
at most once per slots / 4 joins); `build_all` at a stale refresh. `kit.least_load_indexed` answers
from the tree with the scan's own tie rule (the first minimum met scanning round the list from
an offset), so decisions are the scan's.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .info import INFO_GLOBAL, INFO_LOCAL, INFO_PIGGYBACK, INFO_STALE, load_of
from .lowlevel import RunStateCompiler, _view, inlined
from .. import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)

INF = np.iinfo(np.int32).max      # the trees are int32: in-flight requests are counted in int32 slots


def layout(task_service: np.ndarray, n_services: int,
           room: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """(li_off, li_p, row length): each service's tree offset and leaf count (a power of two at
    least its number of task slots, which bounds its table's length). With `room` (the tables
    change during the run), at least a quarter more than the slots: a join that finds every
    leaf used renumbers and rebuilds the service's trees, which then happens at most once per
    slots / 4 joins."""
    li_p = np.zeros(n_services, dtype=np.int64)
    li_off = np.zeros(n_services, dtype=np.int64)
    counts = np.bincount(task_service, minlength=n_services)
    at = 0
    for s in range(n_services):
        slots = int(counts[s])
        want = slots + max(slots // 4, 1) if room else max(slots, 1)
        p = 1
        while p < want:
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
    leaf = cfg.li_leaf[k]
    if leaf < 0:
        return
    s = cfg.task_service[k]
    row = np.int64(0) if cfg.info == INFO_GLOBAL else np.int64(b)
    _set(tree[row], cfg.li_off[s], cfg.li_p[s], leaf, np.int32(load_of(cfg, st, b)[k]))


@inlined
def _build_row(cfg, tree, load, s):
    off = cfg.li_off[s]
    p = cfg.li_p[s]
    for q in range(p):
        k = cfg.li_map[off + q]
        tree[off + p + q] = np.int32(load[k]) if k >= 0 else np.int32(INF)
    for i in range(p - 1, 0, -1):
        a = tree[off + 2 * i]
        c = tree[off + 2 * i + 1]
        tree[off + i] = a if a <= c else c


@inlined
def _per_row(cfg):
    """Whether each balancer has a row of its own (`local`, `piggyback`)."""
    return cfg.info == INFO_LOCAL or cfg.info == INFO_PIGGYBACK


@inlined
def build(cfg, st, s):
    """Service s's trees in every row, from the loads and the leaves' tasks."""
    tree = st.li_tree
    if tree.shape[1] == 0:
        return
    if _per_row(cfg):
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


@inlined
def leave(cfg, st, k):
    """Task k is about to leave its service's table (`control._table_remove`, before the
    shift): its leaf holds no task and +inf in every row, the later positions' leaves move down
    a position with the table's. O(rows x log n), plus the shift."""
    if st.li_tree.shape[1] == 0:
        return
    pos = cfg.table_pos[k]
    if pos < 0:
        return
    s = cfg.task_service[k]
    off = cfg.li_off[s]
    p = cfg.li_p[s]
    m = cfg.li_map
    for j in range(off + p + pos, off + p + cfg.table_len[s] - 1):
        m[j] = m[j + 1]
    leaf = cfg.li_leaf[k]
    m[off + leaf] = -1
    cfg.li_leaf[k] = -1
    tree = st.li_tree
    for r in range(tree.shape[0] if _per_row(cfg) else 1):
        _set(tree[r], off, p, leaf, np.int32(INF))


@inlined
def join(cfg, st, k):
    """Task k has just joined its service's table, last (`control._table_add`): the service's
    next leaf, holding its load in every row; when every leaf is used, the live tasks take
    leaves 0..n-1 in table order and the service's trees are rebuilt."""
    if st.li_tree.shape[1] == 0:
        return
    s = cfg.task_service[k]
    off = cfg.li_off[s]
    p = cfg.li_p[s]
    m = cfg.li_map
    pos = cfg.table_pos[k]
    leaf = cfg.li_next[s]
    if leaf < p:
        cfg.li_next[s] = leaf + 1
        m[off + leaf] = k
        m[off + p + pos] = leaf
        cfg.li_leaf[k] = leaf
        tree = st.li_tree
        for r in range(tree.shape[0] if _per_row(cfg) else 1):
            _set(tree[r], off, p, leaf, np.int32(load_of(cfg, st, r)[k]))
        return
    n = cfg.table_len[s]
    base = cfg.table_start[s]
    for q in range(p):
        m[off + q] = -1
    for i in range(n):
        x = cfg.table[base + i]
        m[off + i] = x
        m[off + p + i] = i
        cfg.li_leaf[x] = i
    cfg.li_next[s] = n
    build(cfg, st, s)


@njit(inline="always", cache=True)
def tree_of(cfg, st, b, s):
    """The tree of service s in the row balancer b reads (empty without an index): what a
    strategy sees as `view.load_index`."""
    tree = st.li_tree
    row = np.int64(b) if (cfg.info == INFO_LOCAL or cfg.info == INFO_PIGGYBACK) and tree.shape[1] > 0 else np.int64(0)
    return _view(tree[row], cfg.li_off[s], 2 * cfg.li_p[s])


@njit(inline="always", cache=True)
def map_of(cfg, s):
    """Service s's leaves' tasks and its table positions' leaves (empty without an index): what
    a strategy sees as `view.index_map`. (Both are views without the slice's clamping of its
    bounds, which the layout keeps in range: per request, it costs instructions.)"""
    return _view(cfg.li_map, cfg.li_off[s], 2 * cfg.li_p[s])


def initial(table_len: np.ndarray, li_off: np.ndarray, li_p: np.ndarray,
            rows: int, row_len: int) -> np.ndarray:
    """The trees at the start of a run: every load 0, +inf past each table's end (the initial
    tasks hold leaves 0..n-1, in table order: `initial_map`)."""
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


def initial_map(table: np.ndarray, table_start: np.ndarray, table_len: np.ndarray, n_tasks: int,
                li_off: np.ndarray, li_p: np.ndarray, row_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(li_leaf, li_map, li_next) at the start of a run: the task at table position i of a
    service holds its leaf i (empty arrays without an index: row_len 0)."""
    if row_len == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    li_leaf = np.full(n_tasks, -1, dtype=np.int64)
    li_map = np.full(row_len, -1, dtype=np.int32)
    for s in range(len(li_p)):
        p, off, n, base = int(li_p[s]), int(li_off[s]), int(table_len[s]), int(table_start[s])
        tasks = table[base:base + n]
        li_map[off:off + n] = tasks
        li_map[off + p:off + p + n] = np.arange(n)
        li_leaf[tasks] = np.arange(n)
    return li_leaf, li_map, np.asarray(table_len, dtype=np.int64).copy()
