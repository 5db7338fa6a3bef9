"""A parameter whose default lies outside its own range."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="attack_bad_default", select=select, reads_load=False,
                    params=(Param("d", 100, 1, 4),))
