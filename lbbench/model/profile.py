"""Time-varying open-loop arrivals by a change of time (docs/model.md, "Time-varying arrivals").

The arrival rate is `base * m(t)` with the multiplier `m(t) = p(t) * d(t) * b(t)`:

- `p`, the profile (`workload.profile`, or `workload.profile_csv` divided by its mean rate):
  held (`step`) or interpolated (`linear`) between its points, its first scale before the
  first point and its last scale after the last;
- `d`, the diurnal cycle `1 + A sin(w (t - phase))`, `w = 2 pi / period` (1 without it);
- `b`, the bursts (`workload.bursts`): `scale` while on, 1 while off, the on and off periods
  exponential, drawn from the BURSTS stream (1 without them).

The k-th arrival is `t_k = M^-1(tau_k)`, `M(t)` the integral of `m` from 0 to `t`, and `tau_k`
the k-th arrival of the Poisson stream at the base rate that the workload draws without a
profile: the same unit exponentials of the GAPS stream, so the k-th request keeps its
demand, service, entry node, client and jitter (common random numbers). `M` is piecewise:
on each segment (between two points of `p` or two switches of `b`) the multiplier is
`c * (a + b u) * d(s + u)`, whose integral has a closed form; `TimeChange.invert` finds the
segment of each `tau` (they come sorted) and solves in it: a quadratic without `d`, safeguarded
Newton steps with it (at a base rate of a few arrivals per 1/256 of the cycle's period or more,
from knots along the segment, in vectorised loops: "The cycle by knots" below). Each time found
satisfies M(t) = tau to round-off: a Newton step is accepted when its own error estimate is
below 2e-16 (t + 1). Segments are built ahead of the arrivals as they are needed and dropped
behind them, so memory does not grow with the run.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numba import njit

from .. import rng as rngmod
from ..errors import UserError
from .limits import MAX_SECONDS
from .. import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)

_BLOCK = 256        # burst periods drawn per extension of the segments


def varying(w) -> bool:
    """Whether a scenario's workload (`Scenario.workload`) has a time-varying rate."""
    return any(getattr(w, k) is not None for k in ("profile", "profile_csv", "diurnal", "bursts"))


# ---------------------------------------------------------------------------------------------
# The rate profile from a CSV file of (time, rate) rows


