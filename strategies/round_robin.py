"""Round-robin: what Docker Swarm's ingress IPVS does (scheduler `rr`).

Each balancer keeps its own pointer per service and hands requests to the tasks of its table in
turn, starting at its start offset (`balancer.rr_start`): with N entry nodes, N uncoordinated
round-robins cycle over the same list. Reads no load information. With slow start
(`balancer.slow_start`) a ramping task takes its turn with probability its weight (the
balancer's random stream), else passes it on.

State: [0] position of the next task in the table (`kit.rotate`), [1] 1 once started.
"""
from numba import njit

from lbbench.plugins import kit
from lbbench.rng import uniform
from lbbench.strategy import Strategy


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    if state[1] == 0.0:
        state[0] = view.start % n
        state[1] = 1.0
    k = cands[kit.rotate(state, 0, n)]
    w = view.weight
    if w.shape[0] > 0:
        # slow start: a task of weight w < 1 takes its turn with probability w, else the next one
        # does (at most one round)
        tries = 1
        while w[k] < 1.0 and tries < n and uniform(rng) >= w[k]:
            k = cands[kit.rotate(state, 0, n)]
            tries += 1
    return k


STRATEGY = Strategy(
    name="round_robin",
    select=select,
    description="per-balancer pointer over the task list (Swarm ingress / IPVS rr), the reference",
    version="1",
    state_size=2,
    boundscheck=False,
    reads_load=False,
    reads_position=False,
)
