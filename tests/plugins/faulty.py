"""A deliberately faulty strategy for the contract tests; `mode` picks the fault:
0 behaves (round-robin), 1 returns an id past every task, 2 returns -3, 3 writes far outside
its state row, 4 raises after t = 1 s, 5 returns task 0 whatever the service, 6 draws from
numba's global random state (not deterministic), 7 decides on view.load and 8 on view.client
although the spec declares neither, 9 divides by zero (a float), 10 takes an integer modulo
by zero, 11 reads view.position, which the spec does not declare either, and 12 (for a copy of
the spec declaring reads_position) checks every task's position at every decision, returning a
non-candidate at the first wrong one."""
import numpy as np
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    mode = int(view.params[0])
    if mode == 1:
        return 99
    if mode == 2:
        return -3
    if mode == 3:
        state[1000000] = 1.0
    if mode == 4 and view.now > 1.0:
        raise ValueError("boom")
    if mode == 5:
        return 0
    if mode == 6:
        return cands[np.random.randint(0, cands.shape[0])]
    if mode == 7:
        best = cands[0]
        for t in cands:
            if view.load[t] < view.load[best]:
                best = t
        return best
    if mode == 8:
        return cands[max(view.client, 0) % cands.shape[0]]
    if mode == 9:
        return cands[int(1.0 / (view.now - view.now))]
    if mode == 10:
        return cands[view.start % (cands.shape[0] - cands.shape[0])]
    if mode == 11:
        return cands[view.position[cands[0]]]
    if mode == 12 and view.service == 0:
        # (one service: the tasks with a position are the candidates, each at its own, so n of
        # them and each where it says covers every candidate)
        n = cands.shape[0]
        found = 0
        for t in range(view.position.shape[0]):
            p = view.position[t]
            if p >= 0:
                if p >= n or cands[p] != t:
                    return 99
                found += 1
        if found != n:
            return 99
    state[0] += 1.0
    return cands[int(state[0]) % cands.shape[0]]


STRATEGY = Strategy(name="faulty", select=select, params=(Param("mode", 0, 0, 12, integer=True),),
                    description="faults on demand, for tests", reads_load=False,
                    reads_position=False)
