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

import math

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


# ---- many short exponential walks, numpy's draws without numpy's generators ----
# A random fault schedule draws, for each of its targets (10,000 task slots, say), exponential
# gaps from the target's own stream until they pass the horizon: one or two draws for most.
# Making a numpy Generator costs some 3 microseconds (30 ms at 10,000 targets, more than a
# 10,000-task run's kernel spends on 300,000 requests). `exponential_walks` computes the same
# draws from the streams' states (`_seed_states`): numpy's PCG64 (128-bit LCG, XSL-RR output)
# and its exponential (the ziggurat's first try, numpy's tables, which numba carries). A walk
# that needs the ziggurat's other branch (about one draw in 90) is drawn again by numpy itself.

_PCG_MUL_HI = np.uint64(2549297995355413924)
_PCG_MUL_LO = np.uint64(4865540595714422341)
_U32_MASK = np.uint64(0xFFFFFFFF)
try:            # numpy's ziggurat tables for the exponential (numba is pinned: pyproject.toml)
    from numba.np.random._constants import ke_double as _KE, we_double as _WE
    _KE = np.asarray(_KE, dtype=np.uint64)
    _WE = np.asarray(_WE, dtype=np.float64)
except ImportError:     # pragma: no cover (every walk is then drawn by numpy)
    _KE = np.zeros(256, dtype=np.uint64)
    _WE = np.zeros(256, dtype=np.float64)


@njit(inline="always", cache=True)
def _mulhi(a, b):
    """The high 64 bits of the 128-bit product of two uint64."""
    a0, a1 = a & _U32_MASK, a >> _S32
    b0, b1 = b & _U32_MASK, b >> _S32
    p01, p10 = a0 * b1, a1 * b0
    mid = ((a0 * b0) >> _S32) + (p01 & _U32_MASK) + (p10 & _U32_MASK)
    return a1 * b1 + (p01 >> _S32) + (p10 >> _S32) + (mid >> _S32)


@njit(inline="always", cache=True)
def _pcg_step(hi, lo, inc_hi, inc_lo):
    """state * multiplier + inc, mod 2**128."""
    nhi = hi * _PCG_MUL_LO + lo * _PCG_MUL_HI + _mulhi(lo, _PCG_MUL_LO)
    nlo = lo * _PCG_MUL_LO
    rlo = nlo + inc_lo
    return nhi + inc_hi + np.uint64(rlo < nlo), rlo


@njit(cache=True)
def _walks(states, scales, horizon, ke, we):
    """For each row of `states` (4 uint64 words: PCG64's seed and increment, as numpy reads
    them): t = 0; repeat t += scales[i % len(scales)] * a standard exponential; stop past
    `horizon`, else emit (row, t, i % len(scales)). Returns (row, t, phase) of every event in
    row order, and a flag per row whose walk met the ziggurat's rare branch (its events are
    not emitted: numpy draws that row)."""
    K = states.shape[0]
    ns = len(scales)
    cap = 2 * K + 16
    rows = np.empty(cap, dtype=np.int64)
    times = np.empty(cap, dtype=np.float64)
    phases = np.empty(cap, dtype=np.int64)
    slow = np.zeros(K, dtype=np.bool_)
    n = 0
    one = np.uint64(1)
    for k in range(K):
        inc_hi = (states[k, 2] << one) | (states[k, 3] >> np.uint64(63))
        inc_lo = (states[k, 3] << one) | one
        hi, lo = _pcg_step(np.uint64(0), np.uint64(0), inc_hi, inc_lo)
        plo = lo + states[k, 1]
        hi = hi + states[k, 0] + np.uint64(plo < lo)
        hi, lo = _pcg_step(hi, plo, inc_hi, inc_lo)
        start = n
        t = 0.0
        i = 0
        while True:
            hi, lo = _pcg_step(hi, lo, inc_hi, inc_lo)
            rot = hi >> np.uint64(58)
            x = hi ^ lo
            r = (x >> rot) | (x << ((np.uint64(64) - rot) & np.uint64(63)))
            r >>= np.uint64(3)
            idx = r & np.uint64(0xFF)
            r >>= np.uint64(8)
            if r >= ke[idx]:
                slow[k] = True
                n = start
                break
            t = t + scales[i % ns] * (np.float64(r) * we[idx])
            if t > horizon:
                break
            if n == cap:
                cap *= 2
                rows2 = np.empty(cap, dtype=np.int64)
                times2 = np.empty(cap, dtype=np.float64)
                phases2 = np.empty(cap, dtype=np.int64)
                rows2[:n] = rows[:n]
                times2[:n] = times[:n]
                phases2[:n] = phases[:n]
                rows, times, phases = rows2, times2, phases2
            rows[n] = k
            times[n] = t
            phases[n] = i % ns
            n += 1
            i += 1
    return rows[:n], times[:n], phases[:n], slow


def exponential_walks(seed: int, keys, scales, horizon: float):
    """For each key, with g = stream(seed, *key): t = 0; repeat t += g.exponential(scales[i %
    len(scales)]); stop once t > horizon, else an event (key's index, t, i % len(scales)).
    The same floats as that loop in numpy, for many keys at once (see above; tests/test_rng.py
    checks it against numpy). `keys`: equal-length tuples of integers, or a 2-D integer array
    (faster). Returns (index, time, phase) arrays, in key order, each key's events in time
    order."""
    scales = np.asarray(scales, dtype=np.float64)
    K = len(keys)
    states = None
    if K and seed >= 0 and len(scales) and not np.isnan(scales).any() and not math.isnan(horizon):
        try:
            arr = np.asarray(keys)
        except (ValueError, OverflowError):     # ragged, or parts too wide for numpy's integers
            arr = None
        if arr is not None and arr.ndim == 2 and arr.dtype.kind in "iu" and arr.min() >= 0 and arr.max() < 1 << 32:
            states = _seed_states(int(seed), arr.astype(np.uint64))
    if states is not None:
        rows, times, phases, slow = _walks(states, scales, float(horizon), _KE, _WE)
        redo = np.flatnonzero(slow)
    else:
        rows, times, phases = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64)
        redo = np.arange(K)
    if not len(redo):
        return rows, times, phases
    r2, t2, p2 = [], [], []
    for k in redo:
        g = (np.random.Generator(np.random.PCG64(_Given(states[k]))) if states is not None
             else stream(seed, *(int(v) for v in keys[k])))
        t, i = 0.0, 0
        while True:
            t += g.exponential(scales[i % len(scales)])
            if t > horizon:
                break
            r2.append(k)
            t2.append(t)
            p2.append(i % len(scales))
            i += 1
    rows = np.concatenate([rows, np.asarray(r2, dtype=np.int64)])
    times = np.concatenate([times, np.asarray(t2, dtype=np.float64)])
    phases = np.concatenate([phases, np.asarray(p2, dtype=np.int64)])
    order = np.argsort(rows, kind="stable")
    return rows[order], times[order], phases[order]
