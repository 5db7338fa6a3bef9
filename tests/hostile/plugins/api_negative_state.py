"""A negative state_size (refused as the spec is built: run, sweep and check give one line, exit 2)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="api_negative_state", select=select, reads_load=False, state_size=-5)
