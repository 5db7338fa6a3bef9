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


def streams(seed: int, keys) -> list[np.random.Generator]:
    """`[stream(seed, *key) for key in keys]`, the same generators, made about ten times
    faster: numpy's SeedSequence takes some 30 microseconds to hash one key, which a closed
    loop of 10,000 users (a few streams each) pays at its start. `keys`: equal-length tuples
    of integers. The hash is numpy's (SeedSequence's pool of 4 words and its generate_state),
    computed for all keys at once; tests/test_rng.py checks it against SeedSequence."""
    if not len(keys):
        return []
    if seed < 0:
        return [stream(seed, *key) for key in keys]       # (numpy refuses it: the same error)
    try:
        arr = np.asarray(keys)
    except (ValueError, OverflowError):         # ragged, or parts too wide for numpy's integers
        arr = None
    if arr is None or arr.ndim != 2 or arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= 1 << 32:
        return [stream(seed, *key) for key in keys]       # (each key part one 32-bit word, or not)
    states = _seed_states(int(seed), arr.astype(np.uint64))
    return [np.random.Generator(np.random.PCG64(_Given(row))) for row in states]


_U32 = np.uint64(0xFFFFFFFF)
_X16 = np.uint64(16)


def _seed_states(seed: int, keys: np.ndarray) -> np.ndarray:
    """SeedSequence(seed, spawn_key=key).generate_state(4, np.uint64) for each row of `keys`
    (uint64 values below 2**32, one 32-bit word each): (K, 4) uint64."""
    K = keys.shape[0]
    run = []
    n = seed
    while True:         # the seed's 32-bit words, least significant first (0: one word)
        run.append(n & 0xFFFFFFFF)
        n >>= 32
        if n == 0:
            break
    run += [0] * (4 - len(run))         # padded to the pool's size when there is a spawn key
    entropy = [np.full(K, w, dtype=np.uint64) for w in run] + [keys[:, j] for j in range(keys.shape[1])]
    h = 0x43B0D7E5

    def hashmix(v):
        nonlocal h
        v = v ^ np.uint64(h)
        h = (h * 0x931E8875) & 0xFFFFFFFF
        v = (v * np.uint64(h)) & _U32
        return v ^ (v >> _X16)

    def mix(x, y):
        r = (np.uint64(0xCA01F9DD) * x - np.uint64(0x4973F715) * y) & _U32
        return r ^ (r >> _X16)

    pool = [hashmix(entropy[i]) for i in range(4)]
    for i in range(4):
        for j in range(4):
            if i != j:
                pool[j] = mix(pool[j], hashmix(pool[i]))
    for i in range(4, len(entropy)):
        for j in range(4):
            pool[j] = mix(pool[j], hashmix(entropy[i]))
    hb = 0x8B51F9DD
    words = []
    for i in range(8):
        v = pool[i % 4] ^ np.uint64(hb)
        hb = (hb * 0x58F38DED) & 0xFFFFFFFF
        v = (v * np.uint64(hb)) & _U32
        words.append(v ^ (v >> _X16))
    out = np.empty((K, 4), dtype=np.uint64)
    for j in range(4):
        out[:, j] = words[2 * j] | (words[2 * j + 1] << np.uint64(32))
    return out


class _Given(np.random.bit_generator.ISeedSequence):
    """A seed sequence whose state is already computed (`streams`): PCG64 asks it for 4 words."""

    def __init__(self, state: np.ndarray):
        self.state = state

    def generate_state(self, n_words, dtype=np.uint32):
        if n_words != 4 or np.dtype(dtype) != np.uint64:
            raise ValueError("only PCG64's 4 uint64 words were computed")
        return self.state


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
