"""Hostile plugin: not Python."""
def select(cands, view, state, rng)
    return cands[0]
