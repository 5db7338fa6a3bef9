"""Floors: minimal hand-written numba loops doing the same work as lbbench on the `reference`
preset (same arrivals, FIFO single-worker tasks, one central balancer, the same choice rule,
latency histogram + mean + per-task served/busy, and the same time series: per window of
arrival time, arrivals, completions, latency sum, a coarse latency histogram and busy seconds
per node), with none of the framework around them.

- round_robin / random: a pointer or a draw, then Lindley's recursion per task
  (start = max(arrival, task free), free = start + service). Nothing needs retiring.
- least_load / power_of_d (d = 2): the choice reads outstanding requests, so completions must
  be retired in time order before each decision: a binary heap of completion times, the
  textbook way.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from lbbench.engine.heaps import heap_replace
from lbbench.engine.metrics import N_BUCKETS, TS_BUCKETS, bucket_of, ts_bucket_of
from lbbench.rng import integers


TimeSeries = namedtuple("TimeSeries", ["inv", "count", "lat_sum", "hist", "node_busy"])


@njit(inline="always", cache=True)
def _arrive_ts(ts, t0):
    w = min(int(t0 * ts.inv[0]), ts.count.shape[0] - 1)
    ts.count[w, 0] += 1


@njit(inline="always", cache=True)
def _done_ts(ts, t0, lat, node, svc):
    w = min(int(t0 * ts.inv[0]), ts.count.shape[0] - 1)
    ts.count[w, 1] += 1
    ts.lat_sum[w] += lat
    ts.hist[w, ts_bucket_of(lat)] += 1
    ts.node_busy[w, node] += svc


@njit(cache=True)
def floor_round_robin(t, dem, free, hist, served, busy, acc, ts):
    T = free.shape[0]
    ptr = int(acc[1])
    s = 0.0
    for i in range(t.shape[0]):
        k = ptr
        ptr += 1
        if ptr == T:
            ptr = 0
        _arrive_ts(ts, t[i])
        start = max(t[i], free[k])
        done = start + dem[i]
        free[k] = done
        lat = done - t[i]
        s += lat
        hist[bucket_of(lat)] += 1
        served[k] += 1
        busy[k] += dem[i]
        _done_ts(ts, t[i], lat, k, dem[i])
    acc[0] += s
    acc[1] = ptr


@njit(cache=True)
def floor_random(t, dem, free, hist, served, busy, acc, rng, ts):
    T = free.shape[0]
    s = 0.0
    for i in range(t.shape[0]):
        k = integers(rng, T)
        _arrive_ts(ts, t[i])
        start = max(t[i], free[k])
        done = start + dem[i]
        free[k] = done
        lat = done - t[i]
        s += lat
        hist[bucket_of(lat)] += 1
        served[k] += 1
        busy[k] += dem[i]
        _done_ts(ts, t[i], lat, k, dem[i])
    acc[0] += s


@njit(cache=True)
def _push(key, slot, n, k, s):
    i = n
    while i > 0:
        p = (i - 1) >> 1
        if key[p] <= k:
            break
        key[i] = key[p]
        slot[i] = slot[p]
        i = p
    key[i] = k
    slot[i] = s
    return n + 1


@njit(cache=True)
def _pop(key, slot, n):
    n -= 1
    k = key[n]
    s = slot[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and key[c + 1] < key[c]:
            c += 1
        if key[c] >= k:
            break
        key[i] = key[c]
        slot[i] = slot[c]
        i = c
    key[i] = k
    slot[i] = s
    return n


@njit(cache=True)
def floor_heap(t, dem, free, hist, served, busy, acc, out, key, slot, t0, task, heap_n, ts, svc, rule, rng):
    """Choice rules that read outstanding requests: rule 0 = fewest outstanding, ties by
    rotation (least_load); rule 1 = the less loaded of two distinct random tasks, the first
    drawn on a tie (power_of_d, d = 2). Heap entries are indices into a ring (t0, task) of
    capacity len(t0) >= in flight. (A constant `rule` is a perfectly predicted branch.)"""
    T = free.shape[0]
    cap = t0.shape[0]
    n = heap_n[0]
    off = int(acc[1])
    nxt = int(acc[2])
    s = 0.0
    for i in range(t.shape[0]):
        now = t[i]
        while n > 0 and key[0] <= now:
            j = slot[0]
            d = key[0]
            n = _pop(key, slot, n)
            out[task[j]] -= 1
            lat = d - t0[j]
            s += lat
            hist[bucket_of(lat)] += 1
            _done_ts(ts, t0[j], lat, task[j], svc[j])
        if now == np.inf:       # the final drain: retire only
            break
        if rule == 0:
            # fewest outstanding, ties by rotation (as lbbench's least_load)
            best = off
            bl = out[off]
            for k in range(off + 1, T):
                if out[k] < bl:
                    best = k
                    bl = out[k]
            for k in range(off):
                if out[k] < bl:
                    best = k
                    bl = out[k]
            off += 1
            if off == T:
                off = 0
            k = best
        else:
            # two distinct draws from the balancer's stream (as lbbench's power_of_d, d = 2)
            a = integers(rng, T)
            b = integers(rng, T - 1)
            if b >= a:
                b += 1
            k = a if out[a] <= out[b] else b
        _arrive_ts(ts, now)
        out[k] += 1
        start = max(now, free[k])
        done = start + dem[i]
        free[k] = done
        served[k] += 1
        busy[k] += dem[i]
        j = nxt
        nxt += 1
        if nxt == cap:
            nxt = 0
        t0[j] = now
        task[j] = k
        svc[j] = dem[i]
        n = _push(key, slot, n, done, j)
    # drain at the end is done by the caller with t = [inf]
    acc[0] += s
    acc[1] = off
    acc[2] = nxt
    heap_n[0] = n


def run_floor(strategy: str, n_requests: int, seed: int = 1, chunk: int = 65536) -> float:
    """Simulate the reference preset's workload with the floor loop; returns the mean latency."""
    from lbbench.model.cluster import build_cluster
    from lbbench.rng import STRATEGY, seed_states, stream
    from lbbench.model.scenario import load_scenario
    from lbbench.model.workload import Workload

    sc = load_scenario("reference", {"run.requests": n_requests, "run.warmup": 0.0})
    cl = build_cluster(sc)
    wl = Workload(sc, cl, seed)
    T = cl.n_tasks
    free = np.zeros(T)
    hist = np.zeros(N_BUCKETS, dtype=np.int64)
    served = np.zeros(T, dtype=np.int64)
    busy = np.zeros(T)
    acc = np.zeros(3)
    rng = seed_states(stream(seed, STRATEGY), 1)[0]
    cap = 1 << 20
    out = np.zeros(T, dtype=np.int64)
    key = np.zeros(cap)
    slot = np.zeros(cap, dtype=np.int32)
    t0 = np.zeros(cap)
    task = np.zeros(cap, dtype=np.int32)
    heap_n = np.zeros(1, dtype=np.int64)
    svc = np.zeros(cap)
    # the preset's time-series windows (run.windows over the expected horizon), as lbbench does
    n_w = sc.run.windows
    horizon = n_requests / wl.rate
    n_ts = int(np.ceil(horizon * 1.05 / (horizon / n_w))) + 1 if n_w else 1
    ts = TimeSeries(np.full(1, n_w / horizon if n_w else 0.0), np.zeros((n_ts, 2), dtype=np.int64),
                    np.zeros(n_ts), np.zeros((n_ts, TS_BUCKETS), dtype=np.int64), np.zeros((n_ts, T)))
    done = 0
    while done < n_requests:
        c = wl.chunk(min(chunk, n_requests - done))
        if strategy == "round_robin":
            floor_round_robin(c.t, c.demand, free, hist, served, busy, acc, ts)
        elif strategy == "random":
            floor_random(c.t, c.demand, free, hist, served, busy, acc, rng, ts)
        elif strategy in HEAP_RULES:
            floor_heap(c.t, c.demand, free, hist, served, busy, acc, out, key, slot, t0, task, heap_n, ts, svc,
                       HEAP_RULES[strategy], rng)
        else:
            raise ValueError(strategy)
        done += len(c)
    if strategy in HEAP_RULES:   # retire what is still in flight
        floor_heap(np.array([np.inf]), np.zeros(1), free, hist, served, busy, acc, out, key, slot, t0, task, heap_n,
                   ts, svc, HEAP_RULES[strategy], rng)
    return acc[0] / n_requests


