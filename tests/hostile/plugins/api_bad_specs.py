"""Specs that `lbbench check` calls faulty; `run` and `sweep` must refuse them at load."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


DUP_PARAM = Strategy(name="api_dup_param", select=select, reads_load=False,
                     params=(Param("d", 2, 1, 4), Param("d", 3, 1, 4)))
NEGATIVE_STATE = Strategy(name="api_negative_state", select=select, reads_load=False, state_size=-5)
EMPTY_NAME = Strategy(name="", select=select, reads_load=False)
NOT_CALLABLE = Strategy(name="api_not_callable", select=3, reads_load=False)
