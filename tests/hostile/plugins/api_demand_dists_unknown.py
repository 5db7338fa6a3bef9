"""demand_dists naming a distribution lbbench does not have (refused as the spec is built: one line, exit 2)."""
from numba import njit

from lbbench.strategy import Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="api_demand_dists_unknown", select=select, reads_load=False, demand_dists=("pareto", "zipf"))
