"""Never queue: an idle task if there is one, else shortest expected delay (IPVS `nq`).

Origin: the IPVS Never Queue scheduler (`ip_vs_nq.c`, Wensong Zhang): a server with no active
connection gets the request at once, however slow it is ("never queue" when a server is
idle); otherwise the task minimising (outstanding + 1) / weight wins, as in `sed`. Here the
weight is the node's speed and "idle" and "outstanding" are the information model's load
figures.

The scan starts one position further along the candidate list at every decision (the first
idle task met from there wins; ties of the delay break the same way), so idle tasks and tied
tasks share the load; IPVS scans from the head of its list. State: [0] the rotation offset.
"""
from numba import njit

from lbbench.strategy import Strategy


@njit(inline="always")
def _scan(cands, load, speed, lo, hi, best, best_num, best_speed):
    """Shortest expected delay over positions lo..hi-1; an idle task ends the scan at once
    (returned with best_num = 0)."""
    for i in range(lo, hi):
        t = cands[i]
        if load[t] == 0:
            return t, 0.0, 1.0
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
    if load[best] == 0:
        return best
    best, num, sp = _scan(cands, load, speed, off + 1, n, best, load[best] + 1.0, speed[best])
    if num == 0.0:
        return best
    best, num, sp = _scan(cands, load, speed, 0, off, best, num, sp)
    return best


STRATEGY = Strategy(
    name="never_queue",
    select=select,
    description="an idle task if any, else least (outstanding + 1) / node speed (IPVS nq)",
    version="1",
    state_size=1,
    boundscheck=False,
)