def read_profile_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The (time, rate) rows of `workload.profile_csv`: numbers, finite, times >= 0 strictly
    increasing and within 2**40 s, rates >= 0 and not all 0. One line naming the key otherwise."""
    import polars as pl     # here: a sweep's fork server imports this module and must stay single-threaded

    where = f"workload.profile_csv {path!r}"
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{where} does not exist; give a CSV file with time and rate columns")
    try:
        df = pl.read_csv(p, infer_schema_length=None)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"{where} cannot be read as CSV ({first[:160]}); give a header 'time,rate' and one row per "
                        "point") from None
    missing = [c for c in ("time", "rate") if c not in df.columns]
    if missing:
        raise UserError(f"{where} has no {missing[0]!r} column (it has: {', '.join(df.columns) or 'none'}); give a "
                        "header 'time,rate'")
    if df.height == 0:
        raise UserError(f"{where} has no rows; give at least one 'time,rate' row")
    cols = []
    for name in ("time", "rate"):
        col = df[name]
        if col.null_count():
            raise UserError(f"{where}: column {name!r} has an empty cell in data row {int(col.is_null().arg_max()) + 1}; "
                            "fill it or drop the row")
        if not col.dtype.is_numeric():
            raise UserError(f"{where}: column {name!r} holds {col.dtype} values, not numbers; write "
                            f"{'seconds' if name == 'time' else 'requests per second'} as numbers")
        x = col.to_numpy().astype(np.float64)
        top = MAX_SECONDS if name == "time" else 1e12
        bad = ~(np.isfinite(x) & (x >= 0) & (x <= top))
        if bad.any():
            i = int(np.argmax(bad))
            raise UserError(f"{where}: column {name!r} has {float(x[i])!r} in data row {i + 1}; give finite numbers "
                            f"from 0 to {top:g}")
        cols.append(x)
    t, r = cols
    if np.any(np.diff(t) <= 0):
        i = int(np.argmax(np.diff(t) <= 0)) + 1
        raise UserError(f"{where}: time {t[i]:g} in data row {i + 1} is not after the previous row's {t[i - 1]:g}; "
                        "sort the rows by strictly increasing time")
    if not np.any(r > 0):
        raise UserError(f"{where}: every rate is 0, so no request would ever arrive; give a positive rate")
    return t, r


def csv_base_rate(t: np.ndarray, r: np.ndarray, linear: bool) -> float:
    """The run's base rate for a CSV profile: its time-average from 0 to its last row (the first
    rate holds before the first row), or its last rate if that average is 0 (a file that starts
    at its last row, or is silent until it)."""
    if t[-1] > 0:
        knots = np.concatenate(([0.0], t))
        vals = np.concatenate(([r[0]], r))
        seg = np.diff(knots) * ((vals[:-1] + vals[1:]) / 2 if linear else vals[:-1])
        mean = float(seg.sum() / t[-1])
        if mean > 0:
            return mean
    return float(r[-1])


AZURE_KEYS = ("HashOwner", "HashApp", "HashFunction", "Trigger")


def azure_functions_profile(path: str, function: str) -> tuple[np.ndarray, np.ndarray]:
    """(time, rate) per minute of one function of the Azure Functions 2019 public trace
    (columns HashOwner, HashApp, HashFunction, Trigger, then "1".."1440": invocations per
    minute of the day): time = 60 x (minute - 1) s, rate = invocations / 60 per second. Rows
    of the same HashFunction (under several triggers) are added up."""
    import polars as pl

    where = f"lbbench profile azure-functions {path!r}"
    if not Path(path).is_file():
        raise UserError(f"{where} does not exist; give one day's invocations_per_function_md.anon.dNN.csv")
    try:
        df = pl.read_csv(path, infer_schema_length=10000)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"{where} cannot be read as CSV ({first[:160]}); give the trace's CSV file") from None
    minutes = [c for c in df.columns if c not in AZURE_KEYS]
    if "HashFunction" not in df.columns or [c for c in minutes] != [str(m) for m in range(1, len(minutes) + 1)] or not minutes:
        raise UserError(f"{where} is not in the Azure Functions 2019 format (columns {', '.join(AZURE_KEYS)}, then "
                        "1..1440); give an invocations_per_function file")
    rows = df.filter(pl.col("HashFunction") == function)
    if rows.height == 0:
        raise UserError(f"{where}: no function with HashFunction {function!r}; give one of its HashFunction values")
    counts = rows.select(minutes)
    bad = [c for c in minutes if not counts[c].dtype.is_numeric() or counts[c].null_count()]
    if bad:
        raise UserError(f"{where}: minute column {bad[0]!r} is empty or not a number for that function")
    x = counts.sum().row(0)
    r = np.asarray(x, dtype=np.float64) / 60.0
    if not np.all(np.isfinite(r) & (r >= 0)):
        raise UserError(f"{where}: the function's counts are not non-negative numbers")
    return 60.0 * np.arange(len(minutes), dtype=np.float64), r


# ---------------------------------------------------------------------------------------------
# The piecewise multiplier and its inverse


class Pieces:
    """The profile `p` as pieces `[x_i, x_{i+1})` with `p = a_i + b_i (t - x_i)`; the last piece
    runs for ever with slope 0."""

    def __init__(self, at: np.ndarray, scale: np.ndarray, linear: bool):
        x, a, b = [], [], []
        if at[0] > 0:
            x.append(0.0), a.append(float(scale[0])), b.append(0.0)
        for j in range(len(at)):
            x.append(float(at[j]))
            a.append(float(scale[j]))
            b.append(float((scale[j + 1] - scale[j]) / (at[j + 1] - at[j])) if linear and j + 1 < len(at) else 0.0)
        self.x, self.a, self.b = np.array(x), np.array(a), np.array(b)

    @property
    def silent_end(self) -> bool:
        """Whether the multiplier is 0 for ever after the last point."""
        return self.a[-1] == 0.0


def profile_pieces(w, base_csv: tuple[np.ndarray, np.ndarray, float] | None) -> Pieces:
    """The profile of a scenario's workload: its points, its CSV divided by the base rate, or 1."""
    linear = w.profile_shape == "linear"
    if w.profile is not None:
        return Pieces(np.array([p.at for p in w.profile]), np.array([p.scale for p in w.profile]), linear)
    if base_csv is not None:
        t, r, base = base_csv
        return Pieces(t, r / base, linear)
    return Pieces(np.zeros(1), np.ones(1), False)


