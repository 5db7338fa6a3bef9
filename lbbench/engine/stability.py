"""Is a run in steady state? (docs/model.md, "Stability")

A queue whose offered load is at or above its capacity grows for as long as the run lasts: its
mean latency is then a property of the run's length, not of the system, and must not be read as
a steady-state figure. A run is judged unstable when either sign is clear:

- **overload**: some task's measured offered load (seconds of service of the measured requests
  it served, per second of the measured period, per worker) exceeds 1 by more than `Z`
  standard errors. The standard error treats the task's arrivals as Poisson, which
  overstates it for every built-in strategy (they spread arrivals more evenly), so the test
  errs on the side of "stable";
- **rising latency**: the mean latency of the measured period's time-series windows, taken in
  `BATCHES` consecutive batches, rises almost monotonically (Spearman rank correlation with
  time at least `RANK_MIN`) and the last batch's mean is more than `RISE_MIN` times the first's.
  Ten independent batch means pass the rank test by chance with probability about 0.3%, and a
  transient (a fault and its recovery) fails it because latency comes back down.
"""
from __future__ import annotations

import math

import numpy as np

Z = 4.0
BATCHES = 10
RANK_MIN = 0.8
RISE_MIN = 2.0


def overload(util: np.ndarray, served: np.ndarray, cv2: np.ndarray) -> tuple[int, float, float] | None:
    """The most clearly overloaded task as (task, offered load, standard errors above 1), or None.

    `util` is each task's offered load per worker, `served` its measured requests, `cv2` the
    squared coefficient of variation of its service times."""
    with np.errstate(invalid="ignore", divide="ignore"):
        se = util * np.sqrt((1.0 + cv2) / served)
        z = (util - 1.0) / se
    z = np.where(np.isfinite(z) & (served > 0), z, -np.inf)
    if not len(z):
        return None
    k = int(np.argmax(z))
    return (k, float(util[k]), float(z[k])) if z[k] > Z else None


def rising_latency(lat_sum: np.ndarray, completed: np.ndarray) -> tuple[float, float] | None:
    """(rank correlation, last / first batch mean) when the windows' latency rises, else None.

    `lat_sum` and `completed` are per time-series window of the measured period, in order."""
    keep = completed > 0
    lat_sum, completed = lat_sum[keep], completed[keep]
    if len(completed) < BATCHES:
        return None
    edges = np.linspace(0, len(completed), BATCHES + 1).astype(np.int64)
    means = np.add.reduceat(lat_sum, edges[:-1]) / np.add.reduceat(completed, edges[:-1])
    if not np.all(np.isfinite(means)) or means[0] <= 0:
        return None
    ranks = np.argsort(np.argsort(means))
    rho = 1.0 - 6.0 * float(np.sum((ranks - np.arange(BATCHES)) ** 2)) / (BATCHES * (BATCHES**2 - 1))
    rise = float(means[-1] / means[0])
    return (rho, rise) if rho >= RANK_MIN and rise > RISE_MIN else None


def judge(util, served, cv2, lat_sum=None, completed=None) -> tuple[bool, str]:
    """(stable, why not) for a run; the reason is one phrase for the summary, empty if stable."""
    hot = overload(np.asarray(util, dtype=np.float64), np.asarray(served, dtype=np.float64),
                   np.asarray(cv2, dtype=np.float64))
    if hot is not None:
        k, u, z = hot
        return False, (f"task {k} was offered {u:.3g} of its capacity ({z:.0f} standard errors above 1): "
                       "its queue grows for as long as the run lasts")
    if lat_sum is not None and completed is not None:
        rise = rising_latency(np.asarray(lat_sum, dtype=np.float64), np.asarray(completed, dtype=np.float64))
        if rise is not None:
            rho, r = rise
            return False, (f"latency rose over the run (x{r:.3g} from the first tenth of the measured "
                           f"period to the last, rank correlation {rho:.2f})")
    return True, ""


def cv2_of(values: np.ndarray) -> float:
    """Squared coefficient of variation of observed service demands."""
    m = float(np.mean(values)) if len(values) else math.nan
    return float(np.var(values)) / (m * m) if m > 0 else 0.0
