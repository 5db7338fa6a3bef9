"""Least-load: the task with the fewest outstanding requests (IPVS `lc`, join-the-shortest-queue).

The load figures are whatever the balancer's information model reports: true outstanding
requests (`global`), the requests this entry node sent (`local`, what IPVS knows), or a stale
snapshot (`stale:P`). Ties break by rotation: the scan starts one position further along the
candidate list at every decision and keeps the first minimum it meets, so tied tasks share
the load evenly and deterministically (IPVS itself always takes the first in its list).
"""
from numba import njit

from lbbench.strategy import Strategy


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    off = int(state[0])
    if off >= n:            # the table shrank since the last decision
        off %= n
    state[0] = off + 1.0 if off + 1 < n else 0.0
    load = view.load
    best = cands[off]
    best_load = load[best]
    # two straight scans (off+1..n-1, then 0..off-1) instead of one with a wrap test
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


STRATEGY = Strategy(
    name="least_load",
    select=select,
    description="fewest outstanding requests per the information model (IPVS lc, JSQ); ties by rotation",
    version="1",
    state_size=1,
    boundscheck=False,
)
