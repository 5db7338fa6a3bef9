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

    def describe(self, i: int, service_names: list[str]) -> tuple[str, str]:
        fk = FAULT_KINDS[int(self.kind[i])]
        x = int(self.target[i])
        if fk.target == "service":
            return fk.name, f"{int(self.count[i])} of {service_names[x]}"
        return fk.name, f"{fk.target} {x}"


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
    for j, rf in enumerate(sc.faults.random):
        top = sc.cluster.nodes if rf.target == "node" else n_tasks
        xs = list(rf.targets) if rf.targets is not None else range(top)
        # one stream per target, made at once (rng.streams: 10,000 tasks' streams one by one
        # took 0.4 s, most of a 1e6-request run with random task faults at that size)
        for x, g in zip(xs, rngmod.streams(seed, [(rngmod.FAULTS, j, x) for x in xs])):
            now = 0.0
            while True:
                now += g.exponential(rf.mtbf)
                if now > horizon:
                    break
                t.append(now)
                target.append(x)
                count.append(1)
                value.append(0.0)
                if rf.target == "task":
                    kind.append(F_TASK_CRASH)
                    continue
                kind.append(F_NODE_DOWN)
                now += g.exponential(rf.mttr)
                if now > horizon:
                    break
                t.append(now)
                kind.append(F_NODE_UP)
                target.append(x)
                count.append(1)
                value.append(0.0)
    order = np.argsort(np.asarray(t, dtype=np.float64), kind="stable")
    return Schedule(time=np.asarray(t, dtype=np.float64)[order], kind=np.asarray(kind, dtype=np.int64)[order],
                    target=np.asarray(target, dtype=np.int64)[order], count=np.asarray(count, dtype=np.int64)[order],
                    value=np.asarray(value, dtype=np.float64)[order])


def recovery(ts_hist: np.ndarray, ts_failed: np.ndarray, t_start: np.ndarray, window: float, t_fault: float,
             t_measure: float, p99_of) -> tuple[float, float]:
    """(pre-fault p99, recovery_s) of one fault from the time series (windows by arrival time).

    The pre-fault level is the p99 of every measured window (starting at or after t_measure)
    that ends by the fault, pooled. The service is back at the first window, starting with
    the fault's own window, in which no request failed and whose p99 is within 10% of that
    level; recovery_s is from the fault to that window's start (0 if the fault's own window
    is already normal), NaN if there is no pre-fault level or it never comes back.
    """
    n = len(t_start)
    pre = [w for w in range(n) if t_start[w] >= t_measure and t_start[w] + window <= t_fault]
    if not pre:
        return math.nan, math.nan
    level = p99_of(ts_hist[pre].sum(axis=0))
    if not math.isfinite(level):
        return math.nan, math.nan
    w0 = int(t_fault // window)
    for w in range(w0, n):
        if ts_hist[w].sum() == 0:
            continue
        if ts_failed[w] == 0 and p99_of(ts_hist[w]) <= 1.1 * level:
            return level, max(0.0, float(t_start[w]) - t_fault)
    return level, math.nan
