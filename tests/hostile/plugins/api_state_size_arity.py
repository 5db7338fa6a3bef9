"""A state_size function of no argument (refused as the spec is built: one line, exit 2)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="api_state_size_arity", select=select, reads_load=False, state_size=lambda: 4)
