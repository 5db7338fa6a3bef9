"""Scenario: what is simulated (docs/model.md, "Scenario keys"), validated, with presets and overrides.

A scenario is a TOML file, a built-in preset name, or a dict with the same keys. It is checked
by pydantic models with unknown keys refused; the first problem becomes a `UserError` whose
one-line message names the dotted field, what was wrong and what was given.
"""
from __future__ import annotations

import copy
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import UserError
from .faults import SCENARIO_KINDS
from .limits import EXP_TOP, INT32_MAX, INT64_MAX, MAX_SECONDS, NORMAL_TOP


class _Model(BaseModel):
    # strict: no "3" for 3, no true for a number, no number for a string (floats accept integers)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


_SECONDS = dict(allow_inf_nan=False, le=MAX_SECONDS)     # a time in seconds, below the histogram's top


class Demand(_Model):
    """Service demand per request, in seconds at node speed 1.0."""

    dist: Literal["exponential", "deterministic", "lognormal", "pareto", "hyperexp"] = "exponential"
    mean: float = Field(1.0, gt=0, **_SECONDS)
    cv: float | None = Field(None, gt=0, allow_inf_nan=False, description="lognormal (default 1) / hyperexp (default 2, must exceed 1)")
    alpha: float = Field(1.5, gt=0, allow_inf_nan=False, description="bounded Pareto shape")
    ratio: float = Field(1e4, gt=1, allow_inf_nan=False, description="bounded Pareto max/min")

    @model_validator(mode="after")
    def _check(self):
        if self.dist == "hyperexp" and self.cv is not None and self.cv <= 1:
            raise ValueError("cv must exceed 1 for hyperexp (use exponential for cv = 1)")
        try:
            consts, top = self.constants(), self.largest()
        except ArithmeticError:
            consts, top = {}, math.inf
        # every constant finite, all but lognormal's mu positive, and so the largest draw (bounded
        # by the scenario at the slowest node speed)
        if not (consts and all(math.isfinite(v) and (v > 0 or k == "mu") for k, v in consts.items()) and 0 < top < math.inf):
            keys = {"lognormal": "mean and cv", "pareto": "mean, alpha and ratio", "hyperexp": "mean and cv"}
            raise ValueError(f"{self.dist} demand with these parameters overflows (its sampler's constants or its "
                             f"largest draw are not finite positive numbers); change {keys.get(self.dist, 'mean')}")
        return self

    def constants(self) -> dict[str, float]:
        """The sampler's derived constants (finite, and positive but for mu, for a valid demand)."""
        m = self.mean
        if self.dist == "lognormal":
            cv = self.cv if self.cv is not None else 1.0
            sigma = math.sqrt(math.log1p(cv * cv))
            return {"sigma": sigma, "mu": math.log(m) - sigma**2 / 2}
        if self.dist == "pareto":
            a, r = self.alpha, self.ratio
            if abs(a - 1.0) < 1e-12:
                factor = math.log(r) / (1 - 1 / r)
            else:
                factor = a / (a - 1) * (1 - r ** (1 - a)) / (1 - r ** (-a))
            return {"low": m / factor, "tail": 1 - r ** (-a)}
        if self.dist == "hyperexp":
            cv = self.cv if self.cv is not None else 2.0
            c2 = cv * cv
            p1 = 0.5 * (1 + math.sqrt((c2 - 1) / (c2 + 1)))
            return {"p1": p1, "m1": m / (2 * p1), "m2": m / (2 * (1 - p1))}
        return {"mean": m}

    def largest(self) -> float:
        """The largest demand drawn with probability above 1e-18 (bounded Pareto: its maximum)."""
        c = self.constants()
        if self.dist == "lognormal":
            return math.exp(c["mu"] + NORMAL_TOP * c["sigma"])
        if self.dist == "pareto":
            return c["low"] * self.ratio
        if self.dist == "hyperexp":
            return EXP_TOP * max(c["m1"], c["m2"])
        return self.mean * (EXP_TOP if self.dist == "exponential" else 1.0)


class Service(_Model):
    name: str = "web"
    port: int = Field(80, ge=1, le=65535)
    replicas: int = Field(1, ge=1, le=1_000_000)
    workers: int = Field(1, ge=1, le=1_000_000)
    queue_limit: int = Field(0, ge=0, le=INT64_MAX, description="0 = unbounded")
    demand: Demand = Demand()
    placement: list[int] | None = Field(None, description="pinned node per replica; else Swarm spread")
    weight: float = Field(1.0, gt=0, allow_inf_nan=False, description="share of workload.rate")

    @model_validator(mode="after")
    def _check(self):
        if self.placement is not None and len(self.placement) != self.replicas:
            raise ValueError(f"placement lists {len(self.placement)} nodes but replicas = {self.replicas}; give one node per replica")
        return self


class Background(_Model):
    """Always-busy work on nodes sharing their cores with requests (cluster.cores; docs/model.md,
    "Nodes as shared machines"): a step `{node, at, load}` sets node's own background to `load`
    from `at` on; random batch work `{nodes, mean_on, mean_off, load}` adds `load` on each listed
    node (default: all) while on, on and off for exponential times of these means."""

    node: int | None = Field(None, ge=0, description="step: the node")
    at: float | None = Field(None, ge=0, **_SECONDS, description="step: from this time on")
    nodes: list[int] | None = Field(None, description="random: the nodes (default all)")
    mean_on: float | None = Field(None, gt=0, **_SECONDS, description="random: mean seconds of a batch job")
    mean_off: float | None = Field(None, gt=0, **_SECONDS, description="random: mean seconds between batch jobs")
    load: float = Field(ge=0, le=1e6, allow_inf_nan=False, description="units of always-busy work (cores it would fill)")

    @model_validator(mode="after")
    def _check(self):
        step = self.node is not None or self.at is not None
        rand = self.nodes is not None or self.mean_on is not None or self.mean_off is not None
        if step == rand:
            raise ValueError("load: a background entry is a step {node, at, load} or random batch work "
                             "{nodes, mean_on, mean_off, load}; give the keys of one of them")
        if step and (self.node is None or self.at is None):
            raise ValueError(f"{'node' if self.node is None else 'at'}: a background step needs node, at and load")
        if rand and (self.mean_on is None or self.mean_off is None):
            raise ValueError(f"{'mean_on' if self.mean_on is None else 'mean_off'}: random background work needs "
                             "mean_on, mean_off and load")
        return self

    @property
    def random(self) -> bool:
        return self.mean_on is not None


