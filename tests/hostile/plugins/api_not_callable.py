"""A select that is not a function (refused as the spec is built: run, sweep and check give one line, exit 2)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="api_not_callable", select=3, reads_load=False)
