"""Streaming metrics of completed requests: the log-bucketed latency histograms, the time-series
windows and `_record`, which adds one completion to them (docs/architecture.md, "Adding a
metric (a summary column)")."""
import numpy as np
from numba import njit

from .lowlevel import inlined, _f64_bits
from .state import TIMED_OUT, TS_COMPLETED, TS_TIMED_OUT
from .. import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)

# Latency histogram: 64 linear sub-buckets per power of two (midpoint error < 0.8%).
SUB_BITS = 6
SUB = 1 << SUB_BITS
EMIN = -40
EMAX = 40
N_BUCKETS = (EMAX - EMIN) * SUB


# Time-series histograms: 8 sub-buckets per power of two (midpoint error < 6.3%).
TS_SUB_BITS = 3
TS_SUB = 1 << TS_SUB_BITS
TS_BUCKETS = (EMAX - EMIN) * TS_SUB


def bucket_edges(sub: int = SUB) -> np.ndarray:
    """Lower edges of every bucket, plus the final upper edge (N_BUCKETS + 1 values)."""
    e = np.arange(EMIN, EMAX, dtype=np.float64)
    m = 0.5 + np.arange(sub, dtype=np.float64) / (2 * sub)
    lo = (m[None, :] * np.exp2(e)[:, None]).ravel()
    return np.append(lo, 2.0**EMAX)


@inlined(python=True)
def bucket_of(x):
    if x <= 0.0:
        return 0
    bits = _f64_bits(x)
    b = (((bits >> 52) & 0x7FF) - 1022 - EMIN) * SUB + ((bits >> (52 - SUB_BITS)) & (SUB - 1))
    if b < 0:
        return 0
    if b >= N_BUCKETS:
        return N_BUCKETS - 1
    return b


@inlined(python=True)
def ts_bucket_of(x):
    if x <= 0.0:
        return 0
    bits = _f64_bits(x)
    b = (((bits >> 52) & 0x7FF) - 1022 - EMIN) * TS_SUB + ((bits >> (52 - TS_SUB_BITS)) & (TS_SUB - 1))
    if b < 0:
        return 0
    if b >= TS_BUCKETS:
        return TS_BUCKETS - 1
    return b


# Indices that are non-negative by construction are cast to np.uint64 on the hot path: numba
# indexes with an unsigned integer without its negative-index fix-up (three instructions and a
# load per access). Mind numba's typing: uint64 with a signed integer gives float64, so the
# constants mixed with them are cast too.

@njit(inline="always", cache=True)
def window_of(ts_inv, ts_n, t0):
    """The time-series window of a request that arrived at t0 (meaningful when ts_n > 0)."""
    w = int(t0 * ts_inv)
    if w >= ts_n:
        w = ts_n - 1
    return np.uint64(w)


@njit(inline="always", cache=True)
def _record(cfg, st, met, k, node, idx, w, latency, svc, completed, lat_sum, lat_max):
    """Streaming metrics of one completed request at task k on `node`; w: the time-series
    window of its (first) arrival (window_of). The run's completed count, latency sum and
    maximum come in and go out as values (the direct path keeps them in registers; see
    _kernel). (The trace is the caller's.)"""
    k = np.uint64(k)
    b = bucket_of(latency)      # the coarse time-series bucket is the same, 3 bits coarser
    if cfg.ts_n > 0:
        met.ts_count[w, TS_COMPLETED] += 1
        met.ts_lat_sum[w] += latency
        met.ts_hist[w, b >> (SUB_BITS - TS_SUB_BITS)] += 1
        met.ts_node_busy[w, np.uint64(node)] += svc
    if idx >= cfg.warm_index:
        completed += 1
        lat_sum += latency
        if latency > lat_max:
            lat_max = latency
        met.hist[b] += 1
        met.task_served[k] += 1
        met.task_busy[k] += svc
    if cfg.timeout > 0.0 and latency > cfg.timeout:     # slower than the clients wait: timed out
        if cfg.ts_n > 0:
            met.ts_count[w, TS_TIMED_OUT] += 1
        if idx >= cfg.warm_index:
            st.ctr[TIMED_OUT] += 1
    return completed, lat_sum, lat_max


# The out-of-line functions below are called only from compiled code: `no_cpython_wrapper`
# spares numba a Python entry point that would unbox the whole run state (about half of their