class Cluster(_Model):
    nodes: int = Field(1, ge=1, le=1_000_000)
    speeds: list[float] | None = Field(None, description="service-rate multiplier per node, default all 1.0")
    drained: list[int] = Field(default_factory=list, description="nodes that accept ingress but get no tasks")
    cores: float | list[float] | None = Field(None, description="CPU cores per node (one number, or one per node): "
                                              "requests in service on a node share them (processor sharing)")
    background: list[Background] = Field(default_factory=list, description="always-busy work sharing the cores")

    @field_validator("cores")
    @classmethod
    def _cores(cls, v):
        # docs/model.md, "Nodes as shared machines"
        values = v if isinstance(v, list) else [v] if v is not None else []
        if any(not (0 < c <= 1e6 and math.isfinite(c)) for c in values):
            raise ValueError("every node's cores must be a positive number of at most 1e6; "
                             "give e.g. cores = 2, or one number per node")
        return v

    def core_list(self) -> list[float] | None:
        """cores per node (None: no sharing, every worker has a core of its own)."""
        if self.cores is None:
            return None
        return list(self.cores) if isinstance(self.cores, list) else [float(self.cores)] * self.nodes

    @field_validator("speeds")
    @classmethod
    def _speeds(cls, v):
        # a speed scales service times, as the times' own bound does (1 / 2**40 to 2**40)
        if v is not None and any(not (1 / MAX_SECONDS <= s <= MAX_SECONDS) for s in v):
            raise ValueError("every speed must be a positive number from 2**-40 to 2**40")
        return v

    @model_validator(mode="after")
    def _check(self):
        if self.speeds is not None and len(self.speeds) != self.nodes:
            raise ValueError(f"speeds has {len(self.speeds)} entries but nodes = {self.nodes}; give one speed per node")
        for n in self.drained:
            if not 0 <= n < self.nodes:
                raise ValueError(f"drained node {n} does not exist; nodes are 0..{self.nodes - 1}")
        if isinstance(self.cores, list) and len(self.cores) != self.nodes:
            raise ValueError(f"cores has {len(self.cores)} entries but nodes = {self.nodes}; give one number, "
                             "or one per node")
        if self.background and self.cores is None:
            raise ValueError("background: background work shares the nodes' cores; give cluster.cores too")
        for i, bg in enumerate(self.background):
            for n in ([bg.node] if bg.node is not None else bg.nodes or []):
                if not 0 <= n < self.nodes:
                    raise ValueError(f"background entry {i} puts load on node {n}, which does not exist; nodes are "
                                     f"0..{self.nodes - 1}")
        return self


class ProfilePoint(_Model):
    """One point of a rate profile: from time `at` (seconds) the base rate is multiplied by `scale`."""

    at: float = Field(ge=0, **_SECONDS, description="seconds from the start of the run")
    scale: float = Field(ge=0, allow_inf_nan=False, le=1e12, description="multiplier of the base rate")


class Diurnal(_Model):
    """A sinusoidal multiplier 1 + amplitude * sin(2 pi (t - phase) / period) (docs/model.md)."""

    period: float = Field(gt=0, **_SECONDS, description="seconds per cycle")
    amplitude: float = Field(ge=0, allow_inf_nan=False, description="0..1; above 1 the rate would be negative")
    phase: float = Field(0.0, ge=-MAX_SECONDS, **_SECONDS, description="seconds: the multiplier is 1 and rising at t = phase")

    @field_validator("amplitude")
    @classmethod
    def _amplitude(cls, v):
        if v > 1:
            raise ValueError(f"an amplitude above 1 makes the rate negative for part of each period (got {v!r}); give 0 to 1")
        return v


class Bursts(_Model):
    """A two-state Markov-modulated Poisson process: on for Exp(on), off for Exp(off) seconds,
    the rate times `scale` while on (docs/model.md)."""

    on: float = Field(gt=0, **_SECONDS, description="mean seconds of a burst")
    off: float = Field(gt=0, **_SECONDS, description="mean seconds between bursts")
    scale: float = Field(ge=0, allow_inf_nan=False, le=1e12, description="rate multiplier while on")


