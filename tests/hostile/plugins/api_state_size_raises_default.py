"""A state_size function that raises at the defaults (refused as the spec is built: one line, exit 2)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="api_state_size_raises_default", select=select, reads_load=False,
                    state_size=lambda params: int(params["k"]) // 0, params=(Param("k", 1, 0, 10, integer=True),))
