"""A select that returns a float: the engine would truncate it to a task id."""
from numba import njit

from lbbench.strategy import Strategy


@njit
def select(cands, view, state, rng):
    return 0.5 + cands[0]


STRATEGY = Strategy(name="api_float_return", select=select, reads_load=False)
