"""A parameter whose range is empty (low above high)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="attack_inverted_range", select=select, reads_load=False,
                    params=(Param("d", 3, 5, 1),))