@njit(cache=True)
def _integral(u, s, a, b, c, amp, w, ph):
    """c times the integral over [s, s + u] of (a + b v) (1 + amp sin(w (s + v - ph))) dv."""
    g = a * u + 0.5 * b * u * u
    if amp > 0.0:
        th0 = w * (s - ph)
        th1 = th0 + w * u
        g += amp * ((a * math.cos(th0) - (a + b * u) * math.cos(th1)) / w + b * (math.sin(th1) - math.sin(th0)) / (w * w))
    return c * g


@njit(cache=True)
def _masses(st, ends, a, b, c, amp, w, ph):
    """The integral of the multiplier over each segment [st, ends) (inf over an endless one of
    positive rate, 0 over one of rate 0)."""
    out = np.empty(len(st))
    for k in range(len(st)):
        if ends[k] < math.inf:
            out[k] = _integral(ends[k] - st[k], st[k], a[k], b[k], c[k], amp, w, ph)
        else:
            out[k] = math.inf if c[k] * a[k] > 0 else 0.0
    return out


@njit(cache=True)
def _solve(r, s, length, a, b, c, amp, w, ph, guess, cos0, sin0, last):
    """The u in [0, length] with _integral(u) = r (0 <= r < the segment's integral), amp > 0:
    `guess` (>= 0, else none) a nearby solution to start from, `cos0`, `sin0` the cosine and
    sine of w (s - ph); the solution's sine of w (s + u - ph) is left in last[2]."""
    lo, hi = 0.0, length
    if guess >= 0.0:
        u = guess
    else:       # the solution without the cycle, and a bracket
        q, p = c * a, c * b
        disc = q * q + 2.0 * p * r
        u = 2.0 * r / (q + math.sqrt(disc if disc > 0.0 else 0.0)) if r > 0.0 else 0.0
        if not hi < math.inf:
            hi = max(2.0 * u, 1.0)
            while _integral(hi, s, a, b, c, amp, w, ph) < r:
                lo, hi = hi, 2.0 * hi
    u = min(max(u, lo), hi)
    # Newton steps on the closed form, kept inside the bracket [lo, hi]
    th0 = w * (s - ph)
    iw = 1.0 / w
    ac0, bw2 = a * cos0 * iw, b * iw * iw
    for _ in range(200):
        th1 = th0 + w * u
        cs, sn = math.cos(th1), math.sin(th1)
        last[2] = sn
        f = c * (a * u + 0.5 * b * u * u + amp * (ac0 - (a + b * u) * cs * iw + bw2 * (sn - sin0))) - r
        if f == 0.0:
            return u
        if f > 0.0:
            hi = u
        else:
            lo = u
        d = c * (a + b * u) * (1.0 + amp * sn)
        nxt = u - f / d if d > 0.0 else -1.0
        if lo <= nxt <= hi:
            # Newton's error after this step is about |f'' / 2 f'| step**2: stop at full precision
            d2 = c * (b * (1.0 + amp * sn) + (a + b * u) * amp * w * cs)
            step = nxt - u
            if abs(d2) * step * step <= 2e-16 * d * (s + nxt + 1.0) and abs(step) <= 1e-6 * (s + nxt + 1.0):
                last[2] = sn + cs * w * (nxt - u)      # the sine at nxt, to first order (a start, not a result)
                return nxt
        else:
            if not hi < math.inf:       # no upper bound yet (a guess was given): find one
                hi = max(2.0 * u, 1.0)
                while _integral(hi, s, a, b, c, amp, w, ph) < r:
                    lo, hi = hi, 2.0 * hi
            nxt = 0.5 * (lo + hi)
            if hi - lo <= 1e-15 * (s + hi):
                return nxt
        u = nxt
    return u