class Workload(_Model):
    rho: float | None = Field(None, gt=0, allow_inf_nan=False, description="offered work / capacity of each service")
    rate: float | None = Field(None, gt=0, allow_inf_nan=False, description="total requests per second")
    entry: str | list[float] = Field("uniform", description="uniform | single:K | a weight per node")
    clients: int = Field(1000, ge=1, le=INT32_MAX)
    client_dist: Literal["uniform", "zipf"] = "uniform"
    zipf_s: float = Field(1.1, gt=0, allow_inf_nan=False)
    allow_overload: bool = Field(False, description="permit rho >= 1 with unbounded queues")
    trace: str | None = Field(None, description="arrivals from a Parquet/CSV file: time [, service, demand, client, entry]")
    profile: list[ProfilePoint] | None = Field(None, description="multiplier of the base rate from each `at` on")
    profile_shape: Literal["step", "linear"] = Field("step", description="between profile points: held or interpolated")
    profile_csv: str | None = Field(None, description="absolute rate (requests/s) from a CSV of time, rate rows")
    diurnal: Diurnal | None = None
    bursts: Bursts | None = None
    mode: Literal["open", "closed", "sessions"] = Field(
        "open", description="open: arrivals at a rate; closed: users who wait for each response; sessions: both")
    users: int | None = Field(None, ge=1, le=INT32_MAX, description="closed mode: the number of users")
    think: Demand | None = Field(None, description="closed mode: each user's think time before a request (the demand vocabulary)")
    session_rate: float | None = Field(None, gt=0, allow_inf_nan=False, le=1e12,
                                       description="sessions mode: sessions arriving per second (Poisson)")
    session_requests: float | None = Field(None, ge=1, allow_inf_nan=False, le=1e9,
                                           description="sessions mode: mean requests per session (geometric, 1, 2, ...)")

    @model_validator(mode="after")
    def _check(self):
        if self.mode == "closed":
            self._refuse_session_keys()
            return self._check_closed()
        if self.mode == "sessions":
            return self._check_sessions()
        self._refuse_session_keys()
        if self.users is not None or self.think is not None:
            key = "users" if self.users is not None else "think"
            raise ValueError(f"{key}: only for closed mode; set workload.mode = \"closed\" or drop workload.{key}")
        given = sum(x is not None for x in (self.rho, self.rate, self.trace, self.profile_csv))
        if self.profile_csv is not None and given != 1:
            other = "workload.rho" if self.rho is not None else "workload.rate" if self.rate is not None else "workload.trace"
            raise ValueError(f"profile_csv gives the arrival rate itself (requests/s per row), so {other} cannot be "
                             f"given with it; drop {other}, or use workload.profile (multipliers) with it")
        if given != 1:
            raise ValueError("rho: give exactly one of workload.rho, workload.rate, workload.trace or workload.profile_csv")
        self._check_profile()
        return self._check_entry()

    def _check_profile(self):
        """The time-varying rate's keys (docs/model.md, "Time-varying arrivals")."""
        varying = [k for k in ("profile", "profile_csv", "diurnal", "bursts") if getattr(self, k) is not None]
        if self.trace is not None and varying:
            raise ValueError(f"{varying[0]}: a trace gives its own arrival times; drop workload.{varying[0]} or the trace")
        if self.profile is not None and self.profile_csv is not None:
            raise ValueError("profile: give workload.profile (multipliers) or workload.profile_csv (rates), not both")
        if self.profile is not None:
            if not self.profile:
                raise ValueError("profile: an empty list; give at least one {at, scale} point, or drop the key")
            for i in range(1, len(self.profile)):
                if self.profile[i].at <= self.profile[i - 1].at:
                    raise ValueError(f"profile.{i}.at {self.profile[i].at:g} is not after profile.{i - 1}.at "
                                     f"{self.profile[i - 1].at:g}; sort the points by strictly increasing time")
            if all(p.scale == 0 for p in self.profile):
                raise ValueError("profile: every scale is 0, so no request would ever arrive; give a positive scale")

    def _check_entry(self):
        if isinstance(self.entry, str):
            if self.entry != "uniform" and not self.entry.startswith("single:"):
                raise ValueError(f"entry must be 'uniform', 'single:K' or a weight list, not {self.entry!r}")
            if self.entry.startswith("single:"):
                k = self.entry.split(":", 1)[1]
                if not (k.isascii() and k.isdigit()):
                    raise ValueError(f"entry 'single:K' needs a node number K, got {self.entry!r}")
        elif any(not (w >= 0 and math.isfinite(w)) for w in self.entry) or not 0 < sum(self.entry) < math.inf:
            raise ValueError("entry weights must be non-negative with a positive finite sum")
        return self

    def _check_closed(self):
        """Closed mode (docs/model.md, "Closed loop"): users and think times, no arrival rate."""
        self._refuse(("rho", "rate", "trace", "profile", "profile_csv", "diurnal", "bursts"),
                     "the users and their think times set the load")
        if self.users is None:
            raise ValueError("users: closed mode needs workload.users, the number of users (at least 1)")
        if self.think is None:
            raise ValueError("think: closed mode needs workload.think = {dist, mean, ...}, the think time between requests")
        return self._check_entry()

    def _refuse(self, keys, why):
        """The first of `keys` given is refused in this mode (`why`: what sets the load instead)."""
        for key in keys:
            if getattr(self, key) is not None:
                raise ValueError(f"{key}: refused in {self.mode} mode ({why}); drop workload.{key} or set "
                                 "workload.mode = \"open\"")

    def _refuse_session_keys(self):
        for key in ("session_rate", "session_requests"):
            if getattr(self, key) is not None:
                raise ValueError(f"{key}: only for sessions mode; set workload.mode = \"sessions\" or drop workload.{key}")

    def _check_sessions(self):
        """Sessions mode (docs/model.md, "Sessions"): a session rate, requests per session and
        think times; no arrival rate, no users, no time-varying rate."""
        self._refuse(("rho", "rate", "trace", "users", "profile", "profile_csv", "diurnal", "bursts"),
                     "workload.session_rate, workload.session_requests and the think times set the load")
        if self.session_rate is None:
            raise ValueError("session_rate: sessions mode needs workload.session_rate, the sessions arriving per second (> 0)")
        if self.session_requests is None:
            raise ValueError("session_requests: sessions mode needs workload.session_requests, the mean requests per "
                             "session (>= 1)")
        if self.think is None:
            raise ValueError("think: sessions mode needs workload.think = {dist, mean, ...}, the think time between a "
                             "session's requests")
        return self._check_entry()


class Network(_Model):
    hop: float = Field(0.0, ge=0, **_SECONDS, description="one-way overlay latency, seconds")
    jitter: float = Field(0.0, ge=0, **_SECONDS, description="extra one-way delay, uniform on [0, jitter]")


class Info(NamedTuple):
    """An information model (docs/model.md, "Information models"): what a balancer knows of loads.
    kind: global | local | stale | piggyback | work; period: the stale snapshot's period (inf: none)."""

    kind: str
    period: float


class SlowStart(_Model):
    """Envoy's slow start: a task that joins during the run has the weight
    max(min_weight, (age / window) ** (1 / aggression)) until it is `window` seconds old."""

    window: float = Field(gt=0, **_SECONDS, description="seconds a new task's weight ramps up")
    aggression: float = Field(1.0, gt=0, le=1e6, allow_inf_nan=False, description="1 = linear; higher: faster at first")
    min_weight: float = Field(0.1, gt=0, le=1, allow_inf_nan=False, description="the weight at join")


class Balancer(_Model):
    mode: Literal["per_node", "central"] = "per_node"
    info: str = Field("global", description="global | local | stale:P | piggyback | work")
    rr_start: Literal["zero", "random"] = "random"
    unit: Literal["request", "connection"] = Field("request", description="L7: balance every request; L4: balance keep-alive connections")
    keepalive: float = Field(10.0, ge=1, le=1e15, allow_inf_nan=False, description="mean requests per connection (geometric), unit = connection")
    slow_start: SlowStart | None = Field(None, description="a new task's weight ramps up (view.weight)")

    @field_validator("info")
    @classmethod
    def _info(cls, v: str):
        if v in ("global", "local", "piggyback", "work"):
            return v
        if v.startswith("stale:"):
            try:
                p = float(v.split(":", 1)[1])
            except ValueError:
                p = float("nan")
            if p > 0 and math.isfinite(p):
                return v
            raise ValueError(f"stale:P needs a positive refresh period P in seconds, got {v!r}")
        raise ValueError(f"info must be global, local, stale:P or piggyback (or work: global, with each task's "
                         f"unfinished work), not {v!r}")

    @property
    def info_model(self) -> Info:
        """`info` as a typed value: Info("stale", P) for stale:P, else Info(kind, inf)."""
        kind, _, p = self.info.partition(":")
        return Info(kind, float(p) if p else math.inf)


