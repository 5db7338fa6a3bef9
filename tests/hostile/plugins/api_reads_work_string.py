"""A reads_work that is not a bool (refused as the spec is built: run, sweep and check give one line, exit 2)."""
from numba import njit

from lbbench.strategy import Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="api_reads_work_string", select=select, reads_load=False, reads_work="yes")