@njit(inline="always", cache=True)
def _segment(r, m, n, i):
    """The segment k >= i (of n, sorted) with m[k] <= r < m[k + 1], or the last one."""
    while i < n - 1 and m[i + 1] <= r:
        i += 1
    return i


@njit(cache=True)
def _run_end(tau, j, end):
    """The first index >= j of sorted tau with tau >= end (len(tau) if none)."""
    return j + np.searchsorted(tau[j:], end)


@njit(cache=True, error_model="numpy")
def _plain_segment(t, s0, length, m0, a, b, c):
    """t = s0 + u in place for the tau of one segment without the cycle (all in [m0, m0 + its
    mass)): at a constant rate q = c a, u = (tau - m0) / q (by the reciprocal); with a slope,
    the quadratic's stable root; u at most the segment's length. One array read and written in
    place and no branches, so the compiler vectorises the loop; the same operations per arrival
    as one by one, so the same bits."""
    if b == 0.0:
        inv = 1.0 / (c * a)
        for j in range(len(t)):
            t[j] = s0 + min((t[j] - m0) * inv, length)
    else:
        q, p = c * a, c * b
        for j in range(len(t)):
            x = t[j] - m0
            disc = q * q + 2.0 * p * x
            u = 2.0 * x / (q + math.sqrt(disc if disc > 0.0 else 0.0))
            t[j] = s0 + min(u if x > 0.0 else 0.0, length)


@njit(cache=True)
def _invert_runs(t, s, m, a, b, c, n, amp, w, ph, h, i):
    """M^-1 in place, segment by segment: the arrivals of a segment are a run of the sorted tau,
    found by bisection, mapped by _plain_segment without the cycle (amp = 0), else by knots
    every h (_cycle_segment). Returns the last segment used, as _invert."""
    scratch = np.zeros(3)
    j, nt = 0, len(t)
    while j < nt:
        i = _segment(t[j], m, n, i)
        if t[j] >= m[i + 1]:        # beyond the end: a rate 0 for ever
            t[j:] = math.inf
            break
        j1 = _run_end(t, j, m[i + 1])
        if amp > 0.0:
            _cycle_segment(t[j:j1], s[i], s[i + 1] - s[i], m[i], a[i], b[i], c[i], amp, w, ph, h, scratch)
        else:
            _plain_segment(t[j:j1], s[i], s[i + 1] - s[i], m[i], a[i], b[i], c[i])
        j = j1
    return i


@njit(cache=True)
def _invert(tau, out, s, m, a, b, c, n, amp, w, ph, i, last):
    """out[j] = M^-1(tau[j]) for sorted tau over segments 0..n-1 ([s[k], s[k+1]), M(s[k]) = m[k];
    m[n] is M at the end of the segments); inf beyond it. Returns the last segment used.
    With the cycle, `last` = (time, tau, sine) of the previous arrival, carried from chunk to
    chunk: Newton starts from it, the same start whatever the chunks, so the same result to the
    bit."""
    if amp == 0.0:
        return _invert_runs(tau, s, m, a, b, c, n, 0.0, w, ph, 0.0, i)
    seg, cos0, sin0 = -1, 1.0, 0.0
    for j in range(len(tau)):
        r = tau[j]
        i = _segment(r, m, n, i)
        if r >= m[i + 1]:       # beyond the end: a rate 0 for ever
            out[j] = math.inf
            continue
        guess = -1.0
        if amp > 0.0:
            if seg != i:
                seg = i
                cos0, sin0 = math.cos(w * (s[i] - ph)), math.sin(w * (s[i] - ph))
            if s[i] <= last[0] < s[i + 1]:
                du = last[0] - s[i]
                rate = c[i] * (a[i] + b[i] * du) * (1.0 + amp * last[2])
                if rate > 0.0:
                    guess = du + (r - last[1]) / rate
        t = s[i] + _solve(r - m[i], s[i], s[i + 1] - s[i], a[i], b[i], c[i], amp, w, ph, guess, cos0, sin0, last)
        out[j] = t
        last[0], last[1] = t, r
    return i


