"""A state_size function that gives no whole number (refused as the spec is built: one line, exit 2)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="api_state_size_float", select=select, reads_load=False,
                    state_size=lambda params: params["k"] / 2, params=(Param("k", 2, 0, 10, integer=True),))
