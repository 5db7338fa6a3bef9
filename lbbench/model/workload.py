"""Open-loop workload generated in vectorised chunks.

Every variate has its own stream of the seed (see `rng.py`), and each stream is consumed one
value per request in request order, so the k-th request gets the same arrival time, service,
demand, entry node, client and jitter whatever the chunk size and whatever the strategy.
"""
from __future__ import annotations

import functools

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import rng as rngmod
from ..errors import UserError
from .limits import MAX_SECONDS
from .cluster import ClusterState
from .profile import TimeChange, csv_base_rate, expected_time, mean_multiplier, read_profile_csv, varying
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
    """Draws demands of one service from two dedicated streams (a value stream, a branch stream),
    keyed (DEMAND, service) or by `key` (a closed loop's user's demands and think times)."""

    def __init__(self, d: Demand, seed: int, service: int = 0, key: tuple | None = None):
        self.d = d
        self._key = (seed, *((rngmod.DEMAND, service) if key is None else key))
        for name, value in d.constants().items():
            setattr(self, name, value)

    # The streams are made on first use (the same streams whenever they are made): a
    # deterministic demand draws from neither and only hyperexp from `branch`, and a closed
    # loop makes a sampler per user (a Generator costs tens of microseconds to make).
    @functools.cached_property
    def values(self) -> np.random.Generator:
        return rngmod.stream(*self._key, 0)

    @functools.cached_property
    def branch(self) -> np.random.Generator:
        return rngmod.stream(*self._key, 1)

    @classmethod
    def many(cls, d: Demand, seed: int, keys: list) -> list:
        """`[DemandSampler(d, seed, key=k) for k in keys]`, the streams each will use made at
        once (rng.streams: a closed loop's thousands of users)."""
        out = [cls(d, seed, key=k) for k in keys]
        for name, sub, used in (("values", 0, d.dist != "deterministic"), ("branch", 1, d.dist == "hyperexp")):
            if used:
                for sampler, gen in zip(out, rngmod.streams(seed, [(*k, sub) for k in keys])):
                    sampler.__dict__[name] = gen        # (the cached_property's own slot)
        return out

    def draw_into(self, out: np.ndarray) -> None:
        """`out[:] = self.draw(len(out))`, the same values, drawn in place where numpy can."""
        d = self.d
        if d.dist == "exponential":
            self.values.standard_exponential(out=out)
            out *= d.mean
        else:
            out[:] = self.draw(len(out))

    def draw(self, n: int) -> np.ndarray:
        d = self.d
        if d.dist == "deterministic":
            return np.full(n, d.mean)
        if d.dist == "exponential":
            x = self.values.standard_exponential(n)
            x *= d.mean
            return x
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


# `view.demand_dist` (docs/strategies.md): each service's demand distribution as a row
# (code, a, b, c) of these codes, the parameters its sampler draws with (DemandSampler.draw).
DEMAND_CODES = {"exponential": 0, "deterministic": 1, "lognormal": 2, "pareto": 3, "hyperexp": 4}
DEMAND_FROM_TRACE = -1       # the code of a service whose demands a trace file gives


def demand_descriptor(d: Demand) -> tuple[float, float, float, float]:
    """A service's demand as `view.demand_dist[s]` shows it: exponential (0, mean, 0, 0),
    deterministic (1, mean, 0, 0), lognormal (2, mu, sigma, 0) of log D, bounded Pareto
    (3, alpha, low, high), hyperexp (4, p1, m1, m2): phase 1 with probability p1 (mean m1),
    else phase 2 (mean m2)."""
    c = d.constants()
    code = float(DEMAND_CODES[d.dist])
    if d.dist == "lognormal":
        return code, c["mu"], c["sigma"], 0.0
    if d.dist == "pareto":
        return code, d.alpha, c["low"], c["low"] * d.ratio
    if d.dist == "hyperexp":
        return code, c["p1"], c["m1"], c["m2"]
    return code, d.mean, 0.0, 0.0


def demand_table(sc: Scenario, from_trace: bool) -> np.ndarray:
    """float64[S, 4]: every service's `demand_descriptor`, or (DEMAND_FROM_TRACE, 0, 0, 0) for
    all when a trace gives the demands (`from_trace`: `Workload.demands_from_trace`)."""
    return np.array([(float(DEMAND_FROM_TRACE), 0.0, 0.0, 0.0) if from_trace else demand_descriptor(s.demand)
                     for s in sc.services], dtype=np.float64).reshape(len(sc.services), 4)


