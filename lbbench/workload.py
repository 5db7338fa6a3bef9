"""Open-loop workload generated in vectorised chunks.

Every variate has its own stream of the seed (see `rng.py`), and each stream is consumed one
value per request in request order, so the k-th request gets the same arrival time, service,
demand, entry node, client and jitter whatever the chunk size and whatever the strategy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import rng as rngmod
from .cluster import ClusterState
from .scenario import Demand, Scenario


@dataclass
class Chunk:
    """One block of arrivals, all arrays of the same length, sorted by time."""

    first: int               # index of the first request of the chunk in the run
    t: np.ndarray            # float64 arrival time at the entry node
    service: np.ndarray      # int32
    demand: np.ndarray       # float64, seconds at speed 1.0
    entry: np.ndarray        # int32 entry node
    client: np.ndarray       # int64 client id (length 0 when no one reads it)
    jitter: np.ndarray       # float64[2n]: (in, out) extra hop delay per request (length 0 if none)

    def __len__(self) -> int:
        return len(self.t)


class DemandSampler:
    """Draws demands of one service from two dedicated streams (a value stream, a branch stream)."""

    def __init__(self, d: Demand, seed: int, service: int):
        self.d = d
        self.values = rngmod.stream(seed, rngmod.DEMAND, service, 0)
        self.branch = rngmod.stream(seed, rngmod.DEMAND, service, 1)
        m = d.mean
        if d.dist == "lognormal":
            cv = d.cv if d.cv is not None else 1.0
            self.sigma = math.sqrt(math.log1p(cv * cv))
            self.mu = math.log(m) - self.sigma**2 / 2
        elif d.dist == "pareto":
            a, r = d.alpha, d.ratio
            if abs(a - 1.0) < 1e-12:
                factor = math.log(r) / (1 - 1 / r)
            else:
                factor = a / (a - 1) * (1 - r ** (1 - a)) / (1 - r ** (-a))
            self.low = m / factor
            self.tail = 1 - r ** (-a)
        elif d.dist == "hyperexp":
            cv = d.cv if d.cv is not None else 2.0
            c2 = cv * cv
            self.p1 = 0.5 * (1 + math.sqrt((c2 - 1) / (c2 + 1)))
            self.m1 = m / (2 * self.p1)
            self.m2 = m / (2 * (1 - self.p1))

    def draw(self, n: int) -> np.ndarray:
        d = self.d
        if d.dist == "deterministic":
            return np.full(n, d.mean)
        if d.dist == "exponential":
            return self.values.standard_exponential(n) * d.mean
        if d.dist == "lognormal":
            return np.exp(self.mu + self.sigma * self.values.standard_normal(n))
        if d.dist == "pareto":
            u = self.values.random(n)
            return self.low * (1 - u * self.tail) ** (-1 / d.alpha)
        # hyperexp: a balanced-means two-phase mixture
        first = self.branch.random(n) < self.p1
        return self.values.standard_exponential(n) * np.where(first, self.m1, self.m2)

    def variance(self) -> float:
        """Analytic variance of the demand (used by the theory checks)."""
        d, m = self.d, self.d.mean
        if d.dist == "deterministic":
            return 0.0
        if d.dist == "exponential":
            return m * m
        if d.dist == "lognormal":
            return (math.exp(self.sigma**2) - 1) * m * m
        if d.dist == "hyperexp":
            return 2 * (self.p1 * self.m1**2 + (1 - self.p1) * self.m2**2) - m * m
        a, lo, hi = d.alpha, self.low, self.low * d.ratio
        if abs(a - 2) < 1e-12:
            second = 2 * lo**2 * math.log(hi / lo) / (1 - (lo / hi) ** 2)
        else:
            second = a * lo**a / (2 - a) * (hi ** (2 - a) - lo ** (2 - a)) / (1 - (lo / hi) ** a)
        return second - m * m


def service_rates(sc: Scenario, cl: ClusterState) -> np.ndarray:
    """Requests per second offered to each service."""
    if sc.workload.rho is not None:
        return np.array([sc.workload.rho * cl.service_capacity(s) / svc.demand.mean
                         for s, svc in enumerate(sc.services)])
    w = np.array([svc.weight for svc in sc.services])
    return sc.workload.rate * w / w.sum()


class Workload:
    """Generates the run's arrivals chunk by chunk."""

    def __init__(self, sc: Scenario, cl: ClusterState, seed: int, *, need_client: bool = False):
        self.sc = sc
        self.rates = service_rates(sc, cl)
        self.rate = float(self.rates.sum())
        self.n_services = len(sc.services)
        self.service_cdf = np.cumsum(self.rates / self.rate)
        self.service_cdf[-1] = 1.0
        self.gaps = rngmod.stream(seed, rngmod.GAPS)
        self.service_rng = rngmod.stream(seed, rngmod.SERVICE)
        self.entry_rng = rngmod.stream(seed, rngmod.ENTRY)
        self.client_rng = rngmod.stream(seed, rngmod.CLIENT)
        self.jitter_rng = rngmod.stream(seed, rngmod.JITTER)
        self.demand = [DemandSampler(svc.demand, seed, s) for s, svc in enumerate(sc.services)]
        self.n_nodes = sc.cluster.nodes
        entry = sc.workload.entry
        self.entry_single = -1
        self.entry_cdf = None
        if isinstance(entry, str) and entry.startswith("single:"):
            self.entry_single = int(entry[7:])
        elif isinstance(entry, list):
            w = np.asarray(entry, dtype=np.float64)
            self.entry_cdf = np.cumsum(w / w.sum())
            self.entry_cdf[-1] = 1.0
        elif self.n_nodes == 1:
            self.entry_single = 0
        self.need_client = need_client
        self.n_clients = sc.workload.clients
        if sc.workload.client_dist == "zipf":
            p = 1.0 / np.arange(1, self.n_clients + 1) ** sc.workload.zipf_s
            self.client_cdf = np.cumsum(p / p.sum())
            self.client_cdf[-1] = 1.0
        else:
            self.client_cdf = None
        self.jitter = sc.network.jitter
        self.now = 0.0
        self.next_index = 0

    def chunk(self, n: int) -> Chunk:
        """The next `n` arrivals."""
        # A running sum started from the previous chunk's last time, so that the k-th arrival
        # time is bit-identical whatever the chunk size.
        gaps = self.gaps.standard_exponential(n) / self.rate
        t = np.cumsum(np.concatenate(([self.now], gaps)))[1:]
        self.now = float(t[-1]) if n else self.now
        if self.n_services == 1:
            service = np.zeros(n, dtype=np.int32)
            demand = self.demand[0].draw(n)
        else:
            service = np.searchsorted(self.service_cdf, self.service_rng.random(n), side="right").astype(np.int32)
            demand = np.empty(n)
            for s in range(self.n_services):
                m = service == s
                demand[m] = self.demand[s].draw(int(m.sum()))
        if self.entry_single >= 0:
            entry = np.full(n, self.entry_single, dtype=np.int32)
        elif self.entry_cdf is not None:
            entry = np.searchsorted(self.entry_cdf, self.entry_rng.random(n), side="right").astype(np.int32)
        else:
            entry = self.entry_rng.integers(0, self.n_nodes, n).astype(np.int32)
        if not self.need_client:
            client = np.empty(0, dtype=np.int64)
        elif self.client_cdf is not None:
            client = np.searchsorted(self.client_cdf, self.client_rng.random(n), side="right").astype(np.int64)
        else:
            client = self.client_rng.integers(0, self.n_clients, n)
        jitter = self.jitter_rng.random(2 * n) * self.jitter if self.jitter > 0 else np.empty(0)
        c = Chunk(self.next_index, t, service, demand, entry, client, jitter)
        self.next_index += n
        return c
