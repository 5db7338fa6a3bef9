"""A select numba cannot type (a misspelt attribute of view)."""
from numba import njit


@njit
def select(cands, view, state, rng):
    return cands[view.lod[0] % cands.shape[0]]
