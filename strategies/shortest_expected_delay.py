"""Shortest expected delay: the task minimising (outstanding + 1) / speed (IPVS `sed`).

Origin: the IPVS Shortest Expected Delay scheduler (`ip_vs_sed.c`, Wensong Zhang, after
Weinrib and Shenker, "Greed is not enough: adaptive load sharing in large heterogeneous
systems", INFOCOM 1988): a new request waits for the requests already at a server, which
clears them at a rate proportional to its weight, so the expected delay is
(outstanding + 1) / weight. Here the weight is the node's speed and the outstanding count is
the information model's load figure. With equal speeds it is `least_load`.

Comparisons are cross-multiplied ((a + 1) * speed_b < (b + 1) * speed_a), so equal delays tie
exactly; ties break by rotation as in `least_load` (IPVS takes the first in its list).
State: [0] the rotation offset (`kit.rotate_from`, from `view.start`); the scan is `kit.least_delay_from`.
"""
from numba import njit

from lbbench.plugins import kit
from lbbench.strategy import Strategy


def delay_select(idle_first: bool):
    """The select of `sed` (idle_first=False) and of `never_queue` (True: the first idle
    candidate met, if any): the rotation offset, then `kit.least_delay_from`."""
    @njit
    def select(cands, view, state, rng):
        off = kit.rotate_from(state, 0, cands.shape[0], view.start)
        return kit.least_delay_from(cands, view.load, view.task_speed, off, idle_first)
    return select


select = delay_select(False)


STRATEGY = Strategy(
    name="shortest_expected_delay",
    select=select,
    description="least (outstanding + 1) / node speed (IPVS sed); ties by rotation",
    version="2",
    state_size=1,
    boundscheck=False,
    reads_position=False,
)
