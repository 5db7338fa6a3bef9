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

State: [0] signature of the candidate list (sum of (task + 1) * (2 position + 1), computed in
the same pass; it changes when a task leaves, joins or moves), [1] its length, [2 + i] current
weight of the candidate at position i; all reset when the candidate list changes.
At most `CAPACITY` candidates per service.
"""
import numpy as np
from numba import njit

from lbbench.strategy import Param, Strategy

CAPACITY = 4096


@njit(inline="always")
def _scan(cands, state, speed, power, lo, hi, best, best_cw, total):
    """One pass over positions lo..hi-1: add each weight to its current weight, keep the max."""
    sig = 0
    for i in range(lo, hi):
        t = cands[i]
        sig += (np.int64(t) + 1) * (2 * i + 1)
        if power == 1.0:
            w = speed[t]
        elif power == 0.0:
            w = 1.0
        else:
            w = speed[t] ** power
        cw = state[2 + i] + w
        state[2 + i] = cw
        total += w
        if cw > best_cw:
            best = i
            best_cw = cw
    return best, best_cw, total, sig


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    if n > CAPACITY:
        raise ValueError("weighted_round_robin: more than 4096 candidates")
    power = view.params[0]
    speed = view.task_speed
    off = view.start % n
    while True:
        # ties go to the first from the start offset: scan off..n-1, then 0..off-1
        best, best_cw, total, s1 = _scan(cands, state, speed, power, off, n, off, -np.inf, 0.0)
        best, best_cw, total, s2 = _scan(cands, state, speed, power, 0, off, best, best_cw, total)
        if state[1] == n and state[0] == s1 + s2:
            break
        # first decision, or the candidate list changed: start from zero and decide again
        state[0] = s1 + s2
        state[1] = n
        for i in range(n):
            state[2 + i] = 0.0
    state[2 + best] -= total
    return cands[best]


STRATEGY = Strategy(
    name="weighted_round_robin",
    select=select,
    description="smooth weighted round-robin, weight = node speed ** power (IPVS wrr)",
    version="1",
    params=(Param("power", 1.0, 0.0, 8.0, doc="weight = node speed ** power; 0 gives plain round-robin"),),
    state_size=2 + CAPACITY,
    reads_load=False,
    boundscheck=False,
)
