"""An on_complete with three parameters instead of five (refused as the spec is built: run, sweep and check give one line, exit 2)."""
from numba import njit

from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


def done(state, task, latency):
    pass


STRATEGY = Strategy(name="api_on_complete_arity", select=select, on_complete=done)
