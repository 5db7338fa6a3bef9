"""The orchestrator's deployments, computed in Python before the run (scenario `deploy`).

`deploy.events` (scale a service, roll out a new version of it) become one time-sorted
`DeploySchedule` that the engine applies as control events (docs/model.md, "Deployments").
A new version that changes `demand.mean` serves every request `mean / new mean` times faster:
its demands are the same draws, scaled, so the arrivals stay common to every strategy; the
schedule carries each update's speed factor (new tasks run at node speed x factor).

A service named by a deployment gets spare task slots, numbered after every initial task
(so the initial tasks keep their ids): 2 R + P - replicas of them, with R the largest replica
count the service is asked for and P its largest start-first parallelism (`spare_slots`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .scenario import Scenario

D_SCALE, D_UPDATE = 0, 1                  # DeploySchedule.kind
ORDER_STOP_FIRST, ORDER_START_FIRST = 0, 1
ORDERS = ("stop-first", "start-first")


@dataclass
class DeploySchedule:
    time: np.ndarray       # float64[D], sorted (ties: in the order listed)
    kind: np.ndarray       # int64[D]: D_SCALE or D_UPDATE
    service: np.ndarray    # int64[D]: service index
    replicas: np.ndarray   # int64[D]: a scale's target (0 for an update)
    parallelism: np.ndarray  # int64[D]: an update's batch size (its service's slots for parallelism = 0)
    delay: np.ndarray      # float64[D]: an update's pause after each batch is healthy
    order: np.ndarray      # int64[D]: ORDER_STOP_FIRST or ORDER_START_FIRST
    factor: np.ndarray     # float64[D]: the speed factor of the update's version (base mean / its mean)

    def __len__(self) -> int:
        return len(self.time)


def service_index(sc: "Scenario", service) -> int:
    return [s.name for s in sc.services].index(service) if isinstance(service, str) else int(service)


def _events(sc: "Scenario") -> list:
    """The events with their service index, sorted by time (stable)."""
    evs = [(ev.at, i, ev, service_index(sc, ev.service)) for i, ev in enumerate(sc.deploy.events)]
    return sorted(evs, key=lambda e: (e[0], e[1]))


def spare_slots(sc: "Scenario") -> list[int]:
    """Spare task slots per service: 2 R + P - replicas for a service a deployment or an
    autoscaler names (R its largest replica count, initial, scaled to or an autoscaler's max; P its largest start-first parallelism, R for
    parallelism 0), 0 for the others."""
    out = []
    for s, svc in enumerate(sc.services):
        mine = [ev for _, _, ev, x in _events(sc) if x == s]
        scaler = [a.max for a in sc.autoscale if service_index(sc, a.service) == s]
        if not mine and not scaler:
            out.append(0)
            continue
        r = max([svc.replicas] + scaler + [ev.replicas for ev in mine if ev.kind == "scale"])
        p = max([0] + [(ev.parallelism or r) for ev in mine if ev.kind == "update" and ev.order == "start-first"])
        out.append(2 * r + p - svc.replicas)
    return out


def build_deploy(sc: "Scenario") -> DeploySchedule:
    """The deployments sorted by time; each update's factor is that of its `set` (its
    `demand.mean`), else the service's current one (an update without `set` replaces every
    task with the same version, as `docker service update --force`)."""
    cols = {k: [] for k in DeploySchedule.__dataclass_fields__}
    factor = [1.0] * len(sc.services)
    slots = [svc.replicas + n for svc, n in zip(sc.services, spare_slots(sc))]
    for at, _, ev, s in _events(sc):
        if ev.kind == "update" and ev.set:
            factor[s] = sc.services[s].demand.mean / ev.set["demand.mean"]
        cols["time"].append(at)
        cols["kind"].append(D_SCALE if ev.kind == "scale" else D_UPDATE)
        cols["service"].append(s)
        cols["replicas"].append(ev.replicas if ev.kind == "scale" else 0)
        cols["parallelism"].append((ev.parallelism or slots[s]) if ev.kind == "update" else 0)
        cols["delay"].append(ev.delay if ev.kind == "update" else 0.0)
        cols["order"].append(ORDERS.index(ev.order) if ev.kind == "update" else 0)
        cols["factor"].append(factor[s])
    floats = ("time", "delay", "factor")
    return DeploySchedule(**{k: np.asarray(v, dtype=np.float64 if k in floats else np.int64) for k, v in cols.items()})



AS_UTIL, AS_RPS, AS_P99 = 0, 1, 2      # Autoscale.metric
AS_METRICS = ("util", "rps", "latency_p99")    # their names, by code


@dataclass
class Autoscale:
    """The autoscalers as arrays (one per service named; docs/model.md, "Autoscaler")."""

    service: np.ndarray     # int64[A]
    metric: np.ndarray      # int64[A]: AS_UTIL, AS_RPS or AS_P99
    target: np.ndarray      # float64[A]
    interval: np.ndarray    # float64[A]
    buckets: np.ndarray     # int64[A]: intervals per window, ceil(window / interval)
    tolerance: np.ndarray   # float64[A]
    recs: np.ndarray        # int64[A]: desires a scale-down looks at, floor(stabilization / interval) + 1
    lo: np.ndarray          # int64[A]: min
    hi: np.ndarray          # int64[A]: max

    def __len__(self) -> int:
        return len(self.service)


def build_autoscale(sc: "Scenario") -> Autoscale:
    a = sc.autoscale
    i64 = lambda xs: np.asarray(xs, dtype=np.int64)      # noqa: E731
    f64 = lambda xs: np.asarray(xs, dtype=np.float64)    # noqa: E731
    return Autoscale(
        service=i64([service_index(sc, x.service) for x in a]),
        metric=i64([AS_METRICS.index(x.metric) for x in a]),
        target=f64([x.target for x in a]), interval=f64([x.interval for x in a]),
        buckets=i64([max(1, math.ceil(x.window / x.interval)) for x in a]),
        tolerance=f64([x.tolerance for x in a]),
        recs=i64([int(x.stabilization // x.interval) + 1 for x in a]),
        lo=i64([x.min for x in a]), hi=i64([x.max for x in a]))
