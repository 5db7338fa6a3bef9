"""Weighted round-robin, smooth (interleaved): IPVS `wrr` with weights from node speed.

Origin: the IPVS weighted round-robin scheduler (`ip_vs_wrr.c`, Wensong Zhang, LVS) serves
each real server in proportion to its weight. This is the *smooth* variant (nginx's upstream
weighted round-robin, Maxim Dounin, 2012): at every decision each candidate's current weight
grows by its weight, the largest current weight wins and loses the total. The shares are
exactly the weights' and the picks are interleaved (weights 5, 1, 1 give a a b a c a a, where
IPVS's gcd sequence gives a a a a a b c), with real-valued weights and no gcd.

Weight of a task: `speed ** power` of its node (`power` = 1: proportional to speed, IPVS's
usual configuration; 0: plain round-robin). Reads no load information. Each balancer keeps its
own current weights; ties go to the first candidate from the balancer's start offset, so with
equal weights it is `round_robin`.

State: [0] signature of the candidate list, [1] its length (`kit.list_changed`: they change
when a task leaves, joins or moves). Per task (`task_state`, sized by the engine to the run's
tasks, so any number of candidates): [t, 0] its current weight; the candidates' are reset when
the candidate list changes. (Kept per task id, not per position: a balancer's task_state
serves all its services, and positions of different services would collide.)
"""
import numpy as np
from numba import njit

from lbbench.plugins import kit
from lbbench.strategy import Param, Strategy

CW = 0      # task_state column: the current weight of a task


@njit(inline="always")
def _scan(cands, cw, speed, power, lo, hi, best, best_cw, total):
    """One pass over positions lo..hi-1: add each weight to its current weight, keep the max."""
    for i in range(lo, hi):
        t = cands[i]
        if power == 1.0:
            w = speed[t]
        elif power == 0.0:
            w = 1.0
        else:
            w = speed[t] ** power
        c = cw[t, CW] + w
        cw[t, CW] = c
        total += w
        if c > best_cw:
            best = i
            best_cw = c
    return best, best_cw, total


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    cw = view.task_state
    if kit.list_changed(state, 0, cands):
        # first decision, or the candidate list changed: start from zero
        kit.record_list(state, 0, cands)
        for i in range(n):
            cw[cands[i], CW] = 0.0
    power = view.params.power
    speed = view.task_speed
    off = view.start % n
    # ties go to the first from the start offset: scan off..n-1, then 0..off-1
    best, best_cw, total = _scan(cands, cw, speed, power, off, n, off, -np.inf, 0.0)
    best, best_cw, total = _scan(cands, cw, speed, power, 0, off, best, best_cw, total)
    cw[cands[best], CW] -= total
    return cands[best]


STRATEGY = Strategy(
    name="weighted_round_robin",
    select=select,
    description="smooth weighted round-robin, weight = node speed ** power (IPVS wrr)",
    version="1",
    params=(Param("power", 1.0, 0.0, 8.0, doc="weight = node speed ** power; 0 gives plain round-robin"),),
    state_size=2,
    task_state=1,
    reads_load=False,
    boundscheck=False,
    reads_position=False,
)
