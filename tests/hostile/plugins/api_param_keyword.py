"""A parameter named like a Python keyword (it is read as view.params.NAME) (refused as the spec is built: run, sweep and check give one line, exit 2)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="api_param_keyword", select=select, reads_load=False, params=(Param("lambda", 1.0),))