HEAP_RULES = {"least_load": 0, "power_of_d": 1}
FLOORS = ("round_robin", "least_load", "random", "power_of_d")


# --------------------------------------------------------------------------------------------
# The closed loop's floor (benchmarks/perf/closed_loop.py --floor): `reference`'s 100 tasks
# under U users who think Exp(Z), each sending its next request at its response, round-robin.
# The least a closed loop must do per request beyond the open loop's work: find the user who
# sends next among U (a 4-ary heap of send times, replace-root: the fastest of the queues
# tried, ties in any order) and read that user's own draws (rows per user, drawn with numpy
# before the loop and timed).

@njit(cache=True)
def floor_closed_round_robin(think, dem, free, hist, served, busy, acc, ts, key, slot, n_req):
    U = think.shape[0]
    R = think.shape[1]
    T = free.shape[0]
    pos = np.zeros(U, dtype=np.int64)
    ptr = 0
    s = 0.0
    for i in range(n_req):
        now = key[0]
        u = slot[0]
        p = pos[u]
        if p + 2 > R:           # (not drawn: the caller raises)
            acc[1] = R
            return
        pos[u] = p + 1
        k = ptr
        ptr += 1
        if ptr == T:
            ptr = 0
        _arrive_ts(ts, now)
        d = dem[u, p]
        start = max(now, free[k])
        done = start + d
        free[k] = done
        lat = done - now
        s += lat
        hist[bucket_of(lat)] += 1
        served[k] += 1
        busy[k] += d
        _done_ts(ts, now, lat, k, d)
        heap_replace(key, slot, U, done + think[u, p + 1])
    acc[0] += s
    acc[1] = float(pos.max())


