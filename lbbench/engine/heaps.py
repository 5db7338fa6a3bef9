"""The request events' heaps (docs/architecture.md, "The engine")."""
import numpy as np
from numba import njit

from .lowlevel import RunStateCompiler, inlined
from .. import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)


# 4-ary min-heaps on (key, slot) pairs, sift with a hole. Fewer levels than a binary heap and
# a branch-light pick of the smallest child; keys past the end are +inf (state.HEAP_PAD slots), so
# the children of a node can be read without bounds tests.
# They are compiled once, as functions of their own (cached on disk, shared by every strategy's
# kernel), and LLVM inlines them into the kernel: inlining them in numba's IR instead made every
# strategy's kernel type and lower them again (2 s of a heap kernel's compile), for the same
# machine code. `_sift_down` is the exception: it is inlined into `heap_pop` and `_crash`, both
# shared, which spares a first run one compile
# (docs/architecture.md, "Specialisation per strategy").

@njit(cache=True)
def heap_push(key, slot, n, k, s):
    i = n
    while i > 0:
        p = (i - 1) >> 2
        if key[p] <= k:
            break
        key[i] = key[p]
        slot[i] = slot[p]
        i = p
    key[i] = k
    slot[i] = s
    return n + 1


@inlined
def _sift_down(key, slot, n, i):
    """Move the pair at i down to its place among the first n (keys from n on are +inf)."""
    k = key[i]
    s = slot[i]
    while True:
        c = 4 * i + 1
        if c >= n:
            break
        m = c
        km = key[c]
        k1 = key[c + 1]
        if k1 < km:
            m = c + 1
            km = k1
        k2 = key[c + 2]
        if k2 < km:
            m = c + 2
            km = k2
        k3 = key[c + 3]
        if k3 < km:
            m = c + 3
            km = k3
        if km >= k:
            break
        key[i] = km
        slot[i] = slot[m]
        i = m
    key[i] = k
    slot[i] = s


@njit(cache=True)
def heap_pop(key, slot, n):
    """Remove the root; returns the new size. The caller read key[0], slot[0] first."""
    n -= 1
    key[0] = key[n]
    slot[0] = slot[n]
    key[n] = np.inf
    _sift_down(key, slot, n, np.int64(0))
    return n


@njit(cache=True)
def heap_replace(key, slot, n, k):
    """The root's key becomes k (its slot stays) and the root moves down to its place: a pop and
    a push of the same slot in one pass."""
    key[0] = k
    _sift_down(key, slot, n, np.int64(0))


# The control events' tournament tree (control.py): here, beside the other queues, so that the
# request path (requests.py) can set a closed loop's user timers without importing control.py.
# timer_set's callers pass the timer's id as an int64 (np.int64 on a constant or an int32): each
# other argument type (a literal, int32) would be one more compiled copy on a first run.
@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, pipeline_class=RunStateCompiler)
def timer_set(st, i, t):
    """Set timer i to time t (inf: off) and restore the tournament above it."""
    tree_set(st.ctl_t, st.ctl_i, i, t)


@inlined
def tree_set(ct, ci, i, t):
    """Set leaf i of the tournament tree (ct, ci) to time t and restore the tree above it: each
    inner node holds the earlier of its children, a tie going to the lower id (the left child).
    The walk goes up to the root, the leaf's value meeting each sibling's on the way, the winner
    selected without a branch: the siblings' addresses are known from the leaf, so their loads
    do not wait on each other, and there is no branch to mispredict (the walk that tested each
    node's two children and stopped at the first unchanged one took twice as long on a closed
    loop's 1,000 user timers, whose sends always change the path to the root)."""
    j = (ct.shape[0] >> 1) + i
    ct[j] = t
    v = t
    w = ci[j]
    while j > 1:
        s = ct[j ^ 1]
        si = ci[j ^ 1]
        take = (s < v) | ((s == v) & (si < w))
        v = s if take else v
        w = si if take else w
        j >>= 1
        ct[j] = v
        ci[j] = w


@inlined
def timer_at(st, i):
    return st.ctl_t[(st.ctl_t.shape[0] >> 1) + i]