class Run(_Model):
    requests: int | None = Field(None, ge=1, le=INT64_MAX)
    duration: float | None = Field(None, gt=0, **_SECONDS)
    warmup: float = Field(0.1, ge=0, lt=1, description="fraction of requests (or of duration) excluded")
    seed: int = Field(0, ge=0, lt=2**63)
    chunk: int = Field(65536, ge=1, le=1 << 24, description="arrivals generated per vectorised chunk")
    drain: bool = Field(True, description="finish in-flight requests after the last arrival")
    windows: int = Field(100, ge=0, le=100_000, description="time-series windows over the run (0 = none)")
    window: float | None = Field(None, gt=0, **_SECONDS, description="time-series window length, seconds (overrides windows)")

    @model_validator(mode="after")
    def _check(self):
        if self.requests is not None and self.duration is not None:
            raise ValueError("requests: give run.requests or run.duration, not both")
        return self




class FaultEvent(_Model):
    """One scripted fault at time `at` (seconds): `task_crash` of a task id (`task`) or of
    `count` live tasks of a service (`service`, name or index; lowest task ids first),
    `node_down` / `node_up` / `node_drain` of a node, `node_slow` of a node to `speed`."""

    at: float = Field(ge=0, **_SECONDS, description="time of the fault, seconds")
    kind: Literal[SCENARIO_KINDS]
    node: int | None = Field(None, ge=0)
    task: int | None = Field(None, ge=0)
    service: str | int | None = None
    count: int = Field(1, ge=1, le=INT64_MAX)
    speed: float | None = Field(None, allow_inf_nan=False, description="node_slow: the node's speed from `at` on")

    @model_validator(mode="after")
    def _check(self):
        if (self.kind == "node_slow") != (self.speed is not None):
            raise ValueError("speed: a node_slow event needs speed (the node's speed from `at` on), and only it takes one"
                             if self.kind == "node_slow" else f"speed: only a node_slow event takes a speed, not {self.kind}")
        if self.speed is not None and not (1 / MAX_SECONDS <= self.speed <= MAX_SECONDS):
            raise ValueError(f"speed: a node_slow speed must be a positive number from 2**-40 to 2**40 (got {self.speed!r}); "
                             "a stopped node is node_down")
        if self.kind == "task_crash":
            if (self.task is None) == (self.service is None):
                raise ValueError("task: a task_crash needs exactly one of task (a task id) or service (with count)")
            if self.node is not None:
                raise ValueError("node: a task_crash names a task or a service, not a node")
        else:
            if self.node is None:
                raise ValueError(f"node: a {self.kind} event needs the node it applies to")
            if self.task is not None or self.service is not None:
                raise ValueError(f"task: a {self.kind} event names a node, not a task or service")
        return self


class RandomFaults(_Model):
    """Random faults: for `target = node`, every node (or those listed in `targets`) alternates
    up for Exp(mtbf) and down for Exp(mttr) seconds; for `target = task`, every task slot (or
    those listed) crashes at the times of a Poisson process of mean gap `mtbf` (a crash while
    the slot has no live task does nothing; the orchestrator recovers it, see `health`)."""

    target: Literal["node", "task"]
    mtbf: float = Field(gt=0, **_SECONDS, description="mean time between failures, seconds")
    mttr: float | None = Field(None, gt=0, **_SECONDS, description="mean time to repair a node, seconds")
    targets: list[int] | None = Field(None, description="node or task ids (default: all)")

    @model_validator(mode="after")
    def _check(self):
        if self.target == "node" and self.mttr is None:
            raise ValueError("mttr: random node faults need mttr (mean seconds a node stays down)")
        if self.target == "task" and self.mttr is not None:
            raise ValueError("mttr: a crashed task is recovered by the orchestrator (health.*), not after mttr; drop it")
        return self


class Faults(_Model):
    events: list[FaultEvent] = Field(default_factory=list)
    random: list[RandomFaults] = Field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.events or self.random)


class Health(_Model):
    task_detect: float = Field(10.0, ge=0, **_SECONDS, description="seconds until a crashed task leaves the tables")
    node_detect: float = Field(15.0, ge=0, **_SECONDS, description="seconds until a down node is noticed (heartbeat)")
    restart_delay: float = Field(5.0, ge=0, **_SECONDS, description="seconds from detection to the replacement's start")
    startup: float = Field(0.0, ge=0, **_SECONDS, description="seconds for a replacement to become healthy")
    grace: float = Field(0.0, ge=0, **_SECONDS, description="stop_grace_period: seconds a stopped task finishes its requests")
    interval: float = Field(0.0, ge=0, **_SECONDS, description="health checks: seconds between probes (0 = off)")
    timeout: float = Field(30.0, ge=0, **_SECONDS, description="health checks: seconds a failing probe takes")
    retries: int = Field(3, ge=1, le=1_000_000, description="health checks: failed probes that mark a task unhealthy")
    start_period: float = Field(0.0, ge=0, **_SECONDS, description="health checks: failed probes not counted before this")


class DeployEvent(_Model):
    """One deployment at time `at` (docs/model.md, "Deployments"): `scale` a service to
    `replicas`, or `update` it (its tasks replaced in batches of `parallelism`, 0 = all, `delay`
    apart, `stop-first` or `start-first`; `set` the new version's `demand.mean`)."""

    at: float = Field(ge=0, **_SECONDS, description="seconds from the start of the run")
    kind: Literal["scale", "update"]
    service: str | int
    replicas: int | None = Field(None, le=1_000_000, description="scale: the new number of tasks")
    parallelism: int = Field(1, ge=0, le=1_000_000, description="update: tasks replaced at once (0 = all)")
    delay: float = Field(0.0, ge=0, **_SECONDS, description="update: seconds between batches")
    order: Literal["stop-first", "start-first"] = "stop-first"
    set: dict[str, float] | None = Field(None, description="update: the new version's keys (demand.mean)")

    @model_validator(mode="after")
    def _check(self):
        given = self.model_fields_set
        if self.kind == "scale":
            if self.replicas is None:
                raise ValueError("replicas: a scale event needs replicas, the service's new number of tasks")
            if self.replicas < 0:
                raise ValueError(f"replicas: a service cannot scale to {self.replicas} replicas; give 0 or more")
            extra = sorted(given & {"parallelism", "delay", "order", "set"})
            if extra:
                raise ValueError(f"{extra[0]}: only an update takes {extra[0]}; drop it from the scale event")
        else:
            if self.replicas is not None:
                raise ValueError("replicas: an update keeps the number of tasks; scale with a kind = \"scale\" event")
            for key, value in (self.set or {}).items():
                if key != "demand.mean":
                    raise ValueError(f"set: an update cannot set {key!r}; it sets demand.mean (the new version's mean demand)")
                if not (value > 0 and math.isfinite(value) and value <= MAX_SECONDS):
                    raise ValueError(f"set: demand.mean must be a positive number of seconds up to 2**40, got {value!r}")
        return self


