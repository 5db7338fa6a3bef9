"""The load index: the least loaded candidate in O(log n) instead of a scan per decision
(docs/architecture.md, "The load index"; docs/strategies.md, "Going further").

For a strategy that declares `Strategy(load_index=True)`, the engine keeps, per row of the
information model in use (one for `global` and `stale`, one per balancer for `local` and
`piggyback`) and per service, a min segment tree over blocks of the service's *sequence
positions*: each task that joins the service's table takes the service's next position (its
leaf), so the leaves' order is the table's order (a task that leaves keeps the others' order,
one that joins goes last: `control._table_remove`, `_table_add`). The leaves themselves are
not stored: leaf q's value is the load the row's information model reports for the task
holding it (+inf for a leaf no task holds), read through the map. The tree's bottom level holds
each block of consecutive leaves' least value: node `NB + j` for block j of a service with NB
blocks, node `i` the least of nodes `2i` and `2i + 1`, the root node 1; node 0 holds log2 of
the leaves per block. A block is one leaf in
a small index (at most SMALL rows x leaves), `BLOCK` leaves in a large one (`layout`): a tree
over single leaves copies every row's loads, twice the loads' own size, 131 MB of trees beside
a 40 MB load table at 1,000 per-node balancers and 10,000 tasks under `local`; blocks of 16
take 8 MB there, and a block's leaves are one cache line of the map. In a small index a leaf
per node is faster (a change or a query reads one leaf, not a block).

The trees of a row lie side by side in `State.li_tree[row]`, service s's at `Config.li_toff[s]`,
`2 * Config.li_nb[s]` long. Which task holds which leaf is one map for all rows,
`Config.li_map`: in service s's `2 * P` entries at `Config.li_off[s]` (`P = Config.li_p[s]`
leaves, a power of two), `[q]` is the task at leaf q (-1: none) and `[P + i]` the leaf of the
task at table position i; `Config.li_leaf[k]` is task k's leaf (-1: out of the tables) and
`Config.li_next[s]` the service's next leaf.

What keeps them current is beside what changes a load or a table: `touch` after every change of
one task's load (a send, a completion, a failure, a piggybacked response: O(BLOCK + log n),
most often O(1): a load below its block's least is the new least, and one above it changes the
block only when no other leaf holds the old least; upward, it stops where a node does not
change); `leave` and `join` when a task leaves or joins its service's table (its leaf to +inf,
or a fresh leaf to its load, in every row: O(rows x (BLOCK + log n))); when a join finds the
service's leaves used up, the live ones are renumbered 0..n-1 in table order and the service's
trees rebuilt (`build`, O(rows x P); `layout` leaves room, so that this happens at most once
per slots / 4 joins); `build_all` at a stale refresh. `kit.least_load_indexed` answers from the
tree with the scan's own tie rule (the first minimum met scanning round the list from an
offset), so decisions are the scan's.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .info import INFO_GLOBAL, INFO_LOCAL, INFO_PIGGYBACK, INFO_STALE, load_of
from .lowlevel import RunStateCompiler, _view, inlined
from .. import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)

INF = np.iinfo(np.int32).max      # the trees are int32: in-flight requests are counted in int32 slots
BLOCK = 16                        # leaves per bottom node in a large index (fewer in a service of fewer leaves)
SMALL = 1 << 20                   # an index of at most this many rows x leaves has a node per leaf


class Layout(NamedTuple):
    """Where each service's part of the map and of a tree row lies."""
    off: np.ndarray      # the map's offset per service (li_off)
    p: np.ndarray        # leaves per service, a power of two (li_p)
    map_len: int         # the map's length
    toff: np.ndarray     # the tree's offset per service in a row (li_toff)
    nb: np.ndarray       # blocks per service (li_nb): p, or max(p / BLOCK, 1) in a large index
    row_len: int         # a tree row's length


def no_index(n_services: int) -> Layout:
    """The layout of a run whose strategy keeps no index: empty map and trees."""
    zero = np.zeros(n_services, dtype=np.int64)
    return Layout(zero, zero, 0, zero, zero, 0)