class TraceReader:
    """Arrivals read from a Parquet or CSV file in slices (memory follows the chunk size).

    Columns: `time` (seconds, non-decreasing, >= 0) required; `service` (index or name),
    `demand` (seconds at speed 1.0, > 0), `client` (integer id), `entry` (node) optional.
    Missing optional columns are drawn from the scenario's distributions. Times and demands are
    finite numbers within 2**40 s (dates and durations are refused: convert them to seconds),
    ids are integers in range, and no cell is empty.
    """

    OPTIONAL = ("service", "demand", "client", "entry")

    def __init__(self, path: str, sc: Scenario):
        import polars as pl     # here: a sweep's fork server imports this module and must stay single-threaded

        p = Path(path)
        where = f"workload.trace {path!r}"
        if not p.is_file():
            raise UserError(f"{where} does not exist; give a Parquet or CSV file with a time column")
        try:
            if p.suffix.lower() == ".csv":
                lf = pl.scan_csv(p)
            elif p.suffix.lower() in (".parquet", ".pq"):
                lf = pl.scan_parquet(p)
            else:
                raise UserError(f"{where}: unknown format {p.suffix or '(none)'}; use .parquet or .csv")
            schema = lf.collect_schema()
            cols = [c for c in ("time", *self.OPTIONAL) if c in schema]
            if "time" not in schema:
                raise UserError(f"{where} has no 'time' column (it has: {', '.join(schema.names()) or 'none'})")
            df = lf.select(cols).collect()
        except UserError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise UserError(f"{where} cannot be read ({first[:160]}); check that it is a complete Parquet/CSV file") from None
        if df.height == 0:
            raise UserError(f"{where} has no rows")
        self.where = where
        t = self._seconds(df, "time", positive=False)
        if t[0] < 0 or np.any(np.diff(t) < 0):
            raise UserError(f"{where}: column 'time' must be >= 0 and sorted ascending; sort the trace by time")
        self.time = t
        self.cols = {}
        names = [svc.name for svc in sc.services]
        if "service" in df.columns:
            col = self._column(df, "service")
            if col.dtype == pl.String:
                lookup = {n: i for i, n in enumerate(names)}
                bad = [v for v in col.unique().to_list() if v not in lookup]
                if bad:
                    raise UserError(f"{where}: service {bad[0]!r} is not a service of the scenario ({', '.join(names)})")
                self.cols["service"] = np.array([lookup[v] for v in col.to_list()], dtype=np.int32)
            else:
                self.cols["service"] = self._ids(df, "service", len(names), "give service indices or names").astype(np.int32)
        if "demand" in df.columns:
            self.cols["demand"] = self._seconds(df, "demand", positive=True)
        if "client" in df.columns:
            self.cols["client"] = self._ids(df, "client", sc.workload.clients, "raise workload.clients")
        if "entry" in df.columns:
            self.cols["entry"] = self._ids(df, "entry", sc.cluster.nodes, "give existing nodes").astype(np.int32)
        self.pos = 0

    def _column(self, df, name: str):
        """A column without empty cells or date/time values (one line naming it otherwise)."""
        col = df[name]
        if col.null_count():
            raise UserError(f"{self.where}: column {name!r} has {col.null_count():,} empty cells (the first in data row "
                            f"{int(col.is_null().arg_max()) + 1}); fill them or drop those rows")
        if col.dtype.is_temporal():
            raise UserError(f"{self.where}: column {name!r} holds {col.dtype} values, not seconds; convert them to "
                            "seconds (numbers) from the start of the trace")
        return col

    def _seconds(self, df, name: str, positive: bool) -> np.ndarray:
        """A column of seconds: numbers, finite, within 2**40 s (and > 0 if `positive`)."""
        col = self._column(df, name)
        if not col.dtype.is_numeric():
            raise UserError(f"{self.where}: column {name!r} holds {col.dtype} values, not seconds; write seconds as "
                            "numbers (convert dates and times to seconds from the start of the trace)")
        x = col.to_numpy().astype(np.float64)
        bad = ~(np.isfinite(x) & (x >= 0) & (x <= MAX_SECONDS)) | ((x <= 0) if positive else False)
        if bad.any():
            i = int(np.argmax(bad))
            need = "positive" if positive else "non-negative"
            raise UserError(f"{self.where}: column {name!r} has {float(x[i])!r} in data row {i + 1}; give {need} finite "
                            f"seconds of at most 2**40")
        return x

    def _ids(self, df, name: str, top: int, fix: str) -> np.ndarray:
        """A column of integer ids in 0..top-1."""
        col = self._column(df, name)
        if not col.dtype.is_integer():
            raise UserError(f"{self.where}: column {name!r} holds {col.dtype} values; write whole-number ids 0..{top - 1}")
        lo, hi = col.min(), col.max()
        if lo < 0 or hi >= top:
            raise UserError(f"{self.where}: column {name!r} has id {lo if lo < 0 else hi}, outside 0..{top - 1}; {fix}")
        return col.to_numpy().astype(np.int64)

    def __len__(self) -> int:
        return len(self.time)

    @property
    def rate(self) -> float:
        span = self.time[-1] - self.time[0]
        return len(self.time) / span if span > 0 else float(len(self.time))


