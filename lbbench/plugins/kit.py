"""Pieces strategies share, compiled into the dispatch loop with the plugin that calls them
(`@njit(inline="always")`: no call per decision). The built-ins in `strategies/` use them;
docs/strategies.md ("The kit") shows them in a plugin.

- `rotate(state, i, n)`: a rotation offset kept in `state[i]` (ties by rotation, round-robin);
  `rotate_from(state, i, n, start)` the same, begun at the balancer's start offset (`view.start`);
- `least_load_from(cands, load, off)`: the least loaded candidate scanning round the list from
  position `off`, the first minimum met winning; `least_load_indexed(cands, view, off)` the
  same answer in O(log n) from the load index (`Strategy(load_index=True)`);
- `least_delay_from(cands, load, speed, off, idle_first)`: the same on (load + 1) / speed
  (IPVS `sed`), optionally taking the first idle candidate met (IPVS `nq`);
- `two_positions(rng, n)`, `draw_distinct(rng, n, drawn, base, j)`: distinct random positions;
- `mix64(x)`, `hash32(x)`: SplitMix64's finaliser (hashing client and task ids);
- `signature(cands)`: a number that changes when the candidate list changes (a task leaves,
  joins or moves); `list_changed(state, i, cands)` / `record_list(state, i, cands)` keep it
  and the list's length in state[i], state[i + 1], to rebuild per-position data or tables.

All draws come from the balancer's `rng` (`lbbench.rng`), so that a seed fixes a run.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..rng import _GOLDEN, _M1, _M2, _S27, _S30, _S31, _S32, integers


@njit(inline="always")
def rotate(state, i, n):
    """The rotation offset kept in state[i], reduced below n (the table may have shrunk since
    the last decision); state[i] moves on to the next position."""
    off = int(state[i])
    if off >= n:
        off %= n
    nxt = off + 1
    if nxt == n:
        nxt = 0
    state[i] = nxt
    return off


@njit(inline="always")
def rotate_from(state, i, n, start):
    """`rotate`'s offset moved on by `start` (pass `view.start`, this balancer's start offset:
    `balancer.rr_start`), below n. Balancers whose loads tie begin their rotations where their
    starts put them instead of all at position 0: under `local` information each balancer knows
    only its own requests, which have mostly completed by its next decision, so the loads it
    sees are mostly all 0 and a rotation from 0 sends every balancer to the same few tasks."""
    if start >= n or start < 0:     # (a division only when needed: never for a zero start)
        start %= n
    off = rotate(state, i, n) + start
    if off >= n:
        off -= n
    return off


@njit(inline="always")
def least_load_from(cands, load, off):
    """The candidate with the least load, scanning from position off round the list; the first
    minimum met wins (two straight scans, off..n-1 then 0..off-1, instead of one with a wrap
    test)."""
    n = cands.shape[0]
    best = cands[off]
    best_load = load[best]
    for i in range(off + 1, n):
        t = cands[i]
        if load[t] < best_load:
            best = t
            best_load = load[t]
    for i in range(off):
        t = cands[i]
        if load[t] < best_load:
            best = t
            best_load = load[t]
    return best


@njit(inline="always")
def _first_at_most(tree, p, lo, m):
    """The first leaf position >= lo whose value is at most m, or -1, in a min tree of p leaves
    (node p + q the leaf q): up from leaf lo while the node is a right child, across to the next
    subtree, down its leftmost qualifying path."""
    i = p + lo
    while True:
        if tree[i] <= m:
            while i < p:
                i = 2 * i if tree[2 * i] <= m else 2 * i + 1
            return i - p
        while i & 1:
            i >>= 1
        if i == 0:
            return -1
        i += 1


@njit(inline="always")
def _first_in_block(where, load, lo, hi, m):
    """The first leaf in lo..hi-1 whose task's load is at most m, or -1 (a leaf no task holds
    is +inf)."""
    for q in range(lo, hi):
        k = where[np.uint64(q)]
        if k >= 0 and load[k] <= m:
            return q
    return -1


@njit(inline="always")
def _first_leaf(tree, nb, sh, where, load, lo, m):
    """The first leaf >= lo holding at most m, or -1: the rest of lo's block, then the first
    later block whose least is at most m (the tree over the blocks), then that block's leaves
    (2**sh leaves a block)."""
    j = lo >> sh
    q = _first_in_block(where, load, lo, (j + 1) << sh, m)
    if q >= 0 or j + 1 >= nb:
        return q
    jb = _first_at_most(tree, nb, j + 1, m)
    if jb < 0:
        return -1
    return _first_in_block(where, load, jb << sh, (jb + 1) << sh, m)


@njit(inline="always")
def least_load_indexed(cands, view, off):
    """`least_load_from(cands, view.load, off)` in O(log n) from the load index (a strategy with
    `load_index=True`), the same answer: the least load m is the tree's root, the answer the
    first candidate at position off or after with load m, else the first one before. The
    index's leaves are in the candidates' order, with gaps where tasks left (`view.index_map`:
    the task at a leaf, the leaf of candidate off), and its tree (`view.load_index`) holds the
    least load of each block of consecutive leaves at its bottom (docs/strategies.md, "Going
    further"). Without an index (view.load_index empty), the scan."""
    tree = view.load_index
    if tree.shape[0] == 0:
        return least_load_from(cands, view.load, off)
    where = view.index_map
    p = where.shape[0] // 2
    nb = tree.shape[0] // 2
    sh = np.int64(tree[0])      # log2 of the leaves per block
    m = tree[1]
    load = view.load
    leaf = _first_leaf(tree, nb, sh, where, load, np.int64(where[np.uint64(p + off)]), m)
    if leaf < 0:
        leaf = _first_leaf(tree, nb, sh, where, load, np.int64(0), m)
    return where[np.uint64(leaf)]      # (unsigned indices: no test for a negative one)


@njit(inline="always")
def _delay_scan(cands, load, speed, lo, hi, best, best_num, best_speed, idle_first):
    """Least (load + 1) / speed over positions lo..hi-1 (cross-multiplied: equal delays tie
    exactly, the first met wins); with idle_first an idle candidate ends the scan at once
    (returned with best_num = 0)."""
    for i in range(lo, hi):
        t = cands[i]
        if idle_first and load[t] == 0:
            return t, 0.0, 1.0
        num = load[t] + 1.0
        if num * best_speed < best_num * speed[t]:
            best = t
            best_num = num
            best_speed = speed[t]
    return best, best_num, best_speed


@njit(inline="always")
def least_delay_from(cands, load, speed, off, idle_first):
    """The candidate with the least expected delay (load + 1) / speed, scanning from position
    off round the list (the first met wins a tie); with idle_first, the first idle candidate
    met instead, if any."""
    n = cands.shape[0]
    best = cands[off]
    if idle_first and load[best] == 0:
        return best
    best, num, sp = _delay_scan(cands, load, speed, off + 1, n, best, load[best] + 1.0, speed[best], idle_first)
    if idle_first and num == 0.0:
        return best
    best, num, sp = _delay_scan(cands, load, speed, 0, off, best, num, sp, idle_first)
    return best


@njit(inline="always")
def two_positions(rng, n):
    """Two distinct positions in [0, n), n >= 2, from one draw each (the second skips the first)."""
    ia = integers(rng, n)
    ib = integers(rng, n - 1)
    if ib >= ia:
        ib += 1
    return ia, ib


@njit(inline="always")
def draw_distinct(rng, n, drawn, base, j):
    """A position in [0, n) not among the j drawn before it (drawn[base:base + j]; drawn again
    until fresh), stored at drawn[base + j] and returned. j < n."""
    while True:
        i = integers(rng, n)
        fresh = True
        for u in range(j):
            if drawn[base + u] == i:
                fresh = False
                break
        if fresh:
            break
    drawn[base + j] = i
    return i


@njit(inline="always")
def mix64(x):
    """SplitMix64's finaliser of the uint64 x + golden ratio: 64 well-mixed bits (what
    `lbbench.rng.next_u64` returns for the state x, without advancing anything)."""
    z = x + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always")
def hash32(x):
    """The top 32 bits of mix64(x), as a float64 (exact)."""
    return np.float64(mix64(x) >> _S32)


@njit(inline="always")
def signature(cands):
    """Sum of (task + 1) * (2 position + 1): changes when a task leaves, joins or moves (exact
    in an int64, and in a float64 below 2**53)."""
    s = 0
    for i in range(cands.shape[0]):
        s += (np.int64(cands[i]) + 1) * (2 * i + 1)
    return s


@njit(inline="always")
def list_changed(state, i, cands):
    """Whether cands differs from the list recorded in state[i], state[i + 1] (`record_list`):
    true at the first call, and after a task left, joined or moved."""
    return state[i + 1] != cands.shape[0] or state[i] != signature(cands)


@njit(inline="always")
def record_list(state, i, cands):
    """Record cands's signature and length in state[i], state[i + 1] (see `list_changed`)."""
    state[i] = signature(cands)
    state[i + 1] = cands.shape[0]
