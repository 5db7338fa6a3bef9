"""Least work left: the task whose unfinished work would clear first (the "Dynamic" policy).

Origin: M. Harchol-Balter, M. E. Crovella and C. D. Murta, "On choosing a task assignment
policy for a distributed server system", Journal of Parallel and Distributed Computing 59(2),
1999 (the Dynamic policy: each task goes to the host with the least outstanding work, which
for FCFS hosts is the host where it starts first); with exact work figures it is the M/G/h
queue's central-queue assignment (a request waits exactly as long as under one FCFS queue in
front of h equal servers).

It reads `view.work`, each candidate's unfinished work (seconds of demand at speed 1.0), which
the engine fills under `balancer.info = "work"` (docs/model.md, "Information models"), and
picks the least `work / speed` (the seconds the task needs to clear it); ties (idle tasks)
break by rotation as in `least_load`. Under any other information model `view.work` is empty
and it falls back to the fewest outstanding requests (`least_load`'s choice).

State: [0] the rotation offset (`kit.rotate_from`, from `view.start`).
"""
from numba import njit

from lbbench.plugins import kit
from lbbench.strategy import Strategy


@njit(inline="always")
def _clears_sooner(work, speed, a, b):
    """Whether task a clears its work before task b (cross-multiplied: equal times tie exactly)."""
    return work[a] * speed[b] < work[b] * speed[a]


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    off = kit.rotate_from(state, 0, n, view.start)
    if view.work.shape[0] == 0:
        return kit.least_load_from(cands, view.load, off)
    work, speed = view.work, view.task_speed
    best = cands[off]
    for i in range(off + 1, n):
        if _clears_sooner(work, speed, cands[i], best):
            best = cands[i]
    for i in range(off):
        if _clears_sooner(work, speed, cands[i], best):
            best = cands[i]
    return best


STRATEGY = Strategy(
    name="least_work_left",
    select=select,
    description="least unfinished work / node speed under info = work (Harchol-Balter's Dynamic); ties by rotation",
    version="2",
    state_size=1,
    reads_work=True,
    boundscheck=False,
    reads_position=False,
)
