"""Consistent hashing with bounded loads: the ring of `ring_hash`, skipping a task that already
holds its share of the outstanding requests.

Origin: Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads", SODA 2018;
in HAProxy as `hash-balance-factor` (a factor of 100 (1 + eps)). A request goes to the first task
clockwise on the client's ring (the same ring and points as `ring_hash`) whose outstanding
requests, per the information model, are below the cap

    ceil((1 + eps) * (L + 1) / n)

where L is the requests outstanding at the n candidates and + 1 is the request being placed
(its mean load counts it, as HAProxy's does). A task below the cap always exists (the cap
exceeds the mean), so the walk ends within one turn of the ring. After the decision the chosen
task holds at most the cap: with global information, max/mean load is at most 1 + eps at every
decision up to the cap's rounding up (no task is ever sent a request that takes it past the
cap; a task can stand above a cap that later completions lowered, as no request is moved).
eps = infinity is `ring_hash`; a small eps trades affinity (clients served away from their
ring task) for balance.

State: that of `ring_hash` (its signature, n, the ring). Reads the client id and the load.
"""
import math

from numba import njit

from lbbench.plugins import kit
from lbbench.strategy import Param, Strategy

from . import ring_hash


@njit
def select(cands, view, state, rng):
    if kit.list_changed(state, 0, cands):
        ring_hash.build(cands, state, view.params.points)
    n = cands.shape[0]
    load = view.load
    total = 0
    for i in range(n):
        total += load[cands[i]]
    cap = math.ceil((1.0 + view.params.eps) * (total + 1) / n)
    r = int(state[2])
    i = ring_hash.position(state, view.client)
    for _ in range(r):
        t = ring_hash.task_at(state, i)
        if load[t] < cap:
            return t
        i += 1
        if i == r:
            i = 0
    return ring_hash.task_at(state, i)      # not reached: some task is below the cap


STRATEGY = Strategy(
    name="bounded_hash",
    select=select,
    description="consistent hashing with bounded loads: ring hash skipping tasks at ceil((1 + eps) x mean) (Mirrokni et al. 2018)",
    version="1",
    params=(Param("eps", 0.25, 0.0, 1e6, doc="allowed excess over the mean load (HAProxy hash-balance-factor / 100 - 1)"),
            Param("points", 160, 1, 65536, integer=True, doc="ring points per task (as ring_hash)")),
    state_size=ring_hash.STRATEGY.state_size,
    reads_load=True,
    reads_client=True,
    reads_position=False,
)