class Deploy(_Model):
    events: list[DeployEvent] = Field(default_factory=list)


class Autoscaler(_Model):
    """The Kubernetes HPA rule for one service (docs/model.md, "Autoscaler"): every `interval`
    seconds, desired = ceil(tasks x metric / target) from the metric over the last `window`
    seconds, unchanged within `tolerance`, the largest desire of the last `stabilization`
    seconds for a scale-down, within [min, max]."""

    service: str | int
    metric: Literal["util", "rps", "latency_p99"] = "util"
    target: float = Field(gt=0, allow_inf_nan=False, le=1e12, description="util: busy fraction per worker; rps: completions per second per task; latency_p99: seconds")
    interval: float = Field(15.0, gt=0, **_SECONDS, description="seconds between evaluations")
    window: float = Field(60.0, gt=0, **_SECONDS, description="seconds the metric is averaged over")
    tolerance: float = Field(0.1, ge=0, lt=1, description="no change while |metric / target - 1| <= tolerance")
    stabilization: float = Field(300.0, ge=0, **_SECONDS, description="seconds of desires a scale-down takes the largest of")
    min: int = Field(1, ge=0, le=1_000_000)
    max: int = Field(10, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _check(self):
        if self.min > self.max:
            raise ValueError(f"min: an autoscaler with min {self.min} > max {self.max} can never settle; give min <= max")
        if self.window / self.interval > 100_000 or self.stabilization / self.interval > 100_000:
            raise ValueError("window: window and stabilization may span at most 100,000 intervals; raise interval")
        return self


class Clients(_Model):
    retries: int = Field(0, ge=0, le=100, description="re-sends of a failed or rejected request, at most")
    backoff: float = Field(0.1, gt=0, **_SECONDS, description="base backoff, seconds: attempt a waits backoff * 2**a * U(0.5, 1)")
    timeout: float = Field(0.0, ge=0, **_SECONDS, description="a request slower than this counts as timed out (0 = none)")

    @property
    def active(self) -> bool:
        return self.retries > 0 or self.timeout > 0


class Scenario(_Model):
    name: str = "custom"
    cluster: Cluster = Cluster()
    services: list[Service] = Field(default_factory=lambda: [Service()], min_length=1)
    workload: Workload = Workload(rho=0.7)
    network: Network = Network()
    balancer: Balancer = Balancer()
    run: Run = Run()
    faults: Faults = Faults()
    health: Health = Health()
    clients: Clients = Clients()
    deploy: Deploy = Deploy()
    autoscale: list[Autoscaler] = Field(default_factory=list)

    @property
    def orchestrated(self) -> bool:
        """Tasks come and go during the run: faults, deployments or autoscalers (the engine's
        failure paths)."""
        return self.faults.any or bool(self.deploy.events) or bool(self.autoscale)

    def _check_deploy(self):
        """deploy.events name services that exist, and their task slots fit the engine's int32."""
        names = [s.name for s in self.services]
        seen = set()
        for i, a in enumerate(self.autoscale):
            where = f"autoscale.{i}.service"
            if isinstance(a.service, str) and a.service not in names:
                raise ValueError(f"{where} {a.service!r} is not a service; services: {', '.join(names)}")
            if isinstance(a.service, int) and not 0 <= a.service < len(names):
                raise ValueError(f"{where} {a.service} does not exist; services are 0..{len(names) - 1}")
            s = names.index(a.service) if isinstance(a.service, str) else a.service
            if s in seen:
                raise ValueError(f"{where} {a.service!r} has a second autoscaler; give one per service")
            seen.add(s)
        for i, ev in enumerate(self.deploy.events):
            where = f"deploy.events.{i}.service"
            if isinstance(ev.service, str) and ev.service not in names:
                raise ValueError(f"{where} {ev.service!r} is not a service; services: {', '.join(names)}")
            if isinstance(ev.service, int) and not 0 <= ev.service < len(names):
                raise ValueError(f"{where} {ev.service} does not exist; services are 0..{len(names) - 1}")
        if self.deploy.events or self.autoscale:
            from .deploy import spare_slots
            spare = spare_slots(self)
            slots = sum(s.replicas + n for s, n in zip(self.services, spare))
            workers = sum((s.replicas + n) * s.workers for s, n in zip(self.services, spare))
            per_node = self.cluster.nodes * slots if self.balancer.mode == "per_node" else 0
            if max(slots, workers, per_node) > INT32_MAX:
                raise ValueError(f"deploy.events: the task slots they need ({slots:,}, x workers {workers:,}, x per-node "
                                 f"balancers {per_node:,}) exceed the engine's limit of {INT32_MAX:,} (int32); "
                                 "scale to fewer replicas")

    @model_validator(mode="after")
    def _check(self):
        self._check_deploy()
        n = self.cluster.nodes
        ports = [s.port for s in self.services]
        if len(set(ports)) != len(ports):
            raise ValueError("services two services publish the same port; give each service its own port")
        for i, s in enumerate(self.services):
            for node in s.placement or ():
                if not 0 <= node < n:
                    raise ValueError(f"services.{i}.placement node {node} does not exist; nodes are 0..{n - 1}")
            if s.placement is None and len(set(self.cluster.drained)) >= n:
                raise ValueError("cluster.drained lists every node, so spread placement has nowhere to put tasks; undrain a node")
        w = self.workload
        if isinstance(w.entry, list) and len(w.entry) != n:
            raise ValueError(f"workload.entry has {len(w.entry)} weights but nodes = {n}; give one per node")
        if isinstance(w.entry, str) and w.entry.startswith("single:") and int(w.entry[7:]) >= n:
            raise ValueError(f"workload.entry {w.entry!r} names a node that does not exist; nodes are 0..{n - 1}")
        if w.mode == "sessions" and self.balancer.unit == "connection" and "keepalive" in self.balancer.model_fields_set:
            raise ValueError("balancer.keepalive does not apply in sessions mode: each session is one keep-alive "
                             "connection (docs/model.md, \"Sessions\"); drop balancer.keepalive")
        if w.mode in ("closed", "sessions") and not self.run.drain and self.run.duration is None:
            raise ValueError(f"run.drain false in {w.mode} mode needs run.duration (the run then stops there); "
                             "give run.duration or drop run.drain")
        if self.balancer.info == "work" and self.cluster.cores is not None:
            # `work` sums the FIFO workers' remaining busy time; under processor sharing a
            # request's finish moves with its node's load, so that figure would be wrong
            raise ValueError("balancer.info work is not defined with cluster.cores (a request's remaining work under "
                             "processor sharing changes with its node's load); use global information or drop cluster.cores")
        unbounded = any(s.queue_limit == 0 for s in self.services)
        if w.rho is not None and w.rho >= 1 and unbounded and not w.allow_overload:
            raise ValueError(f"workload.rho {w.rho} >= 1 with unbounded queues never reaches steady state; "
                             "lower rho, set a queue_limit, or set workload.allow_overload = true")
        self._check_limits()
        n_tasks = sum(s.replicas for s in self.services)
        names = [s.name for s in self.services]
        for i, ev in enumerate(self.faults.events):
            where = f"faults.events.{i}"
            if ev.node is not None and ev.node >= n:
                raise ValueError(f"{where}.node {ev.node} does not exist; nodes are 0..{n - 1}")
            if ev.task is not None and ev.task >= n_tasks:
                raise ValueError(f"{where}.task {ev.task} does not exist; tasks are 0..{n_tasks - 1}")
            if isinstance(ev.service, str) and ev.service not in names:
                raise ValueError(f"{where}.service {ev.service!r} is not a service; services: {', '.join(names)}")
            if isinstance(ev.service, int) and not 0 <= ev.service < len(names):
                raise ValueError(f"{where}.service {ev.service} does not exist; services are 0..{len(names) - 1}")
        for i, rf in enumerate(self.faults.random):
            top = n if rf.target == "node" else n_tasks
            for t in rf.targets or ():
                if not 0 <= t < top:
                    raise ValueError(f"faults.random.{i}.targets {rf.target} {t} does not exist; {rf.target}s are 0..{top - 1}")
        return self

    def _check_limits(self):
        """Sizes the engine stores in int32 (task ids, worker slots, entries of its arrays) and
        sums that must stay finite."""
        n_tasks = sum(s.replicas for s in self.services)
        workers = sum(s.replicas * s.workers for s in self.services)
        sizes = [("services", "replicas summed over services", n_tasks, "fewer replicas"),
                 ("services", "replicas x workers summed over services", workers, "fewer replicas or workers")]
        if self.cluster.cores is not None:
            sizes.append(("cluster.cores", "nodes x worker slots (each node's processor-sharing heap)",
                          self.cluster.nodes * workers, "fewer nodes, replicas or workers"))
        if self.balancer.mode == "per_node":
            sizes.append(("cluster.nodes", "per-node balancers x tasks", self.cluster.nodes * n_tasks,
                          "fewer nodes or replicas, or balancer.mode = central"))
        if self.balancer.unit == "connection":
            if self.workload.mode == "closed":     # a user's client id is its user id
                sizes.append(("workload.users", "users x services (connections)", self.workload.users * len(self.services),
                              "fewer users"))
            else:
                sizes.append(("workload.clients", "clients x services (connections)", self.workload.clients * len(self.services),
                              "fewer clients"))
        for key, what, n, fix in sizes:
            if n > INT32_MAX:
                raise ValueError(f"{key} {what} = {n:,} exceeds the engine's limit of {INT32_MAX:,} (int32); use {fix}")
        if not math.isfinite(sum(s.weight for s in self.services)):
            raise ValueError("services the weights' sum overflows; scale the weights down")
        slowest = min(self.cluster.speeds) if self.cluster.speeds is not None else 1.0
        slowest = min([slowest] + [ev.speed for ev in self.faults.events if ev.speed is not None])
        for i, s in enumerate(self.services):
            top = s.demand.largest() / slowest
            if not top <= MAX_SECONDS:
                raise ValueError(f"services.{i}.demand: its largest draw at the slowest node speed ({slowest:g}) takes "
                                 f"{top:.6g} s, beyond 2**40 s; lower the demand or raise cluster.speeds")
        think = self.workload.think
        if think is not None and not think.largest() <= MAX_SECONDS:
            raise ValueError(f"workload.think: its largest draw takes {think.largest():.6g} s, beyond 2**40 s; lower it")
        if self.clients.retries and self.clients.backoff * 2.0**self.clients.retries > MAX_SECONDS:
            raise ValueError(f"clients.backoff {self.clients.backoff:g} x 2**retries ({self.clients.retries}) exceeds 2**40 s; "
                             "lower clients.backoff or clients.retries")

    @property
    def n_requests(self) -> int | None:
        if self.run.requests is None and self.run.duration is None:
            return 1_000_000
        return self.run.requests


# --------------------------------------------------------------------------------------------
# Presets: the embedded defaults. Times in seconds.

PRESETS: dict[str, dict[str, Any]] = {
    # The seed's picture: three Swarm nodes; node 0 (the manager, drained) is the only entry
    # node a client reaches and runs no task; two replicas of the web service on nodes 1 and 2,
    # published on port 5001. Every request crosses the overlay, and node 0's own IPVS picks.
    "seed-mesh": {
        "name": "seed-mesh",
        "cluster": {"nodes": 3, "drained": [0]},
        "services": [{"name": "web", "port": 5001, "replicas": 2, "workers": 1,
                      "demand": {"dist": "exponential", "mean": 0.01}}],
        "workload": {"rho": 0.7, "entry": "single:0"},
        "network": {"hop": 0.0005},
        "balancer": {"mode": "per_node", "info": "local", "rr_start": "random"},
        "run": {"requests": 200_000, "warmup": 0.1},
    },
    # The queueing-theory reference: 100 single-worker tasks, exponential service of mean 1,
    # rho 0.9, one central balancer with global information, no overlay hop.
    "reference": {
        "name": "reference",
        "cluster": {"nodes": 100},
        "services": [{"name": "svc", "port": 80, "replicas": 100, "workers": 1,
                      "demand": {"dist": "exponential", "mean": 1.0}}],
        "workload": {"rho": 0.9, "entry": "uniform"},
        "network": {"hop": 0.0},
        "balancer": {"mode": "central", "info": "global", "rr_start": "zero"},
        "run": {"requests": 1_000_000, "warmup": 0.1},
    },
}


# The seed mesh losing node 2 (one of the two web tasks) at t = 60 s; Swarm's node heartbeat
# notices after 15 s, a replacement starts on node 1 after 5 s more (2 s to become healthy),
# and node 2 comes back at t = 180 s (Swarm does not move tasks back). 300 s, 1 s windows.
PRESETS["failover"] = copy.deepcopy(PRESETS["seed-mesh"])
PRESETS["failover"].update({
    "name": "failover",
    "run": {"duration": 300.0, "warmup": 0.1, "window": 1.0},
    "faults": {"events": [{"at": 60.0, "kind": "node_down", "node": 2}, {"at": 180.0, "kind": "node_up", "node": 2}]},
    "health": {"task_detect": 10.0, "node_detect": 15.0, "restart_delay": 5.0, "startup": 2.0},
})

# The seed mesh under a closed loop: 20 users, each thinking Exp(0.12 s) between a response and
# its next request, which loads the two web tasks to about 0.7 under round-robin (as the seed
# mesh's rho); throughput is what the mesh gives (docs/model.md, "Closed loop").
PRESETS["closed-loop"] = copy.deepcopy(PRESETS["seed-mesh"])
PRESETS["closed-loop"].update({
    "name": "closed-loop",
    "workload": {"mode": "closed", "users": 20, "think": {"dist": "exponential", "mean": 0.12}, "entry": "single:0"},
})


# The seed mesh under a flash crowd: base load rho 0.3, three times the rate from t = 120 s to
# 180 s (utilisation 0.9 at the peak), 300 s, 2 s windows (docs/model.md, "Time-varying arrivals").
PRESETS["flash-crowd"] = copy.deepcopy(PRESETS["seed-mesh"])
PRESETS["flash-crowd"].update({
    "name": "flash-crowd",
    "workload": {"rho": 0.3, "entry": "single:0",
                 "profile": [{"at": 0.0, "scale": 1.0}, {"at": 120.0, "scale": 3.0}, {"at": 180.0, "scale": 1.0}]},
    "run": {"duration": 300.0, "warmup": 0.1, "window": 2.0},
})


# Nodes as shared machines (docs/model.md, "Nodes as shared machines"): two services, web
# (20 ms exponential) and api (50 ms lognormal, cv 2), four replicas of four workers each,
# spread one of each per node over 4 nodes of 2 cores: the 8 workers of a node share its
# 2 cores. Each service offered 0.35 of its capacity alone (8 cores), so 0.7 of the cluster's
# cores in all; at t = 100 s a batch job of 2 cores' work arrives on node 3 and stays. Per-node
# balancers with global information; 300 s, 2 s windows.
PRESETS["shared-nodes"] = {
    "name": "shared-nodes",
    "cluster": {"nodes": 4, "cores": 2.0, "background": [{"node": 3, "at": 100.0, "load": 2.0}]},
    "services": [{"name": "web", "port": 80, "replicas": 4, "workers": 4,
                  "demand": {"dist": "exponential", "mean": 0.02}},
                 {"name": "api", "port": 8080, "replicas": 4, "workers": 4,
                  "demand": {"dist": "lognormal", "mean": 0.05, "cv": 2.0}}],
    "workload": {"rho": 0.35, "entry": "uniform"},
    "network": {"hop": 0.0005},
    "balancer": {"mode": "per_node", "info": "global", "rr_start": "random"},
    "run": {"duration": 300.0, "warmup": 0.1, "window": 2.0},
}
# The seed mesh with four web replicas (two on each task node) rolled out to a new version at
# t = 60 s (docs/model.md, "Deployments"): one task at a time, 5 s after the previous one is
# healthy, stop-first; a new task is healthy 2 s after its placement; a stopped task finishes
# what it holds for 1 s (stop_grace_period). 180 s, 1 s windows.
PRESETS["rolling-update"] = copy.deepcopy(PRESETS["seed-mesh"])
PRESETS["rolling-update"].update({
    "name": "rolling-update",
    "services": [{"name": "web", "port": 5001, "replicas": 4, "workers": 1,
                  "demand": {"dist": "exponential", "mean": 0.01}}],
    "run": {"duration": 180.0, "warmup": 0.1, "window": 1.0},
    "deploy": {"events": [{"at": 60.0, "kind": "update", "service": "web", "parallelism": 1, "delay": 5.0,
                           "order": "stop-first"}]},
    "health": {"startup": 2.0, "grace": 1.0},
})


# The seed mesh's two web tasks under a load step: base utilisation 0.3, three times the rate
# from t = 120 s on, with the Kubernetes HPA rule on utilisation 0.6 (docs/model.md,
# "Autoscaler"; at least 2 tasks): it settles at ceil(0.9 x 2 / 0.6) = 3 tasks. 480 s, 2 s windows.
PRESETS["autoscale"] = copy.deepcopy(PRESETS["seed-mesh"])
PRESETS["autoscale"].update({
    "name": "autoscale",
    "workload": {"rho": 0.3, "entry": "single:0", "profile": [{"at": 0.0, "scale": 1.0}, {"at": 120.0, "scale": 3.0}]},
    "run": {"duration": 480.0, "warmup": 0.1, "window": 2.0},
    "autoscale": [{"service": "web", "metric": "util", "target": 0.6, "interval": 15.0, "window": 60.0,
                   "stabilization": 300.0, "min": 2, "max": 6}],
    "health": {"startup": 2.0, "grace": 1.0},
})


def preset_names() -> list[str]:
    return sorted(PRESETS)


# --------------------------------------------------------------------------------------------
# Overrides: "a.b.0.c=value". The value is read as a TOML value when it parses as one
# (numbers, booleans, lists, quoted strings), else taken as a bare string.

def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise UserError(f"value {text[:40]!r}...: nested too deeply to be a scenario value") from None


def set_path(data: dict, path: str, value: Any, *, what: str = "--set") -> None:
    """Set `value` at dotted `path` in a nested dict/list structure, creating tables as needed."""
    parts = path.split(".")
    if not path or any(p == "" for p in parts):
        raise UserError(f"{what} {path!r}: empty key; write a dotted path like workload.rho=0.8")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not (part.isascii() and part.isdigit()):
                raise UserError(f"{what} {path}: {'.'.join(parts[:i])} is a list; index it with a number, e.g. {'.'.join(parts[:i])}.0")
            k = int(part)
            if k >= len(node):
                raise UserError(f"{what} {path}: index {k} is out of range ({'.'.join(parts[:i])} has {len(node)} items)")
            if last:
                node[k] = value
            else:
                node = node[k]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if part not in node or node[part] is None:
                    node[part] = {}
                node = node[part]
        else:
            raise UserError(f"{what} {path}: {'.'.join(parts[:i])} is a value, not a table; {where} cannot be set")


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. --set workload.rho=0.8")
    key, val = text.split("=", 1)
    return key.strip(), parse_value(val.strip())


def _fields_at(loc) -> set[str]:
    """Field names of the model at a validation location (e.g. ("cluster",) -> Cluster's)."""
    model = Scenario
    for part in loc:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(part)
        if f is None:
            return set()
        ann = f.annotation
        args = getattr(ann, "__args__", ()) or (ann,)
        args = [b for a in args for b in (getattr(a, "__args__", ()) or (a,))]    # list[Model] | None
        nxt = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            return set()
        model = nxt
    return set(model.model_fields)


def _field_loc(loc) -> list:
    """The location without pydantic's union-member tags (the "str" of workload.entry.str)."""
    out = []
    for part in loc:
        if isinstance(part, str) and out and not _fields_at(out):
            continue        # a name below a plain value: a union member's tag
        out.append(part)
    return out


def _format_validation(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in _field_loc(e["loc"]))
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
        # A model-level check names its field first ("speeds has ...", "workload.rho = ..."):
        # move that name into the dotted location.
        head = msg.split(" ", 1)[0].rstrip(":")
        if head.replace(".", "").replace("_", "").isalnum() and head[:1].islower() and len(msg.split(" ", 1)) > 1:
            if "." in head and not loc:
                loc, msg = head, msg.split(" ", 1)[1]
            elif "." not in head and head in _fields_at(e["loc"]):
                loc, msg = f"{loc}.{head}" if loc else head, msg.split(" ", 1)[1]
    loc = loc or "(top level)"
    if e["type"] == "extra_forbidden":
        msg = "unknown field; check the spelling (the keys: README.md, Scenario keys)"
    elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], (dict, list)):
        msg = f"{msg} (got {e['input']!r})"
    return f"{source}: {loc}: {msg}"


