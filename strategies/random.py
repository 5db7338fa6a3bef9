"""Random: a task drawn uniformly from the balancer's table, from the balancer's own stream."""
from numba import njit

from lbbench.rng import integers
from lbbench.strategy import Strategy


@njit
def select(cands, view, state, rng):
    return cands[integers(rng, cands.shape[0])]


STRATEGY = Strategy(
    name="random",
    select=select,
    description="uniform choice among the candidates (each balancer has its own random stream)",
    version="1",
    state_size=1,
    boundscheck=False,
    reads_load=False,
    reads_position=False,
)
