"""Ring hash: consistent hashing of the client id onto a ring of task points.

Origin: Karger, Lehman, Leighton, Panigrahy, Levine and Lewin, "Consistent hashing and random
trees", STOC 1997; with a fixed number of points per server as in libketama (160 per server,
used by nginx `hash ... consistent`) and Envoy's `RING_HASH`. Each task puts `points` points
on a ring of 32-bit hashes (a hash of its task id and the point's number, so a task's points do
not depend on the other tasks); a client goes to the task owning the first point at or after
the client's hash. When one of n tasks leaves, only its own clients (about 1/n) move: every
other client keeps its task. (Envoy instead spreads `minimum_ring_size` points over the
tasks, so the points per task, and some clients of the remaining tasks, change with n.)

The ring is built in this balancer's state at its first decision and rebuilt whenever the
candidate list changes, detected by a signature of the list kept in the state (checked at
every decision). Reads the client id (`reads_client`), no load information. SplitMix64 hashes
(`kit.hash32`).

State: [0] signature, [1] n (`kit.list_changed`), [2] number of ring points R, then the R
points sorted, each stored as hash * 2**20 + task id (exact in a float64; task ids below 2**20). At most
`MAX_RING` = 65536 points, 512 KB per balancer and service: past 65536 / points tasks (409 at the
default 160) each task gets floor(65536 / n) points instead, so a large service still has a ring
(20,000 tasks: 3 points each); a run within the cap is unchanged.
"""
import numpy as np
from numba import njit

from lbbench.plugins import kit
from lbbench.strategy import Param, Strategy

MAX_RING = 1 << 16
RING = 3
TASK_BITS = 20
TASK_SCALE = float(1 << TASK_BITS)

_CLIENT_SALT = np.uint64(0x5851F42D4C957F2D)
_S32 = np.uint64(32)


@njit(inline="always")
def _sift(ring, root, end):
    v = ring[root]
    while True:
        c = 2 * root + 1
        if c >= end:
            break
        if c + 1 < end and ring[c] < ring[c + 1]:
            c += 1
        if v >= ring[c]:
            break
        ring[root] = ring[c]
        root = c
    ring[root] = v


@njit
def build(cands, state, points):
    """Fill the ring for `cands` into `state` (a heapsort in place: no allocation)."""
    n = cands.shape[0]
    per = min(int(points), max(MAX_RING // n, 1))
    r = per * n
    if r > MAX_RING or state.shape[0] < RING + r:
        raise ValueError("ring_hash: more than 65536 tasks in a service")
    ring = state[RING:RING + r]
    for i in range(n):
        t = cands[i]
        if t >= (1 << TASK_BITS):
            raise ValueError("ring_hash: task id >= 2**20")
        for j in range(per):
            ring[i * per + j] = kit.hash32((np.uint64(t) << _S32) | np.uint64(j)) * TASK_SCALE + t
    for root in range(r // 2 - 1, -1, -1):
        _sift(ring, root, r)
    for end in range(r - 1, 0, -1):
        v = ring[0]
        ring[0] = ring[end]
        ring[end] = v
        _sift(ring, 0, end)
    kit.record_list(state, 0, cands)
    state[2] = r


@njit(inline="always")
def position(state, client):
    """The index of the first ring point at or after the client's hash (wrapping)."""
    key = kit.hash32(np.uint64(client) ^ _CLIENT_SALT) * TASK_SCALE
    r = int(state[2])
    lo = 0
    hi = r
    while lo < hi:
        mid = (lo + hi) >> 1
        if state[RING + mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo == r:
        lo = 0
    return lo


@njit(inline="always")
def task_at(state, i):
    """The task owning ring point i."""
    return np.int64(state[RING + i]) & ((1 << TASK_BITS) - 1)


@njit(inline="always")
def lookup(state, client):
    """The task owning the first ring point at or after the client's hash (wrapping)."""
    return task_at(state, position(state, client))


@njit
def select(cands, view, state, rng):
    if kit.list_changed(state, 0, cands):
        build(cands, state, view.params.points)
    return lookup(state, view.client)


STRATEGY = Strategy(
    name="ring_hash",
    select=select,
    description="consistent hashing of the client id on a ring of points per task (Karger et al.; ketama)",
    version="1",
    params=(Param("points", 160, 1, 65536, integer=True, doc="ring points per task (libketama: 160)"),),
    state_size=RING + MAX_RING,
    reads_load=False,
    reads_client=True,
    reads_position=False,
)