MAX_FILE_BYTES = 16 << 20      # a scenario or sweep file is a few kB; a larger one is not one


def read_text(path: str | Path, what: str = "scenario") -> str:
    """A scenario's or sweep's file as text: a regular file of at most MAX_FILE_BYTES."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UserError(f"{what} file {str(p)!r} does not exist; give a preset name ({', '.join(preset_names())}) or a TOML path") from None
    except OSError as exc:
        raise UserError(f"{what} file {str(p)[:80]!r} cannot be read ({exc.strerror or exc}); give another path") from None
    if p.is_dir():
        raise UserError(f"{what} file {str(p)!r} is a folder; give a TOML file")
    if not p.is_file():
        raise UserError(f"{what} file {str(p)!r} is not a regular file (a device or a pipe); give a TOML file")
    if st.st_size > MAX_FILE_BYTES:
        raise UserError(f"{what} file {str(p)!r} has {st.st_size:,} bytes, more than {MAX_FILE_BYTES:,}; it is not a {what}")
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} file {str(p)!r} cannot be read ({exc.__class__.__name__}); check its permissions and encoding") from None


def read_toml(path: str | Path, what: str = "scenario") -> dict:
    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{what} file {str(path)!r} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UserError(f"{what} file {str(path)!r} nests arrays or tables too deeply to be a {what}") from None


TRACE_KEY = "workload.trace"
PATH_KEYS = (TRACE_KEY, "workload.profile_csv")    # files relative to the file (or folder) that names them


def _anchor(value: Any, base_dir: str | Path | None) -> Any:
    """A relative trace path read from a file or a command line, made absolute from the folder
    it is relative to (that file's, or the current one)."""
    if not isinstance(value, str) or base_dir is None or Path(value).is_absolute():
        return value
    return str(Path(base_dir).absolute() / value)


def raw_scenario(source: str | Path | dict, base_dir: str | Path | None = None) -> tuple[dict, str]:
    """The scenario as a plain dict, and a label for messages. A TOML file's `workload.trace`
    is relative to that file; a dict's to `base_dir` (when given)."""
    if isinstance(source, dict):
        data, label = copy.deepcopy(source), "scenario"
    elif str(source) in PRESETS:
        return copy.deepcopy(PRESETS[str(source)]), f"preset {source}"
    else:
        s = str(source)
        if not s.endswith(".toml") and not os.path.exists(s):     # False, not OSError, for a name too long
            raise UserError(f"scenario {s!r} is neither a preset ({', '.join(preset_names())}) nor an existing TOML file")
        data, label = read_toml(s), s
        data.setdefault("name", Path(s).stem)
        base_dir = Path(s).parent
    workload = data.get("workload")
    for key in PATH_KEYS:
        field = key.split(".", 1)[1]
        if isinstance(workload, dict) and field in workload:
            workload[field] = _anchor(workload[field], base_dir)
    return data, label


def validate(data: dict, source: str = "scenario") -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise UserError(_format_validation(err, source)) from None


_ALTERNATIVE = {"workload.users": ("workload.rho", "workload.rate", "workload.trace", "workload.profile_csv"),
                "workload.session_rate": ("workload.rho", "workload.rate", "workload.trace", "workload.profile_csv",
                                          "workload.users"),
                "workload.rate": ("workload.rho", "workload.trace", "workload.profile_csv"),
                "workload.rho": ("workload.rate", "workload.trace", "workload.profile_csv"),
                "workload.trace": ("workload.rho", "workload.rate", "workload.profile_csv"),
                "workload.profile_csv": ("workload.rho", "workload.rate", "workload.trace"),
                "run.requests": ("run.duration",), "run.duration": ("run.requests",)}


def apply_overrides(data: dict, items, *, what: str = "--set", base_dir: str | Path | None = None) -> None:
    """Set each (dotted key, value) of one group of overrides in `data`. Setting one of a set
    of alternatives (`_ALTERNATIVE`) clears the others unless the same group sets them too; a
    relative `workload.trace` is taken from `base_dir`."""
    items = list(items)
    keys = {k for k, _ in items}
    for key, value in items:
        set_path(data, key, _anchor(value, base_dir) if key in PATH_KEYS else value, what=what)
        for other in _ALTERNATIVE.get(key, ()):
            if other not in keys and value is not None:
                set_path(data, other, None, what=what)


def load_scenario(source: str | Path | dict | Scenario, overrides: dict | list | None = None) -> Scenario:
    """Load a preset name, a TOML path or a dict, apply dotted-path overrides, validate.

    `overrides` is a dict {"workload.rho": 0.8} or a list of "key=value" strings.
    """
    if isinstance(source, Scenario):
        if not overrides:
            return source
        source = source.model_dump()
    data, label = raw_scenario(source)
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in (overrides or ()))
    apply_overrides(data, items, base_dir=Path.cwd())
    try:
        return validate(data, label)
    except UserError as exc:
        if overrides:
            raise UserError(f"{exc} [after overrides]") from None
        raise