# The cycle by knots. At a base rate high enough for a run of arrivals between knots every
# `period / _KNOTS` s from each segment's start (at least _KNOT_RUN arrivals per knot, counted
# at the base rate), the cosine and sine are taken at the knots only; between them, those of
# the small angle from the knot are Taylor polynomials. Each arrival then costs a third-order
# inverse Taylor step from its knot and one Newton step, plain arithmetic independent of the
# other arrivals, in a loop the compiler vectorises (_knot_run), instead of a chain of Newton
# steps each calling the cosine and sine and starting from the previous arrival (_invert).
# Below that rate, _invert as before.

_KNOTS = 256            # knots per period: the angle from a knot is at most 2 pi / 256 < 0.025
_KNOT_RUN = 4.0         # base-rate arrivals per knot at least, for the knot path (a knot costs about two arrivals of _invert)
_S3, _S5, _S7 = 1 / 6, 1 / 20, 1 / 42
_C4, _C6, _C8 = 1 / 12, 1 / 30, 1 / 56


@njit(inline="always", cache=True)
def _sin_omc(x):
    """sin x and 1 - cos x by their Taylor series to x**7 and x**8: within 1e-17 and 1e-20
    of the truth for |x| <= 0.05 (twice the angle from a knot; within 1e-20 and 1e-24 for the
    angles within a knot)."""
    x2 = x * x
    sx = x * (1.0 - x2 * _S3 * (1.0 - x2 * _S5 * (1.0 - x2 * _S7)))
    omc = 0.5 * x2 * (1.0 - x2 * _C4 * (1.0 - x2 * _C6 * (1.0 - x2 * _C8)))
    return sx, omc


@njit(cache=True, error_model="numpy")
def _knot_run(t, mk, s0, u0, hk, al, b, c, amp, w, cs0, sn0):
    """In place, for the tau of one knot (all in [mk, M at the next knot)): t = s0 + u0 + v, v in
    [0, hk] the root of mk + I(v) = tau, I the integral of the rate from the knot (u0 from the
    segment start s0; there the profile is al + b v, the cycle's cosine and sine cs0, sn0),
    with the small angle's polynomials. From the third-order inverse Taylor step at the knot,
    one Newton step; -tau where that step does not meet _solve's criterion (its error, about
    |f'' / 2 f'| step**2, below round-off), for _solve to do (a time found is >= +0, a tau > 0;
    the negation is exact, and a store of a new value keeps the loop vectorised). Returns the
    number of those."""
    iw = 1.0 / w
    iw2 = iw * iw
    q0 = c * al * (1.0 + amp * sn0)                                  # the rate at the knot,
    q1 = c * (b * (1.0 + amp * sn0) + al * amp * w * cs0)            # its first derivative
    q2 = c * amp * w * (2.0 * b * cs0 - al * w * sn0)                # and its second
    iq0 = 1.0 / q0
    r1 = q1 * iq0
    k1, k2 = 0.5 * r1, 0.5 * r1 * r1 - q2 * iq0 / 6.0
    base = s0 + u0
    bad = 0
    for j in range(len(t)):
        x = t[j] - mk
        y = x * iq0
        v = y * (1.0 + y * (y * k2 - k1))
        sx, omc = _sin_omc(w * v)
        sn = sn0 + (cs0 * sx - sn0 * omc)
        cs = cs0 - (cs0 * omc + sn0 * sx)
        g = c * (al * v + 0.5 * b * v * v + amp * ((al * (cs0 * omc + sn0 * sx) - b * v * cs) * iw
                                                     + b * (cs0 * sx - sn0 * omc) * iw2))
        d = c * (al + b * v) * (1.0 + amp * sn)
        step = (g - x) / d
        v -= step
        d2 = c * (b * (1.0 + amp * sn) + (al + b * v) * amp * w * cs)
        r = base + min(max(v, 0.0), hk)
        good = (abs(d2) * step * step <= 2e-16 * d * (r + 1.0)) & (abs(step) <= 1e-6 * (r + 1.0))
        t[j] = r if good else -t[j]
        bad += 0 if good else 1
    return bad


