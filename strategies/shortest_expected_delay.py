"""Shortest expected delay: the task minimising (outstanding + 1) / speed (IPVS `sed`).

Origin: the IPVS Shortest Expected Delay scheduler (`ip_vs_sed.c`, Wensong Zhang, after
Weinrib and Shenker, "Greed is not enough: adaptive load sharing in large heterogeneous
systems", INFOCOM 1988): a new request waits for the requests already at a server, which
clears them at a rate proportional to its weight, so the expected delay is
(outstanding + 1) / weight. Here the weight is the node's speed and the outstanding count is
the information model's load figure. With equal speeds it is `least_load`.

Comparisons are cross-multiplied ((a + 1) * speed_b < (b + 1) * speed_a), so equal delays tie
exactly; ties break by rotation as in `least_load` (IPVS takes the first in its list).
State: [0] the rotation offset.
"""
from numba import njit

from lbbench.strategy import Strategy


@njit(inline="always")
def _scan(cands, load, speed, lo, hi, best, best_num, best_speed):
    for i in range(lo, hi):
        t = cands[i]
        num = load[t] + 1.0
        if num * best_speed < best_num * speed[t]:
            best = t
            best_num = num
            best_speed = speed[t]
    return best, best_num, best_speed


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    off = int(state[0])
    if off >= n:            # the table shrank since the last decision
        off %= n
    state[0] = off + 1.0 if off + 1 < n else 0.0
    load = view.load
    speed = view.task_speed
    best = cands[off]
    # two straight scans (off+1..n-1, then 0..off-1) instead of one with a wrap test
    best, num, sp = _scan(cands, load, speed, off + 1, n, best, load[best] + 1.0, speed[best])
    best, num, sp = _scan(cands, load, speed, 0, off, best, num, sp)
    return best


STRATEGY = Strategy(
    name="shortest_expected_delay",
    select=select,
    description="least (outstanding + 1) / node speed (IPVS sed); ties by rotation",
    version="1",
    state_size=1,
    boundscheck=False,
)
