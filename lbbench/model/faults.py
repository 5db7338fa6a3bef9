"""The run's fault schedule, computed in Python before the run (scenario `faults`).

Scripted events and random ones (drawn from the FAULTS stream of the seed, one sub-stream per
random spec and target, over the run's horizon) become one time-sorted list of (time, kind,
target, count) that the kernel applies as control events. What follows from a fault
(detection, the replacement's placement and join) is the orchestrator's business, decided in
the kernel as the run goes (`engine._fault_step`).

`recovery` measures, per fault, how long the service took to be normal again from the run's
time series.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from typing import TYPE_CHECKING

from .. import rng as rngmod

if TYPE_CHECKING:
    from .scenario import Scenario


@dataclass(frozen=True)
class FaultKind:
    """One kind of fault event: the one table the scenario, the schedule, the engine, the
    summary and the report read (docs/architecture.md, "Adding a fault kind")."""

    code: int           # Schedule.kind, the engine's dispatch key (`engine._fault_step`)
    name: str           # the scenario's `kind`, and `kind` in the faults table of results
    target: str         # what Schedule.target holds: "task", "service" (count tasks) or "node"
    repair: bool        # True: the event repairs (no recovery is measured after it)


FAULT_KINDS = (
    FaultKind(0, "task_crash", "task", False),
    FaultKind(1, "task_crash", "service", False),
    FaultKind(2, "node_down", "node", False),
    FaultKind(3, "node_up", "node", True),
    FaultKind(4, "node_drain", "node", False),
    FaultKind(5, "node_slow", "node", False),     # Schedule.value: the node's speed from then on
)
F_TASK_CRASH, F_SERVICE_CRASH, F_NODE_DOWN, F_NODE_UP, F_NODE_DRAIN, F_NODE_SLOW = (k.code for k in FAULT_KINDS)
assert [k.code for k in FAULT_KINDS] == list(range(len(FAULT_KINDS)))
SCENARIO_KINDS = tuple(dict.fromkeys(k.name for k in FAULT_KINDS))   # a scenario's faults.events kinds
REPAIR_KINDS = frozenset(k.name for k in FAULT_KINDS if k.repair)
_CODE = {(k.name, k.target): k.code for k in FAULT_KINDS}


@dataclass
class Schedule:
    time: np.ndarray     # float64[F], sorted
    kind: np.ndarray     # int64[F], FaultKind.code
    target: np.ndarray   # int64[F]: task id, service index or node id
    count: np.ndarray    # int64[F]: tasks to crash (F_SERVICE_CRASH), else 1
    value: np.ndarray | None = None   # float64[F]: the new speed (F_NODE_SLOW), else 0

    def __len__(self) -> int:
        return len(self.time)

    def targets(self, service_names: list[str]) -> list[str]:
        """Each event's target in words, in order (the faults table's `target`): "task 3",
        "node 7", or for a service's crash "2 of web"."""
        what = [k.target for k in FAULT_KINDS]
        return [f"{c} of {service_names[x]}" if what[k] == "service" else f"{what[k]} {x}"
                for k, x, c in zip(self.kind.tolist(), self.target.tolist(), self.count.tolist())]


def build_schedule(sc: "Scenario", n_tasks: int, horizon: float, seed: int) -> Schedule:
    """Scripted events in their listed order, then random ones; sorted by time (stable)."""
    t, kind, target, count, value = [], [], [], [], []
    names = [s.name for s in sc.services]
    for ev in sc.faults.events:
        t.append(ev.at)
        count.append(ev.count)
        value.append(ev.speed if ev.speed is not None else 0.0)
        if ev.node is not None:
            kind.append(_CODE[ev.kind, "node"])
            target.append(ev.node)
        elif ev.task is not None:
            kind.append(_CODE[ev.kind, "task"])
            target.append(ev.task)
        else:
            kind.append(_CODE[ev.kind, "service"])
            target.append(names.index(ev.service) if isinstance(ev.service, str) else ev.service)
    parts = [(np.asarray(t, dtype=np.float64), np.asarray(kind, dtype=np.int64), np.asarray(target, dtype=np.int64),
              np.asarray(count, dtype=np.int64), np.asarray(value, dtype=np.float64))]
    for j, rf in enumerate(sc.faults.random):
        top = sc.cluster.nodes if rf.target == "node" else n_tasks
        xs = np.asarray(list(rf.targets) if rf.targets is not None else range(top), dtype=np.int64)
        # each target's gaps from its own stream (FAULTS, j, target), drawn for all targets at
        # once (rng.exponential_walks: numpy's generators made one by one took 0.4 s at 10,000
        # tasks, most of a 1e6-request run with random task faults at that size)
        keys = np.column_stack([np.full(len(xs), rngmod.FAULTS), np.full(len(xs), j), xs]) if len(xs) else []
        if rf.target == "task":
            rows, when, phase = rngmod.exponential_walks(seed, keys, (rf.mtbf,), horizon)
            kinds = np.full(len(rows), F_TASK_CRASH, dtype=np.int64)
        else:           # down after an mtbf gap, up after an mttr one, and so on
            rows, when, phase = rngmod.exponential_walks(seed, keys, (rf.mtbf, rf.mttr), horizon)
            kinds = np.where(phase == 0, F_NODE_DOWN, F_NODE_UP).astype(np.int64)
        parts.append((when, kinds, xs[rows], np.ones(len(rows), dtype=np.int64), np.zeros(len(rows))))
    t, kind, target, count, value = (np.concatenate(c) for c in zip(*parts))
    order = np.argsort(t, kind="stable")
    return Schedule(time=t[order], kind=kind[order], target=target[order], count=count[order], value=value[order])