def run_floor_closed(users: int, think: float, n_requests: int, seed: int = 1) -> tuple[float, float]:
    """The closed loop's floor on `reference` (100 tasks, Exp(1) demands): (mean latency,
    throughput). Each user's rows hold twice its share of the requests and 64 more; a user
    that would use them all fails the run (it does not happen at these sizes)."""
    T = 100
    rows = 2 * (n_requests // users) + 64
    g = np.random.default_rng(seed)
    th = g.standard_exponential((users, rows))
    th *= think
    dem = g.standard_exponential((users, rows))
    free = np.zeros(T)
    hist = np.zeros(N_BUCKETS, dtype=np.int64)
    served = np.zeros(T, dtype=np.int64)
    busy = np.zeros(T)
    acc = np.zeros(2)
    horizon = n_requests * (think + 1.0) / users
    n_ts = 106
    ts = TimeSeries(np.full(1, 100 / horizon), np.zeros((n_ts, 2), dtype=np.int64), np.zeros(n_ts),
                    np.zeros((n_ts, TS_BUCKETS), dtype=np.int64), np.zeros((n_ts, T)))
    order = np.argsort(th[:, 0], kind="stable")
    key = np.full(users + 4, np.inf)        # sorted: a valid heap; +inf past the end (heaps.py)
    key[:users] = th[order, 0]
    slot = np.zeros(users + 4, dtype=np.int32)
    slot[:users] = order
    floor_closed_round_robin(th, dem, free, hist, served, busy, acc, ts, key, slot, n_requests)
    if acc[1] >= rows - 1:
        raise RuntimeError("a user would have used more than its rows: draw more")
    return acc[0] / n_requests, n_requests / float(free.max())