def layout(task_service: np.ndarray, n_services: int, room: bool = False, rows: int = 1) -> Layout:
    """Each service's map offset and leaf count (a power of two at least its number of task
    slots, which bounds its table's length), tree offset and block count. With `room` (the
    tables change during the run), at least a quarter more leaves than slots: a join that finds
    every leaf used renumbers and rebuilds the service's trees, which then happens at most once
    per slots / 4 joins. An index of at most SMALL rows x leaves (one row for `global` and
    `stale` up to a million tasks; `local` with few balancers) has a bottom node per leaf: its
    8 MB at most cost nothing, and a change or a query reads one leaf, not a block of 16. A
    larger one has blocks of BLOCK leaves (1,000 rows x 16,384 leaves: 8 MB, not 131)."""
    li_p = np.zeros(n_services, dtype=np.int64)
    li_off = np.zeros(n_services, dtype=np.int64)
    li_nb = np.zeros(n_services, dtype=np.int64)
    li_toff = np.zeros(n_services, dtype=np.int64)
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
    block = 1 if rows * (at // 2) <= SMALL else BLOCK
    tat = 0
    for s in range(n_services):
        li_nb[s], li_toff[s] = max(int(li_p[s]) // block, 1), tat
        tat += 2 * int(li_nb[s])
    return Layout(li_off, li_p, at, li_toff, li_nb, tat)


def rows_for(info_kind: str, n_bal: int) -> int:
    """Rows of trees an information model needs: one per balancer when each knows its own."""
    return n_bal if info_kind in ("local", "piggyback") else 1


@inlined
def _set(tree, off, nb, j, value):
    """Block j's node of the tree at `off` (nb blocks) to value, and its ancestors to their
    minima, stopping at the first that does not change."""
    i = nb + j
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


@njit(inline="always", cache=True)
def leaf_load(where, load, q):
    """Leaf q's value: the load of the task holding it, +inf when none does (`where`: a
    service's part of the map)."""
    k = where[q]
    return np.int32(load[k]) if k >= 0 else np.int32(INF)


@inlined
def _block_min(where, load, lo, n):
    best = np.int32(INF)
    for q in range(lo, lo + n):
        v = leaf_load(where, load, q)
        if v < best:
            best = v
    return best


@inlined
def _reblock(cfg, tree, load, s, leaf):
    """Leaf `leaf`'s block node of service s's tree (in one row, of loads `load`), from its
    leaves, and its ancestors."""
    toff = cfg.li_toff[s]
    sh = tree[toff]
    j = leaf >> sh
    where = _view(cfg.li_map, cfg.li_off[s], cfg.li_p[s])
    _set(tree, toff, cfg.li_nb[s], j, _block_min(where, load, j << sh, 1 << sh))


@inlined
def _lowered(cfg, tree, s, leaf, v):
    """Leaf `leaf` of service s now holds v, and held +inf or more before (a join): its block's
    least is the lesser of the two."""
    nb = cfg.li_nb[s]
    toff = cfg.li_toff[s]
    j = leaf >> tree[toff]
    if v < tree[toff + nb + j]:
        _set(tree, toff, nb, j, v)


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def touch(cfg, st, b, k):
    """Task k's load as balancer b sees it changed (b: the balancer whose count changed; any
    under `global`). Nothing without an index, under `stale` (refreshes rebuild), or for a task
    out of the tables. A load below its block's least is the new least; one above it changes the
    block only when no other leaf of it still holds the old least (then the block is read
    again). Compiled once for every strategy and called, not inlined (inlined at its four sites
    in the kernel it doubled a first compile's time); callers pass int64 b and k, so that it
    has one signature."""
    tree = st.li_tree
    if tree.shape[1] == 0 or cfg.info == INFO_STALE:
        return
    leaf = cfg.li_leaf[k]
    if leaf < 0:
        return
    s = cfg.task_service[k]
    row = tree[np.int64(0) if cfg.info == INFO_GLOBAL else np.int64(b)]
    load = load_of(cfg, st, b)
    v = np.int32(load[k])
    nb = cfg.li_nb[s]
    toff = cfg.li_toff[s]
    sh = row[toff]          # (shifts, not divisions: two of them per change cost 10% of a decision)
    j = leaf >> sh
    least = row[toff + nb + j]
    if v < least or (v > least and sh == 0):     # (a block of one leaf: v is its least)
        _set(row, toff, nb, j, v)
    elif v > least:
        where = _view(cfg.li_map, cfg.li_off[s], cfg.li_p[s])
        lo = j << sh
        bl = np.int64(1) << sh
        for q in range(lo, lo + bl):
            if leaf_load(where, load, q) <= least:
                return
        _set(row, toff, nb, j, _block_min(where, load, lo, bl))


@inlined
def _build_row(cfg, tree, load, s):
    toff = cfg.li_toff[s]
    p = cfg.li_p[s]
    nb = cfg.li_nb[s]
    bl = np.int64(1) << tree[toff]
    where = _view(cfg.li_map, cfg.li_off[s], p)
    for j in range(nb):
        tree[toff + nb + j] = _block_min(where, load, j * bl, bl)
    for i in range(nb - 1, 0, -1):
        a = tree[toff + 2 * i]
        c = tree[toff + 2 * i + 1]
        tree[toff + i] = a if a <= c else c


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
def leave(cfg, st, k, pos):
    """Task k, at position `pos` of its service's table, is about to leave it
    (`control._table_remove`, before the shift): its leaf holds no task (+inf) and its block is
    read again in every row, the later positions' leaves move down a position with the table's.
    O(rows x (BLOCK + log n)), plus the shift."""
    if st.li_tree.shape[1] == 0:
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
        _reblock(cfg, tree[r], load_of(cfg, st, r), s, leaf)


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
            _lowered(cfg, tree[r], s, leaf, np.int32(load_of(cfg, st, r)[k]))
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
    return _view(tree[row], cfg.li_toff[s], 2 * cfg.li_nb[s])


@njit(inline="always", cache=True)
def map_of(cfg, s):
    """Service s's leaves' tasks and its table positions' leaves (empty without an index): what
    a strategy sees as `view.index_map`. (Both are views without the slice's clamping of its
    bounds, which the layout keeps in range: per request, it costs instructions.)"""
    return _view(cfg.li_map, cfg.li_off[s], 2 * cfg.li_p[s])


def initial(table_len: np.ndarray, lay: Layout, rows: int) -> np.ndarray:
    """The trees at the start of a run: every load 0, +inf past each table's end (the initial
    tasks hold leaves 0..n-1, in table order: `initial_map`): a block is 0 when it holds one of
    them."""
    tree = np.full((rows, lay.row_len), INF, dtype=np.int32)
    for s in range(len(lay.p)):
        p, nb, toff = int(lay.p[s]), int(lay.nb[s]), int(lay.toff[s])
        if p == 0:
            continue
        level = np.full(2 * nb, INF, dtype=np.int32)
        level[nb:] = np.where(np.arange(nb) * (p // nb) < int(table_len[s]), 0, INF)
        for i in range(nb - 1, 0, -1):
            level[i] = min(level[2 * i], level[2 * i + 1])
        level[0] = (p // nb).bit_length() - 1       # log2 of the leaves per block
        tree[:, toff:toff + 2 * nb] = level
    return tree


def initial_map(table: np.ndarray, table_start: np.ndarray, table_len: np.ndarray, n_tasks: int,
                lay: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(li_leaf, li_map, li_next) at the start of a run: the task at table position i of a
    service holds its leaf i (empty arrays without an index: map_len 0)."""
    if lay.map_len == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    li_leaf = np.full(n_tasks, -1, dtype=np.int64)
    li_map = np.full(lay.map_len, -1, dtype=np.int32)
    for s in range(len(lay.p)):
        p, off, n, base = int(lay.p[s]), int(lay.off[s]), int(table_len[s]), int(table_start[s])
        tasks = table[base:base + n]
        li_map[off:off + n] = tasks
        li_map[off + p:off + p + n] = np.arange(n)
        li_leaf[tasks] = np.arange(n)
    return li_leaf, li_map, np.asarray(table_len, dtype=np.int64).copy()