@njit(cache=True)
def _cycle_segment(t, s0, length, m0, a, b, c, amp, w, ph, h, scratch):
    """In place, M^-1 of the tau of one segment with the cycle (all in [m0, m0 + its mass)),
    by knots at u = k h from its start: tau between M at knot k and at knot k + 1 goes to
    _knot_run from knot k (so the knot, and the result, depend on tau alone, not on the
    chunks); where that does not converge, _solve from no guess."""
    th0 = w * (s0 - ph)
    cos0, sin0 = math.cos(th0), math.sin(th0)
    n = len(t)
    # the knot of the first tau: the largest k with M(k h) <= tau, from the solution's
    u = _solve(t[0] - m0, s0, length, a, b, c, amp, w, ph, -1.0, cos0, sin0, scratch)
    k = int(u / h)
    while k > 0 and m0 + _integral(k * h, s0, a, b, c, amp, w, ph) > t[0]:
        k -= 1
    while (k + 1) * h < length and m0 + _integral((k + 1) * h, s0, a, b, c, amp, w, ph) <= t[0]:
        k += 1
    mk = m0 + _integral(k * h, s0, a, b, c, amp, w, ph)
    j = 0
    while j < n:
        u0, u1 = k * h, (k + 1) * h
        if u1 < length:
            m1 = m0 + _integral(u1, s0, a, b, c, amp, w, ph)
        else:
            u1, m1 = length, math.inf
        j1 = _run_end(t, j, m1)
        if j1 > j:
            th = th0 + w * u0
            if _knot_run(t[j:j1], mk, s0, u0, u1 - u0, a + b * u0, b, c, amp, w, math.cos(th), math.sin(th)):
                for q in range(j, j1):
                    if math.copysign(1.0, t[q]) < 0.0:
                        t[q] = s0 + _solve(-t[q] - m0, s0, length, a, b, c, amp, w, ph, -1.0, cos0, sin0, scratch)
        j = j1
        k += 1
        mk = m1


