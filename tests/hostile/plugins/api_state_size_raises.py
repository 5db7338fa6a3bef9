"""A state_size function that raises for some parameter values (a run with them: one line naming the plugin, exit 2)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


def size(params):
    if params["k"] > 3:
        raise ValueError("no table for k above 3")
    return 1


STRATEGY = Strategy(name="api_state_size_raises", select=select, reads_load=False, state_size=size,
                    params=(Param("k", 1, 0, 10, integer=True),))
