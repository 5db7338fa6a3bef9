"""A parameter named like a method of the named tuple view.params (refused as the spec is built: run, sweep and check give one line, exit 2)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="api_param_reserved", select=select, reads_load=False, params=(Param("count", 1.0),))