class TimeChange:
    """Maps the base-rate Poisson times `tau` (sorted, chunk after chunk) to the arrival times of
    the time-varying rate: `t = M^-1(tau)`. `bursts=False` leaves the bursts out (the horizon's
    estimate uses their long-run factor instead). `rate`, the base rate, chooses how the cycle
    is inverted: by knots (_invert_runs) if it gives at least _KNOT_RUN arrivals per knot, else
    arrival by arrival (_invert); the choice holds for the whole run, so the times do not
    depend on the chunks."""

    def __init__(self, w, seed: int, base_csv=None, *, bursts: bool = True, rate: float = 0.0):
        self.p = profile_pieces(w, base_csv)
        d = w.diurnal
        self.amp = float(d.amplitude) if d is not None else 0.0
        self.w = 2 * math.pi / d.period if d is not None else 1.0
        self.ph = float(d.phase) if d is not None else 0.0
        self.h = float(d.period) / _KNOTS if d is not None else 0.0
        self.knots = self.amp > 0.0 and rate * self.h >= _KNOT_RUN
        self.bursts = w.bursts if bursts else None
        self.i = 0
        self.last = np.array([-1.0, 0.0, 0.0])     # the previous arrival's time, tau and sine (_invert)
        # the segments: starts s[0..n] (s[n] the end of what is built), M at each, a, b, c per segment
        self.s, self.m = np.zeros(1), np.zeros(1)
        self.a, self.b, self.c = np.zeros(0), np.zeros(0), np.zeros(0)
        self.final = False          # the segments reach the end of time (or of the arrivals)
        if self.bursts is not None:
            self.rng = rngmod.stream(seed, rngmod.BURSTS)
            bu = self.bursts
            self.on = bool(self.rng.random() < bu.on / (bu.on + bu.off))      # the stationary start
            self._extend_bursts()
        else:
            self._add(self.p.x[1:], np.ones(len(self.p.x)), np.inf)

    # -- building segments

    def _add(self, switches: np.ndarray, factors: np.ndarray, end: float) -> None:
        """Append segments from the current end to `end`, cut at the profile's points and at
        `switches` (the starts of the 2nd.. of len(factors) burst periods), with burst factor
        factors[k] in the k-th period."""
        start = float(self.s[-1])
        px, pa, pb = self.p.x, self.p.a, self.p.b
        inner = px[(px > start) & (px < end)]
        cuts = np.union1d(inner, switches[(switches > start) & (switches < end)])
        st = np.concatenate(([start], cuts))
        k = np.searchsorted(px, st, side="right") - 1          # the profile's piece of each segment
        a = pa[k] + pb[k] * (st - px[k])
        b = pb[k].copy()
        c = factors[np.searchsorted(switches, st, side="right")]
        ends = np.concatenate((cuts, [end]))
        if not end < math.inf:              # the last piece, for ever
            b[-1] = 0.0
        mass = _masses(st, ends, a, b, c, self.amp, self.w, self.ph)
        m = self.m[-1] + np.cumsum(mass)
        keep = self.i                    # drop the segments behind the arrivals
        self.s = np.concatenate((self.s[keep:-1], st, [end]))
        self.m = np.concatenate((self.m[keep:-1], [self.m[-1]], m))
        self.a = np.concatenate((self.a[keep:], a))
        self.b = np.concatenate((self.b[keep:], b))
        self.c = np.concatenate((self.c[keep:], c))
        self.i = 0
        if not end < math.inf:
            self.final = True

    def _extend_bursts(self) -> None:
        bu = self.bursts
        start = float(self.s[-1])
        if start >= self.p.x[-1] and self.p.silent_end:
            # silent for ever: no more arrivals, whatever the bursts do
            self._add(np.zeros(0), np.zeros(1), np.inf)
            return
        gaps = self.rng.standard_exponential(_BLOCK)
        on = np.arange(_BLOCK) % 2 == (0 if self.on else 1)    # periods alternate from the current state
        gaps *= np.where(on, bu.on, bu.off)
        times = start + np.cumsum(gaps)
        self._add(times[:-1], np.where(on, bu.scale, 1.0), float(times[-1]))
        self.on = not bool(on[-1])

    # -- inverting

    def invert(self, tau: np.ndarray) -> np.ndarray:
        """M^-1(tau) in place (inf where M never gets there: a rate 0 for ever)."""
        if len(tau) == 0:
            return tau
        while not self.final and self.m[-1] <= tau[-1]:
            self._extend_bursts()
        if self.knots:
            self.i = _invert_runs(tau, self.s, self.m, self.a, self.b, self.c, len(self.a), self.amp, self.w, self.ph,
                                  self.h, self.i)
            return tau
        self.i = _invert(tau, tau, self.s, self.m, self.a, self.b, self.c, len(self.a), self.amp, self.w, self.ph, self.i,
                         self.last)
        return tau


def burst_factor(w) -> float:
    """The bursts' long-run rate multiplier (off + scale * on) / (on + off), 1 without them."""
    bu = w.bursts
    return 1.0 if bu is None else (bu.off + bu.scale * bu.on) / (bu.on + bu.off)


def expected_time(w, seed: int, base_csv, n: float) -> float:
    """The time by which `n` arrivals are expected at base rate 1: M^-1(n) without the bursts'
    periods, their long-run factor instead (inf if the rate ends at 0 before)."""
    tc = TimeChange(w, seed, base_csv, bursts=False)
    return float(tc.invert(np.array([n / burst_factor(w)]))[0])


def mean_multiplier(w, seed: int, base_csv, horizon: float) -> float:
    """The mean of the multiplier over [0, horizon] (the bursts by their long-run factor)."""
    tc = TimeChange(w, seed, base_csv, bursts=False)
    k = min(int(np.searchsorted(tc.s, horizon, side="right")) - 1, len(tc.a) - 1)
    part = _integral(horizon - tc.s[k], tc.s[k], tc.a[k], tc.b[k], tc.c[k], tc.amp, tc.w, tc.ph)
    return float((tc.m[k] + part) / horizon * burst_factor(w))