def draw_demands(samplers: list, service: np.ndarray) -> np.ndarray:
    """Each request's demand from its service's sampler (each sampler draws in request order)."""
    if len(samplers) == 1:
        return samplers[0].draw(len(service))
    demand = np.empty(len(service))
    for s, sampler in enumerate(samplers):
        m = service == s
        demand[m] = sampler.draw(int(m.sum()))
    return demand


def weight_cdf(sc: Scenario) -> np.ndarray:
    """The services' cumulative shares by `weight` (the last one exactly 1)."""
    w = np.array([svc.weight for svc in sc.services], dtype=np.float64)
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0
    return cdf


def _kept(rows: np.ndarray, start: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into a C-ordered (?, width) array: of the entries start[i]..width-1 of row
    rows[i] (the source) and of the entries 0..width-1-start[i] of the same row (where they
    go), for all rows at once."""
    keep = width - start
    n = int(keep.sum())
    row_base = rows.astype(np.int64) * width
    first = np.repeat(np.cumsum(keep) - keep, keep)       # each entry's offset in the output
    j = np.arange(n, dtype=np.int64) - first               # its position within its row's part
    dst = np.repeat(row_base, keep) + j
    return dst + np.repeat(start, keep), dst


class UserDraws:
    """A closed loop's users (docs/model.md, "Closed loop"): user u's k-th think time, service,
    demand and hop jitter come from u's own streams, keyed (USER, u, purpose, ...), each drawn in
    the user's order, so that they do not depend on when other users' events happen (which
    depends on the strategy) nor on how many are drawn at a time. `entry[u]`: the user's entry
    node, drawn once per user."""

    def __init__(self, sc: Scenario, seed: int, entry: np.ndarray):
        n = sc.workload.users
        self.n = n
        self.entry = entry
        self.n_services = len(sc.services)
        self.cdf = weight_cdf(sc)
        self.jitter = sc.network.jitter
        U, S = rngmod.USER, len(sc.services)
        self.think = DemandSampler.many(sc.workload.think, seed, [(U, u, rngmod.THINK) for u in range(n)])
        per_service = [DemandSampler.many(svc.demand, seed, [(U, u, rngmod.DEMAND, s) for u in range(n)])
                       for s, svc in enumerate(sc.services)]
        self.demand = [[per_service[s][u] for s in range(S)] for u in range(n)]
        self.service_rng = rngmod.streams(seed, [(U, u, rngmod.SERVICE) for u in range(n)]) if S > 1 else None
        self.jitter_rng = rngmod.streams(seed, [(U, u, rngmod.JITTER) for u in range(n)]) if self.jitter > 0 else None

    def draw(self, u: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """User u's next n (think time before the request, service, demand, jitter in/out [2n])."""
        think = self.think[u].draw(n)
        if self.service_rng is None:
            service = np.zeros(n, dtype=np.int32)
        else:
            service = np.searchsorted(self.cdf, self.service_rng[u].random(n), side="right").astype(np.int32)
        demand = draw_demands(self.demand[u], service)
        jitter = self.jitter_rng[u].random(2 * n) * self.jitter if self.jitter_rng is not None else np.empty(0)
        if not math.isfinite(think.sum() + demand.sum()):
            raise UserError("workload.think or services.*.demand drew a non-finite value for a user; its parameters "
                            "overflow, change them")
        return think, service, demand, jitter

    def refill(self, users: np.ndarray, used: np.ndarray, think: np.ndarray, service: np.ndarray,
               demand: np.ndarray, jitter: np.ndarray) -> None:
        """Rows of draws per user (think, service, demand: U x R; jitter U x 2R): for each user
        u = users[i], its rows used[i].. move to the front and its next used[i] draws (`draw`'s
        values, drawn in place: a closed loop of thousands of users refills often) fill the
        rest."""
        if not len(users):
            return
        R = think.shape[1]
        p = used.astype(np.int64)
        src, dst = _kept(users, p, R)
        for a in (think, service, demand):
            flat = a.reshape(-1)
            flat[dst] = flat[src]
        if jitter.shape[1]:
            src, dst = _kept(users, 2 * p, 2 * R)
            flat = jitter.reshape(-1)
            flat[dst] = flat[src]
        # one service and no jitter (service 0 throughout): think times and demands drawn in
        # place; otherwise `draw`'s arrays are copied in
        in_place = self.service_rng is None and self.jitter_rng is None
        for u, k in zip(users.tolist(), (R - p).tolist()):
            if in_place:
                self.think[u].draw_into(think[u, k:])
                self.demand[u][0].draw_into(demand[u, k:])
                continue
            think[u, k:], service[u, k:], demand[u, k:], new_jitter = self.draw(u, R - k)
            jitter[u, 2 * k:] = new_jitter
        if not (np.isfinite(think[users].sum()) and np.isfinite(demand[users].sum())):
            raise UserError("workload.think or services.*.demand drew a non-finite value for a user; its parameters "
                            "overflow, change them")


class SessionBlock:
    """Sessions first, first + 1, ..., first + n - 1 (SessionDraws.block): their arrival times,
    request counts, entry nodes, and their requests' draws laid end to end (session i's from
    off[i] on, off[n] = the total): the think time before each request (0 before a session's
    first), service, demand, hop jitter in/out (2 per request; empty without jitter)."""

    def __init__(self, first, t, count, entry, off, think, service, demand, jitter):
        self.first, self.t, self.count, self.entry, self.off = first, t, count, entry, off
        self.think, self.service, self.demand, self.jitter = think, service, demand, jitter


class SessionDraws:
    """Sessions mode (docs/model.md, "Sessions"): sessions arrive as a Poisson process at
    `workload.session_rate`; each sends a geometric number of requests (mean
    `workload.session_requests`, support 1, 2, ...) separated by think times. Everything a
    session draws comes from the session streams (SESSION, purpose, ...), each drawn in session
    order and in blocks of BLOCK sessions, so that session j's arrival, request count, entry and
    k-th request's think, service, demand and jitter depend on j alone: not on the strategy (which
    sets when a session's requests go), nor on run.chunk."""

    BLOCK = 256
    # the engine's first pool of user slots, one per session in progress (it doubles when none
    # is free; only the order of events at equal times depends on which slot a session takes)
    SLOTS = 64

    def __init__(self, sc: Scenario, seed: int, entries):
        wl = sc.workload
        self.rate = float(wl.session_rate)
        self.p = 1.0 / float(wl.session_requests)
        self.entries = entries          # draws n entry nodes (Workload's ENTRY stream)
        self.cdf = weight_cdf(sc)
        self.jitter = sc.network.jitter
        X = rngmod.SESSION
        self.gaps = rngmod.stream(seed, X, rngmod.GAPS)
        self.count_rng = rngmod.stream(seed, X, rngmod.SESSION)
        self.think = DemandSampler(wl.think, seed, key=(X, rngmod.THINK))
        self.demand = [DemandSampler(svc.demand, seed, key=(X, rngmod.DEMAND, s)) for s, svc in enumerate(sc.services)]
        self.service_rng = rngmod.stream(seed, X, rngmod.SERVICE) if len(sc.services) > 1 else None
        self.jitter_rng = rngmod.stream(seed, X, rngmod.JITTER) if self.jitter > 0 else None
        self.now = 0.0
        self.next = 0

    def block(self) -> SessionBlock:
        """The next BLOCK sessions."""
        n = self.BLOCK
        t = self.gaps.standard_exponential(n) / self.rate
        t[0] += self.now
        np.cumsum(t, out=t)
        self.now = float(t[-1])
        count = self.count_rng.geometric(self.p, n).astype(np.int64) if self.p < 1.0 else np.ones(n, dtype=np.int64)
        off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(count, out=off[1:])
        r = int(off[-1])
        think = self.think.draw(r)
        think[off[:-1]] = 0.0           # a session's first request goes at its arrival
        if self.service_rng is None:
            service = np.zeros(r, dtype=np.int32)
        else:
            service = np.searchsorted(self.cdf, self.service_rng.random(r), side="right").astype(np.int32)
        demand = draw_demands(self.demand, service)
        jitter = self.jitter_rng.random(2 * r) * self.jitter if self.jitter_rng is not None else np.empty(0)
        if not (math.isfinite(think.sum() + demand.sum()) and math.isfinite(self.now)):
            raise UserError("workload.think, workload.session_rate or services.*.demand drew a non-finite value for a "
                            "session; its parameters overflow, change them")
        b = SessionBlock(self.next, t, count, self.entries(n), off, think, service, demand, jitter)
        self.next += n
        return b


def service_rates(sc: Scenario, cl: ClusterState, base: float | None = None) -> np.ndarray:
    """Requests per second offered to each service (NaN: set by a trace, or by a closed loop's
    users; the base rate of a time-varying workload, `base`: a CSV profile's,
    `profile.csv_base_rate`)."""
    if sc.workload.trace is not None or sc.workload.mode in ("closed", "sessions"):
        return np.full(len(sc.services), np.nan)
    if sc.workload.rho is not None:
        return np.array([sc.workload.rho * cl.service_capacity(s) / svc.demand.mean
                         for s, svc in enumerate(sc.services)])
    w = np.array([svc.weight for svc in sc.services])
    return (sc.workload.rate if base is None else base) * w / w.sum()


class Workload:
    """Generates the run's arrivals chunk by chunk."""

    def __init__(self, sc: Scenario, cl: ClusterState, seed: int, *, need_client: bool = False):
        self.sc = sc
        self.n_services = len(sc.services)
        self.trace = TraceReader(sc.workload.trace, sc) if sc.workload.trace is not None else None
        self.base_csv = None
        if self.trace is not None:
            self.rate = self.trace.rate
            w = np.array([svc.weight for svc in sc.services])
            self.rates = self.rate * w / w.sum()
        else:
            if sc.workload.profile_csv is not None:
                t, r = read_profile_csv(sc.workload.profile_csv)
                self.base_csv = (t, r, csv_base_rate(t, r, sc.workload.profile_shape == "linear"))
            self.rates = service_rates(sc, cl, self.base_csv[2] if self.base_csv else None)
            self.rate = float(self.rates.sum())
        with np.errstate(invalid="ignore", divide="ignore"):     # a rate of 0 or inf: refused by limits.check_run
            self.service_cdf = np.cumsum(self.rates / self.rate)
        self.service_cdf[-1] = 1.0
        self.gaps = rngmod.stream(seed, rngmod.GAPS)
        # a time-varying rate maps the base-rate arrival times through M^-1 (lbbench/model/profile.py)
        self.varying = varying(sc.workload)
        self.seed = seed
        self.timechange = TimeChange(sc.workload, seed, self.base_csv, rate=self.rate) if self.varying else None
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
        # closed loop: the users, each at the entry node drawn for it from the ENTRY stream
        self.users = UserDraws(sc, seed, self._draw_entries(sc.workload.users)) if sc.workload.mode == "closed" else None
        # sessions: drawn block by block, each session's entry node from the ENTRY stream
        self.sessions = SessionDraws(sc, seed, self._draw_entries) if sc.workload.mode == "sessions" else None

    @property
    def demands_from_trace(self) -> bool:
        """Whether the demands come from a trace's `demand` column (not the services' distributions)."""
        return self.trace is not None and "demand" in self.trace.cols

    def chunk(self, n: int) -> Chunk:
        """The next `n` arrivals (fewer at the end of a trace)."""
        if self.trace is not None:
            return self._trace_chunk(n)
        # A running sum started from the previous chunk's last time, so that the k-th arrival
        # time is bit-identical whatever the chunk size. In place: a fresh array per step (the
        # division, a concatenation, the sum) made this two to three times slower.
        t = self.gaps.standard_exponential(n)
        t /= self.rate
        if n:
            t[0] += self.now
            np.cumsum(t, out=t)
            self.now = float(t[-1])
        service = self._draw_services(n)
        demand = self._draw_demands(service)
        if self.timechange is not None:
            # the same base-rate times, mapped to the varying rate's (inf: after a rate 0 for ever)
            self._check_finite(t, demand, service)
            self.timechange.invert(t)
        else:
            self._check_finite(t, demand, service)
        entry = self._draw_entries(n)
        c = Chunk(self.next_index, t, service, demand, entry, self._draw_clients(n), self._draw_jitter(n))
        self.next_index += n
        return c

    def expected_time(self, n: int) -> float:
        """A time-varying workload's expected time of its n-th arrival (inf if its rate ends at 0
        for ever before): the run's horizon for run.requests (limits.check_run)."""
        return expected_time(self.sc.workload, self.seed, self.base_csv, n / self.rate)

    def mean_multiplier(self, horizon: float) -> float:
        """A time-varying workload's mean rate over [0, horizon] relative to its base rate."""
        return mean_multiplier(self.sc.workload, self.seed, self.base_csv, horizon)

    # The draws below are shared by generated and trace-driven chunks (for the columns a trace
    # does not give); each field has its own random stream, drawn in this order.

    def _draw_services(self, n: int) -> np.ndarray:
        if self.n_services == 1:
            return np.zeros(n, dtype=np.int32)
        return np.searchsorted(self.service_cdf, self.service_rng.random(n), side="right").astype(np.int32)

    def _draw_entries(self, n: int) -> np.ndarray:
        if self.entry_single >= 0:
            return np.full(n, self.entry_single, dtype=np.int32)
        if self.entry_cdf is not None:
            return np.searchsorted(self.entry_cdf, self.entry_rng.random(n), side="right").astype(np.int32)
        return self.entry_rng.integers(0, self.n_nodes, n).astype(np.int32)

    def _draw_clients(self, n: int) -> np.ndarray:
        """Client ids under `workload.client_dist` (none when nothing reads them)."""
        if not self.need_client:
            return np.empty(0, dtype=np.int64)
        if self.client_cdf is not None:
            return np.searchsorted(self.client_cdf, self.client_rng.random(n), side="right").astype(np.int64)
        return self.client_rng.integers(0, self.n_clients, n)

    def _draw_jitter(self, n: int) -> np.ndarray:
        return self.jitter_rng.random(2 * n) * self.jitter if self.jitter > 0 else np.empty(0)

    def _draw_demands(self, service: np.ndarray) -> np.ndarray:
        return draw_demands(self.demand, service)

    def _check_finite(self, t: np.ndarray, demand: np.ndarray, service: np.ndarray) -> None:
        """Fail the run at a non-finite arrival time or demand (one sum per chunk: NaN or inf
        in any term makes it non-finite; the times are sorted, so the last one tells)."""
        if len(t) and not math.isfinite(demand.sum()):
            i = int(np.argmax(~np.isfinite(demand)))
            raise UserError(f"services.{int(service[i])}.demand drew {demand[i]} for request {self.next_index + i:,}; "
                            "its parameters overflow, change them")
        if len(t) and not math.isfinite(t[-1]):
            raise UserError(f"arrival times overflow to {t[-1]} by request {self.next_index + len(t) - 1:,}; "
                            "scale workload.rate or workload.rho to the demands")

    def _trace_chunk(self, n: int) -> Chunk:
        tr = self.trace
        a, b = tr.pos, min(tr.pos + n, len(tr))
        tr.pos = b
        m = b - a
        t = tr.time[a:b]
        service = tr.cols["service"][a:b] if "service" in tr.cols else self._draw_services(m)
        if "demand" in tr.cols:
            demand = tr.cols["demand"][a:b]
        else:
            demand = self._draw_demands(service)
            self._check_finite(t, demand, service)
        entry = tr.cols["entry"][a:b] if "entry" in tr.cols else self._draw_entries(m)
        client = tr.cols["client"][a:b] if "client" in tr.cols and self.need_client else self._draw_clients(m)
        c = Chunk(self.next_index, np.ascontiguousarray(t), service, demand, entry, client, self._draw_jitter(m))
        self.next_index += m
        if m:
            self.now = float(t[-1])
        return c
