"""Round-robin: what Docker Swarm's ingress IPVS does (scheduler `rr`).

Each balancer keeps its own pointer per service and hands requests to the tasks of its table in
turn, starting at its start offset (`balancer.rr_start`): with N entry nodes, N uncoordinated
round-robins cycle over the same list. Reads no load information.

State: [0] position of the next task in the table (`kit.rotate`), [1] 1 once started.
"""
from numba import njit

from lbbench.plugins import kit
from lbbench.strategy import Strategy


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    if state[1] == 0.0:
        state[0] = view.start % n
        state[1] = 1.0
    return cands[kit.rotate(state, 0, n)]


STRATEGY = Strategy(
    name="round_robin",
    select=select,
    description="per-balancer pointer over the task list (Swarm ingress / IPVS rr), the reference",
    version="1",
    state_size=2,
    boundscheck=False,
    reads_load=False,
)
