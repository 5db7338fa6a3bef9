"""A state_size function whose size passes the limit for large parameter values (one line naming the parameter, exit 2)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="api_state_size_huge", select=select, reads_load=False,
                    state_size=lambda params: 1_000_000 * int(params["k"]), params=(Param("k", 1, 1, 1000, integer=True),))
