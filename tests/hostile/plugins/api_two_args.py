"""A select with the wrong arity: select(cands, view) instead of select(cands, view, state, rng)."""
from numba import njit


@njit
def select(cands, view):
    return cands[0]
