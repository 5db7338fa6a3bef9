"""A parameter declared twice (refused as the spec is built: run, sweep and check give one line, exit 2)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="api_dup_param", select=select, reads_load=False,
                    params=(Param("d", 2, 1, 4), Param("d", 3, 1, 4)))
