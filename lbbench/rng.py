"""Explicit random streams.

Python side: every purpose (arrival gaps, demand, entry nodes, clients, jitter, strategy,
placement, faults, connections, bursts' on/off periods, background batch work; a closed loop's users, each with its
own streams; sessions) has its own `numpy.random.Generator`, derived from the run's seed and a
fixed purpose key, so changing the strategy never changes the arrivals (common random numbers).

Compiled side: strategies get a per-balancer `rng` state (a uint64 array of length 1) and draw
with `uniform(rng)` / `integers(rng, n)`, a SplitMix64 generator: small, fast, and explicit
state rather than numba's hidden global one.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from . import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)

# Purpose keys: fixed forever (changing one changes every result for that purpose).
GAPS, SERVICE, ENTRY, CLIENT, JITTER, STRATEGY, PLACEMENT, FAULTS, DEMAND, CONNECTION = range(10)
# Closed loop: each user's own streams are keyed (USER, user, purpose, ...), THINK its think times.
USER, THINK = 10, 11
BURSTS = 12     # the on/off periods of workload.bursts
BACKGROUND = 13     # the on/off periods of cluster.background's random batch work
SESSION = 14    # sessions mode: the sessions' streams are keyed (SESSION, purpose, ...); (SESSION, SESSION) their request counts


def stream(seed: int, purpose: int, *sub: int) -> np.random.Generator:
    """The generator for one purpose (and optional sub-keys, e.g. a service index) of a seed."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(purpose, *sub))))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_S32 = np.uint64(32)


@njit(inline="always", cache=True)
def next_u64(rng):
    """Advance the SplitMix64 state in rng[0] and return 64 random bits."""
    z = rng[0] + _GOLDEN
    rng[0] = z
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def uniform(rng):
    """A float64 uniform on [0, 1)."""
    return np.float64(next_u64(rng) >> _S11) * (1.0 / 9007199254740992.0)


@njit(inline="always", cache=True)
def integers(rng, n):
    """An integer uniform on [0, n), n < 2**32 (Lemire's multiply-shift, bias below 2**-32)."""
    return np.int64(((next_u64(rng) >> _S32) * np.uint64(n)) >> _S32)


@njit(inline="always", cache=True)
def hash_uniform(key, a, b):
    """A uniform on [0, 1) from three non-negative integers (counter-based: SplitMix64's
    finaliser of key + a * golden + b * M1). The same (key, a, b) always gives the same value,
    in any order of calls: retry backoffs and entry re-routing use it so that a request's
    draws do not depend on what other requests did."""
    z = np.uint64(key) + np.uint64(a) * _GOLDEN + np.uint64(b) * _M1
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return np.float64(z >> _S11) * (1.0 / 9007199254740992.0)


def seed_states(gen: np.random.Generator, count: int) -> np.ndarray:
    """`count` independent SplitMix64 states, shape (count, 1)."""
    return gen.integers(0, 2**63, size=(count, 1), dtype=np.int64).astype(np.uint64)
