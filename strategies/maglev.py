"""Maglev hashing: the client id indexes a lookup table filled from per-task permutations.

Origin: Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI
2016, section 3.4; as in Envoy's `MAGLEV` load balancer. Each task has a permutation of the
M table slots (offset = h1(task) mod M, skip = h2(task) mod (M - 1) + 1, M prime); the tasks
take turns claiming the next free slot of their permutation until the table is full, so every
task owns floor(M/n) or ceil(M/n) slots. A client goes to the task in slot h(client) mod M:
O(1) per decision. When one of n tasks leaves, its slots are refilled and only a little more
than its own clients (about 1/n) move.

The table is filled in this balancer's state at its first decision and refilled whenever the
candidate list changes, detected by a signature of the list kept in the state (checked at
every decision). M is a parameter, a prime (checked before the run), default 65537 as in the
paper (and Envoy), at most MAX_M = 16,777,213 (the largest prime with the state, 3 + M
float64, within a strategy's limit of 2**24). Disruption grows as M / n shrinks: when one of n
tasks leaves, the fraction of clients that move is about 1.0/n at n = 10, 1.1/n at n = 20,
1.5/n at n = 100 with M = 65537, but 3/n at n = 100 with M = 4093; at n = 500, about 5.4/n with
M = 65537, 2.1/n with M = 655373, 1.7/n with M = 1048573 and 1.2-1.3/n from M = 5000011
(results/papers/host-loss/report.md).
The state is sized by M (`state_size` a function of the parameters, docs/strategies.md): the
table costs 8 M bytes per balancer and service, 512 KB by default (100 per-node balancers:
51 MB), 52 MB at M = 6553621 and 128 MB at MAX_M (100 per-node balancers: 12.8 GB); a smaller
M saves memory and rebuild time. Reads the client id, no load information.

State: [0] signature, [1] n (`kit.list_changed`), [2] M, then the table (task ids); only the
first M slots of the table are ever written. Per candidate position (`task_state`, sized by
the engine to the run's tasks, so any number of candidates): [i, 0] the next slot of its
permutation while the table fills (scratch space of one build: that a balancer's other
services use the same rows in their own builds does not matter). SplitMix64 hashes (`kit.mix64`).
"""
from dataclasses import dataclass

import numpy as np
from numba import njit

from lbbench.errors import UserError
from lbbench.plugins import kit
from lbbench.strategy import Param, Strategy

MAX_M = 16_777_213                  # the largest prime M with TABLE + M <= 2**24 (128 MB of state)
TABLE = 3                           # the lookup table: M task ids
NEXT = 0                            # task_state column: the next slot of a position's permutation

_SALT1 = np.uint64(0x2545F4914F6CDD1D)
_SALT2 = np.uint64(0x5DEECE66D1CE4E5B)
_CLIENT_SALT = np.uint64(0x5851F42D4C957F2D)


def _is_prime(m: int) -> bool:
    return m > 1 and all(m % p for p in range(2, int(m ** 0.5) + 1))


@dataclass(frozen=True)
class PrimeParam(Param):
    """A whole-number parameter that must also be prime (checked before a run)."""

    def check(self, value, strategy: str) -> float:
        v = super().check(value, strategy)
        if not _is_prime(int(v)):
            raise UserError(f"strategy {strategy}: parameter {self.name} = {value!r} must be a prime, "
                            "e.g. 251, 1021, 4093, 8191 or 65537")
        return v


@njit
def build(cands, state, nxt, m):
    """Fill the lookup table of size m (prime) for `cands` into `state` (Maglev's Population);
    nxt: the balancer's task_state (a cursor per candidate position: the next slot of its
    permutation, stepped by `skip` without a division). No allocation (the kernel has none):
    about M ln M probes of the table, 0.15 s at M = 655373 and 500 tasks, 3 s at 6553621."""
    n = cands.shape[0]
    m = int(m)
    if m > MAX_M or state.shape[0] < TABLE + m:
        raise ValueError("maglev: M above MAX_M or beyond the state")
    for p in range(2, m):
        if p * p > m:
            break
        if m % p == 0:
            raise ValueError("maglev: M must be prime")
    for j in range(m):
        state[TABLE + j] = -1.0
    for i in range(n):              # each permutation starts at its offset
        nxt[i, NEXT] = np.int64(kit.mix64(np.uint64(cands[i]) ^ _SALT1) % np.uint64(m))
    filled = 0
    while filled < m:
        for i in range(n):
            skip = np.int64(kit.mix64(np.uint64(cands[i]) ^ _SALT2) % np.uint64(m - 1)) + 1
            c = np.int64(nxt[i, NEXT])
            while state[TABLE + c] >= 0.0:      # (offset + j skip) mod m, the next j
                c += skip
                if c >= m:
                    c -= m
            state[TABLE + c] = cands[i]
            c += skip
            nxt[i, NEXT] = c - m if c >= m else c
            filled += 1
            if filled == m:
                break
    kit.record_list(state, 0, cands)
    state[2] = m


def state_size(params) -> int:
    """The state for a table of M slots: its header and the table (docs/strategies.md,
    "Going further": a state size that depends on the parameters)."""
    return TABLE + int(params["M"])


@njit(inline="always")
def lookup(state, client):
    """The task in the client's slot."""
    m = np.uint64(state[2])
    return int(state[TABLE + np.int64(kit.mix64(np.uint64(client) ^ _CLIENT_SALT) % m)])


@njit
def select(cands, view, state, rng):
    m = view.params.M
    if state[2] != m or kit.list_changed(state, 0, cands):
        build(cands, state, view.task_state, m)
    return lookup(state, view.client)


STRATEGY = Strategy(
    name="maglev",
    select=select,
    description="Maglev consistent hashing of the client id, table of M slots (Eisenbud et al. 2016)",
    version="1",
    params=(PrimeParam("M", 65537, 7, MAX_M, integer=True,
                       doc="lookup table size, a prime, at most 16,777,213 (memory: 8 M bytes per balancer and "
                           "service: 512 KB at 65537, 128 MB at the most)"),),
    state_size=state_size,
    task_state=1,
    reads_load=False,
    reads_client=True,
    reads_position=False,
)