def recovery(ts_hist: np.ndarray, ts_failed: np.ndarray, t_start: np.ndarray, window: float, t_fault: float,
             t_measure: float, p99_of) -> tuple[float, float]:
    """(pre-fault p99, recovery_s) of one fault from the time series (windows by arrival time).

    The pre-fault level is the p99 of every measured window (starting at or after t_measure)
    that ends by the fault, pooled. The service is back at the first window, starting with
    the fault's own window, in which no request failed and whose p99 is within 10% of that
    level; recovery_s is from the fault to that window's start (0 if the fault's own window
    is already normal), NaN if there is no pre-fault level or it never comes back.
    """
    levels, recs = recoveries(ts_hist, ts_failed, t_start, window, np.array([t_fault], dtype=np.float64),
                              t_measure, p99_of)
    return float(levels[0]), float(recs[0])


def recoveries(ts_hist: np.ndarray, ts_failed: np.ndarray, t_start: np.ndarray, window: float,
               t_faults: np.ndarray, t_measure: float, p99_of, p99_rows=None) -> tuple[np.ndarray, np.ndarray]:
    """`recovery` of every fault at the times `t_faults`, the same values, in O(windows) numpy
    a fault instead of Python loops (a run with 500 faults at 10,000 tasks spent 0.12 s here, one
    with 5,400 faults 0.12 s in a loop over the faults): the measured windows that end by a
    fault are a range (the windows' starts increase), whose pooled histogram is a difference of
    running sums; each window's p99 and each pooled one are computed at once (`p99_rows`: p99_of
    of every row of an array, else row by row); each fault's recovery window is the first true
    of its row of a faults x windows test."""
    n = len(t_start)
    k = len(t_faults)
    levels = np.full(k, math.nan)
    recs = np.full(k, math.nan)
    if n == 0 or k == 0:
        return levels, recs
    cum = np.zeros((n + 1,) + ts_hist.shape[1:], dtype=ts_hist.dtype)
    np.cumsum(ts_hist, axis=0, out=cum[1:])
    first = int(np.searchsorted(t_start, t_measure, side="left"))     # the first measured window
    ends = t_start + window
    totals = ts_hist.sum(axis=1)
    p99w = p99_rows(ts_hist) if p99_rows is not None else np.array([p99_of(h) for h in ts_hist], dtype=np.float64)
    usable = (totals != 0) & (ts_failed == 0)
    last = np.searchsorted(ends, t_faults, side="right")       # windows [first, last) end by each fault
    # (faults ending the same window share their pooled histogram: one per distinct window)
    ends_at, which = np.unique(np.maximum(last, first), return_inverse=True)
    pooled = cum[ends_at] - cum[first]
    pre = (p99_rows(pooled) if p99_rows is not None else np.array([p99_of(h) for h in pooled], dtype=np.float64))[which]
    has = np.flatnonzero((last > first) & np.isfinite(pre))
    levels[has] = pre[has]
    # each fault's first usable window from its own, within 10% of its level: a faults x
    # windows test, a block of faults at a time (a fault with a level ends after a measured
    # window, so its own window's index is at least 1)
    w = np.arange(n)
    step = max(1, (1 << 22) // n)
    for lo in range(0, len(has), step):
        i = has[lo:lo + step]
        t = t_faults[i]
        w0 = (t // window).astype(np.int64)
        ok = usable & (p99w <= 1.1 * pre[i][:, None]) & (w >= w0[:, None])
        j = ok.argmax(axis=1)
        back = ok[np.arange(len(i)), j]
        recs[i[back]] = np.maximum(0.0, t_start[j[back]] - t[back])
    return levels, recs
