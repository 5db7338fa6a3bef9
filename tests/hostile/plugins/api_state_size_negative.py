"""A state_size function that gives a negative size for some parameter values (one line naming the plugin, exit 2)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="api_state_size_negative", select=select, reads_load=False,
                    state_size=lambda params: 1 - int(params["k"]), params=(Param("k", 1, 0, 10, integer=True),))
