"""A run: scenario + strategy + information model + seed -> summary and per-task results.

`simulate` prepares the arrays in Python (public wrapper) and feeds chunks of arrivals to the
strategy's compiled kernel (private), growing the in-flight slot pool between chunks when
concurrency needs it, so memory follows in-flight requests, never the request count.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .. import SCHEMA_VERSION, __version__
from . import control, loadindex
from . import metrics as M
from . import state as S
from .info import code_of as info_code
from .specialise import compiled_kernel
from ..model.cluster import ClusterState, build_cluster
from ..errors import StrategyError, UserError
from ..model.deploy import AS_METRICS, AS_P99, D_UPDATE
from ..model.faults import F_NODE_SLOW, F_SERVICE_CRASH, F_TASK_CRASH, FAULT_KINDS, REPAIR_KINDS, recoveries
from .identity import _strategy_identity, run_identity
from ..model.inputs import run_inputs
from ..model.limits import INT32_MAX, check_result, time_windows
from ..model.scenario import Scenario, load_scenario, parse_override
from .schema import SUMMARY_SCHEMA, TIMING_COLUMNS  # noqa: F401  (the runs table's columns)
from ..plugins.strategy import Strategy, compile_failure, resolve
from ..model.workload import SessionDraws, Workload, demand_table



@dataclass
class Result:
    """What a run produced. `summary` has one row; `tasks` one row per task; `extra["run_hash"]`
    the run's identity (lbbench.identity)."""

    summary: pl.DataFrame
    tasks: pl.DataFrame
    hist_counts: np.ndarray
    trace: pl.DataFrame | None = None
    scenario: Scenario | None = None
    timeseries: pl.DataFrame | None = None
    faults: pl.DataFrame | None = None
    events: pl.DataFrame | None = None      # per deploy event: time, service, kind, before/after, done
    nodes: pl.DataFrame | None = None       # per node: cores, CPU utilisation (cluster.cores only)
    extra: dict = field(default_factory=dict)

    def histogram(self) -> pl.DataFrame:
        """The latency histogram's nonzero buckets: bucket_lo, bucket_hi (seconds), count."""
        return pl.DataFrame(histogram_columns(self.row()["run_id"], self.hist_counts))

    def row(self) -> dict:
        return self.summary.row(0, named=True)


_EDGES = M.bucket_edges()
_TS_EDGES = M.bucket_edges(M.TS_SUB)


def histogram_columns(run_id: str, hist_counts: np.ndarray) -> dict:
    """The histograms table's columns of a run: its nonzero buckets."""
    nz = np.flatnonzero(hist_counts)
    return {"run_id": [run_id] * len(nz), "bucket_lo": _EDGES[nz], "bucket_hi": _EDGES[nz + 1],
            "count": hist_counts[nz]}


@dataclass
class Parts:
    """A run's results before any polars frame is made of them: the summary row, the tasks' and
    the time series' columns (numpy arrays, lists, polars Series) and the rarer tables' frames.
    `simulate` makes a `Result` of them (`Parts.result`); a sweep's worker running short runs in
    a batch concatenates the columns of its runs and makes one frame per table and batch
    (lbbench.experiments.batch), which is what costs a short run most otherwise."""

    row: dict
    tasks: dict
    hist_counts: np.ndarray
    timeseries: dict | None
    faults: pl.DataFrame | None
    events: pl.DataFrame | None
    nodes: pl.DataFrame | None
    trace: pl.DataFrame | None
    scenario: Scenario
    extra: dict

    def result(self) -> Result:
        return Result(summary=summary_frame([self.row]), tasks=pl.DataFrame(self.tasks), hist_counts=self.hist_counts,
                      trace=self.trace, scenario=self.scenario, timeseries=timeseries_frame(self.timeseries),
                      faults=self.faults, nodes=self.nodes, events=self.events, extra=self.extra)


def summary_frame(rows: list[dict]) -> pl.DataFrame:
    """The runs table's rows (`Parts.row`) as a frame."""
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)


def timeseries_frame(columns: dict | None) -> pl.DataFrame | None:
    """The time series' columns (`Parts.timeseries`, or those of several runs concatenated) as a
    frame: a column of rows of values per window (node_util, node_cpu, replicas; a 2-d array)
    becomes a list column (no Python list per window), and a window without a completion has a
    null mean and p99."""
    if columns is None:
        return None
    cols = {}
    for k, v in columns.items():
        if isinstance(v, np.ndarray) and v.ndim == 2:
            v = pl.Series(v)
            v = v.cast(pl.List(v.dtype.inner))
        cols[k] = v
    return pl.DataFrame(cols).with_columns(pl.col("latency_mean").fill_nan(None), pl.col("latency_p99").fill_nan(None))


_KERNELS: dict = {}     # (spec, flags) -> compiled_kernel's answer: the spec's source read once


def _kernel(spec: Strategy, full: bool, direct: bool, closed: bool):
    key = (spec, full, direct, closed)
    k = _KERNELS.get(key)
    if k is None:
        k = _KERNELS[key] = compiled_kernel(spec, full=full, direct=direct, closed=closed)
    return k


def _percentile(counts: np.ndarray, edges: np.ndarray, q: float, maximum: float) -> float:
    total = counts.sum()
    if total == 0:
        return math.nan
    target = q * total
    cum = np.cumsum(counts)
    b = int(np.searchsorted(cum, target, side="left"))
    b = min(b, len(counts) - 1)
    mid = 0.5 * (edges[b] + edges[b + 1])
    return float(min(mid, maximum))


def _row_percentiles(counts: np.ndarray, edges: np.ndarray, q: float) -> np.ndarray:
    """`_percentile` of every row of `counts` at once (the time series' windows), the same
    values: the bucket is the first whose running count reaches q x the row's total."""
    cum = np.cumsum(counts, axis=1)
    total = cum[:, -1] if counts.shape[1] else np.zeros(len(counts), dtype=np.int64)
    b = np.minimum((cum < (q * total)[:, None]).sum(axis=1), counts.shape[1] - 1)
    mid = 0.5 * (edges[b] + edges[b + 1])
    return np.where(total == 0, math.nan, mid)


def percentiles(counts: np.ndarray, qs, maximum: float = math.inf) -> list[float]:
    """Percentiles from log-bucketed counts (bucket midpoints, < 0.8% relative error)."""
    return [_percentile(counts, _EDGES, q, maximum) for q in qs]


def _imbalance(x: np.ndarray) -> tuple[float, float, float]:
    mean = float(x.mean()) if len(x) else math.nan
    if not len(x) or mean == 0:
        return math.nan, math.nan, math.nan
    cov = float(x.std() / mean)
    jain = float(x.sum() ** 2 / (len(x) * np.sum(x * x)))
    return cov, float(x.max() / mean), jain


# Sessions mode's first pool of user slots (workload.SessionDraws.SLOTS) and rows per slot (the
# rows change no result: a slot's rows grow to a longer session's requests)
SESSION_SLOTS, SESSION_ROWS = SessionDraws.SLOTS, 16


def check_demands(sc: Scenario, spec: Strategy, from_trace: bool) -> None:
    """Refuse a run whose demands a strategy declaring `demand_dists` cannot use: a service's
    distribution not among them, or demands given by a trace (no distribution to read)."""
    if spec.demand_dists is None:
        return
    if from_trace:
        raise UserError(f"strategy {spec.name} reads each service's demand distribution, but workload.trace gives the "
                        "demands (its 'demand' column); drop that column or choose another strategy")
    for s, svc in enumerate(sc.services):
        if svc.demand.dist not in spec.demand_dists:
            raise UserError(f"strategy {spec.name} cannot use services.{s}.demand.dist = {svc.demand.dist!r}; it works with "
                            f"{', '.join(spec.demand_dists)}: set one of them or choose another strategy")


_CLUSTERS: dict = {}    # ids of a scenario's parts build_cluster reads -> (those parts, the cluster)
_CLUSTERS_MAX = 8       # (a sweep's worker runs the runs of one shape one after the other)


def _cluster(sc: Scenario) -> ClusterState:
    """build_cluster(sc), kept for the runs of a sweep that share the parts of the scenario it
    reads (cluster, services, deploy, autoscale: a frozen scenario's copy with another seed shares
    them, lbbench.experiments.sweep); each run gets arrays of its own, as the kernel changes the
    tables when tasks fail or move."""
    parts = (sc.cluster, sc.services, sc.deploy, sc.autoscale)
    key = tuple(map(id, parts))
    hit = _CLUSTERS.get(key)
    if hit is None:
        if len(_CLUSTERS) >= _CLUSTERS_MAX:
            _CLUSTERS.clear()
        hit = _CLUSTERS[key] = (parts, build_cluster(sc))      # (the parts held: their ids stay theirs)
    cl = hit[1]
    return dataclasses.replace(cl, **{f.name: getattr(cl, f.name).copy() for f in dataclasses.fields(cl)
                                      if isinstance(getattr(cl, f.name), np.ndarray)})


_STATES: dict = {}      # a run state's sizes and given arrays' shapes -> a state a finished run left
_STATE_BYTES = 16 << 20     # larger states are not kept, and at most _STATES_MAX of them
_STATES_MAX = 4


def _state_key(sizes: dict, given: dict) -> tuple:
    return tuple(sorted(sizes.items())), tuple(sorted((k, np.shape(v), np.asarray(v).dtype.str) for k, v in given.items()))


def _state(sizes: dict, **given) -> tuple[S.State, tuple]:
    """A new run state (`state.new_state`), or the one a finished run of the same sizes left,
    reset to exactly what new_state makes (`state.reset_state`): a sweep's short runs spend
    less on allocating it, and the kernel's entry finds the state's numba type by the
    object (specialise.Entry). Taken out of `_STATES` while a run uses it."""
    key = _state_key(sizes, given)
    st = _STATES.pop(key, None)
    return (S.new_state(sizes, **given) if st is None else S.reset_state(st, sizes, **given)), key


def _release_state(run: "_Run") -> None:
    """Keep a finished run's state for the next run of its sizes, unless it was grown (a new
    object) or is large; its results no longer refer to it (`_result` copies what it takes)."""
    st = run.st
    if st is run.st0 and sum(a.nbytes for a in st) <= _STATE_BYTES:
        if len(_STATES) >= _STATES_MAX:
            _STATES.clear()
        _STATES[run.state_key] = st


class _Run:
    """Arrays of one run, built from the scenario and strategy."""

    def __init__(self, sc: Scenario, spec: Strategy, params: dict, seed: int, trace: bool, force_heap: bool = False):
        self.sc, self.spec, self.seed = sc, spec, seed
        cl: ClusterState = _cluster(sc)
        self.cl = cl
        T, S_ = cl.n_tasks, cl.n_services
        conn = sc.balancer.unit == "connection"
        self.workload = Workload(sc, cl, seed, need_client=spec.reads_client or conn)
        self.users = self.workload.users          # a closed loop's users (workload.UserDraws), else None
        self.sessions = self.workload.sessions    # sessions mode's draws (workload.SessionDraws), else None
        self.looped = self.users is not None or self.sessions is not None     # the CLOSED kernel
        check_demands(sc, spec, self.workload.demands_from_trace)
        # sessions: a pool of user slots (docs/model.md, "Sessions"), grown as sessions need
        n_users = self.users.n if self.users is not None else SESSION_SLOTS if self.sessions is not None else 0
        # the set-up shared with tests/naive.py (lbbench.model.inputs)
        inp = run_inputs(sc, cl, self.workload, seed)
        self.n_req = n_req = inp.n_req
        self.n_bal = n_bal = inp.n_bal
        self.warm_index = inp.warm_index   # -1: set by time once the first chunk past the warm-up is seen
        bal_rng, bal_start = inp.bal_rng, inp.bal_start
        info = sc.balancer.info_model
        self.param_values = np.array([params[p.name] for p in spec.params], dtype=np.float64)
        self.trace = trace
        self.horizon = horizon = inp.horizon
        self.schedule = inp.schedule
        fkey = (inp.entry_key, inp.retry_key)
        dep = self.deploy = inp.deploy
        ss = sc.balancer.slow_start
        asc = self.inp_autoscale = inp.autoscale
        n_deploy = control.deploy_timers(len(dep), S_, len(asc))
        h, cli = sc.health, sc.clients
        self.direct = self.direct_ok(force_heap)
        # the direct path with crashes: each task's next crash (kill_at), moved on by the schedule
        kill_first, kill_next = self.kill_times() if self.direct and sc.orchestrated else (np.zeros(0), np.zeros(0))
        self.cfg_kw = dict(
            task_node=cl.task_node, task_service=cl.task_service, task_speed=cl.task_speed,
            task_workers=cl.task_workers, task_wstart=cl.task_wstart, task_qlimit=cl.task_qlimit,
            table=cl.table, table_start=cl.table_start, table_len=cl.table_len, table_pos=cl.table_pos,
            position=cl.table_pos if spec.reads_position else np.zeros(0, dtype=np.int64),
            params=self.param_values, bal_start=bal_start,
            n_services=np.int64(S_), central=np.int64(sc.balancer.mode == "central"), info=np.int64(info_code(info)),
            stale_period=float(info.period), hop=float(sc.network.hop),
            has_jitter=np.int64(sc.network.jitter > 0), warm_index=np.int64(max(self.warm_index, 0)),
            trace=np.int64(trace),
            conn=np.int64(conn),
            conn_logq=inp.conn_logq,
            faults=np.int64(sc.orchestrated), f_time=self.schedule.time, f_kind=self.schedule.kind,
            f_target=self.schedule.target, f_count=self.schedule.count, f_value=self.schedule.value,
            f_next=kill_next,
            node_speed=cl.node_speed.copy(),      # (node_slow changes it during the run)
            task_detect=float(h.task_detect), node_detect=float(h.node_detect),
            restart_delay=float(h.restart_delay), startup=float(h.startup), entry_key=np.int64(fkey[0]),
            retries=np.int64(cli.retries), backoff=float(cli.backoff), timeout=float(cli.timeout),
            retry_key=np.int64(fkey[1]),
            users=np.int64(n_users), user_timer0=np.int64(control.user_timer(cl.n_nodes, T, n_deploy)),
            sessions=np.int64(self.sessions is not None),
            d_ring=np.int64(self.direct and sc.network.hop > 0 and not self.single_entry()),
            n_req=np.int64(n_req if n_req is not None else np.iinfo(np.int64).max),
            t_end=float(sc.run.duration if sc.run.duration is not None else math.inf),
            warm_time=float(inp.warm_time if inp.warm_time is not None else math.inf),
            ps=np.int64(cl.node_cores is not None),
            bg_time=inp.background.time, bg_node=inp.background.node, bg_level=inp.background.level,
            bg_timer=np.int64(control.background_timer(cl.n_nodes, T)),
            node_cores=cl.node_cores if cl.node_cores is not None else np.zeros(0),
            d_time=dep.time, d_kind=dep.kind, d_svc=dep.service, d_replicas=dep.replicas, d_par=dep.parallelism,
            d_delay=dep.delay, d_order=dep.order, d_factor=dep.factor, grace=float(h.grace),
            deploy_timer0=np.int64(control.user_timer(cl.n_nodes, T)),
            hc_interval=float(h.interval), hc_timeout=float(h.timeout), hc_retries=np.int64(h.retries),
            hc_start=float(h.start_period),
            ss_window=float(ss.window if ss else 0.0), ss_inv_aggr=float(1.0 / ss.aggression if ss else 1.0),
            ss_min=float(ss.min_weight if ss else 1.0),
            as_svc=asc.service, as_metric=asc.metric, as_target=asc.target, as_interval=asc.interval,
            as_buckets=asc.buckets, as_tol=asc.tolerance, as_recs=asc.recs, as_lo=asc.lo, as_hi=asc.hi,
            as_workers=np.array([sc.services[s].workers for s in asc.service], dtype=np.float64),
            as_timer0=np.int64(control.user_timer(cl.n_nodes, T) + 1 + S_),
            dem_dist=demand_table(sc, self.workload.demands_from_trace),
        )
        # the load index (loadindex.py), for a strategy that declares it
        if spec.load_index:
            li_rows = loadindex.rows_for(info.kind, n_bal)
            lay = loadindex.layout(cl.task_service, S_, room=sc.orchestrated, rows=li_rows)
        else:
            li_rows, lay = 1, loadindex.no_index(S_)
        li_leaf, li_map, li_next = loadindex.initial_map(cl.table, cl.table_start, cl.table_len, T, lay)
        self.cfg_kw.update(li_off=lay.off, li_p=lay.p, li_toff=lay.toff, li_nb=lay.nb, li_leaf=li_leaf, li_map=li_map,
                           li_next=li_next)
        self.first_node = np.where(cl.initial, cl.task_node, -1).astype(np.int32)    # a spare slot: -1
        cap = 1024
        N = cl.n_nodes
        n_timers = control.timers(N, T, n_users + (self.sessions is not None), n_deploy)    # (+ the sessions' arrivals)
        at = {control.T_SCHEDULE: self.schedule.time[0]} if len(self.schedule) else {}
        if len(inp.background):
            at[control.background_timer(N, T)] = inp.background.time[0]
        if len(dep):
            at[control.user_timer(N, T)] = dep.time[0]
        for a in range(len(asc)):      # the autoscalers' first evaluations
            at[control.user_timer(N, T) + 1 + S_ + a] = float(asc.interval[a])
        if info.kind == "stale":
            at[control.T_REFRESH] = info.period
        # a closed loop's user draws: rows per user (their number changes no result: each user's
        # streams are drawn in order, whatever the rows; docs/model.md, "Random streams"): about
        # 16 chunks' worth in all (20 MB at the default chunk), at least 128 per user (64 past
        # 32,768 users at the default chunk, so that a million users take 1.3 GB, not 2.6), so
        # that refilling them (about 10 microseconds of numpy calls per user, UserDraws.refill)
        # stays cheap per request
        least = 128 if 128 * n_users <= 64 * sc.run.chunk else 64
        rows = min(max(16 * sc.run.chunk // max(n_users, 1), least), 4096) if self.users is not None else 0
        if self.sessions is not None:
            rows = SESSION_ROWS     # (widened for a longer session: more_sessions)
        self.timers = (n_timers, at)
        ctl_t, ctl_i = control.new_tree(n_timers, at)
        piggy = info.kind == "piggyback"
        # processor sharing (cluster.cores; cpu.py): per node, a heap with room for every worker
        ps = cl.node_cores is not None
        ps_t, ps_i = control.new_tree(N, {}) if ps else (np.zeros(0), np.zeros(0, dtype=np.int32))
        clients = n_users if self.looped else sc.workload.clients     # (connections: a row per user slot)
        self.st, self.state_key = _state(
            dict(tasks=T, workers=int(cl.task_wstart[-1]), nodes=N, balancers=n_bal, balancer_services=n_bal * S_,
                 state_size=spec.state_size_for(params), connections=clients * S_ if conn else 0,
                 users=n_users, user_draws=rows, user_jitter=2 * rows if sc.network.jitter > 0 else 0,
                 session_slots=n_users if self.sessions is not None else 0,
                 piggy_balancers=n_bal if piggy else 0, piggy_tasks=T if piggy else 0,
                 local_balancers=n_bal if info.kind == "local" else 0,
                 local_tasks=T if info.kind == "local" and spec.reads_load else 0,
                 timer_tree=len(ctl_t), slots=cap, strategy_tasks=T if spec.task_state else 0,
                 task_state=spec.task_state, index_rows=li_rows, index_len=lay.row_len, services=S_,
                 ps_tasks=T if ps else 0, ps_nodes=N if ps else 0,
                 ps_heap=int(cl.task_wstart[-1]) + S.HEAP_PAD if ps else 0, ps_tree=len(ps_t),
                 ps_snap_nodes=N if ps and info.kind == "stale" else 0,
                 ps_piggy_nodes=N if ps and info.kind in ("local", "piggyback") else 0,
                 weight_tasks=T if ss else 0, autoscalers=len(asc),
                 as_buckets=int(asc.buckets.max()) if len(asc) else 0, as_recs=int(asc.recs.max()) if len(asc) else 0,
                 as_hbuckets=M.TS_BUCKETS if (asc.metric == AS_P99).any() else 0,
                 work_tasks=T if info.kind == "work" else 0, deploy_events=len(dep.time),
                 log_cap=self.log_room(T, horizon), retry=1 if sc.clients.retries > 0 else 0,
                 kill_tasks=len(kill_first)),
            bal_rng=bal_rng, conn_rng=inp.conn_rng,
            node_drained=cl.node_drained, ctl_t=ctl_t, ctl_i=ctl_i, ps_t=ps_t, ps_i=ps_i,
            li_tree=loadindex.initial(cl.table_len, lay, li_rows),
            node_tasks=np.bincount(cl.task_node[cl.initial], minlength=N),
            **dict(zip(("node_first", "task_nnext", "task_nprev"), control.node_lists(cl.task_node, N))),
            node_svc_tasks=np.bincount((cl.task_node.astype(np.int64) * S_ + cl.task_service)[cl.initial],
                                       minlength=N * S_).reshape(N, S_),
            task_state=np.where(cl.initial, S.TASK_ALIVE, S.TASK_DEAD),     # the deployments' spare slots: free
            task_seq=np.arange(T, dtype=np.int64),
            kill_at=kill_first,
        )
        self.st0 = self.st
        n_trace = n_req if (trace and n_req is not None) else 0
        self.ts_window, self.ts_n = time_windows(sc, horizon)
        self.cfg_kw.update(ts_window=self.ts_window, ts_inv=1.0 / self.ts_window, ts_n=np.int64(self.ts_n))
        if trace and n_req is None:
            raise UserError("trace needs run.requests (a duration-bounded run has no fixed length)")
        self.met = S.Metrics(
            hist=np.zeros(M.N_BUCKETS, dtype=np.int64),
            task_served=np.zeros(T, dtype=np.int64), task_busy=np.zeros(T, dtype=np.float64),
            tr_task=np.full(n_trace, -1, dtype=np.int32), tr_start=np.full(n_trace, np.nan),
            tr_done=np.full(n_trace, np.nan), tr_latency=np.full(n_trace, np.nan),
            tr_status=np.full(n_trace, -1, dtype=np.int8), tr_tries=np.zeros(n_trace, dtype=np.int16),
            tr_user=np.full(n_trace if self.looped else 0, -1, dtype=np.int32),
            ts_count=np.zeros((self.ts_n, S.TS_N), dtype=np.int64), ts_lat_sum=np.zeros(self.ts_n),
            ts_hist=np.zeros((self.ts_n, M.TS_BUCKETS), dtype=np.int64),
            ts_node_busy=np.zeros((self.ts_n, cl.n_nodes)),
            ts_replicas=np.full((self.ts_n if len(dep.time) or len(asc) else 0, S_), -1, dtype=np.int64),
        )

        if self.users is not None:
            self.start_users()
        if self.sessions is not None:
            self.start_sessions()

    def start_users(self) -> None:
        """A closed loop at time 0: every user's first draws, its entry node, its first think
        time on its timer, and a slot for each user's one request in flight."""
        st, users = self.st, self.users
        st.usr_entry[:] = users.entry
        st.usr_pos[:] = st.usr_think.shape[1]       # nothing drawn yet
        self.draw_users()
        n_timers, at = self.timers
        u0 = int(self.cfg_kw["user_timer0"])
        st.ctl_t[:], st.ctl_i[:] = control.new_tree(n_timers, {**at, **{u0 + u: float(st.usr_think[u, 0])
                                                                        for u in range(users.n)}})
        # (the direct path keeps its transit ring in the slots' arrays, and moves it back to
        # their start when its end is reached: room for two entries per user, one in flight)
        self.ensure_capacity(users.n * (2 if self.direct else 1))

    def draw_users(self) -> None:
        """Fresh draws for every user past half its rows (the kernel stops when one has used
        them all but a row): its unused rows move to the front, its next draws fill the rest."""
        st = self.st
        users = np.flatnonzero(st.usr_pos >= st.usr_think.shape[1] // 2)
        self.users.refill(users, st.usr_pos[users], st.usr_think, st.usr_svc, st.usr_dem, st.usr_jit)
        st.usr_pos[users] = 0

    def start_sessions(self) -> None:
        """Sessions mode at time 0: every user slot free, the first sessions drawn, the first
        one's arrival on the sessions' timer."""
        st = self.st
        n = len(st.usr_pos)
        st.usr_free[:] = np.arange(n - 1, -1, -1, dtype=np.int32)
        st.ctr[S.USR_FREE_N] = n
        self.load_sessions()
        n_timers, at = self.timers
        t_ctl, i_ctl = control.new_tree(n_timers, {**at, int(self.cfg_kw["user_timer0"]) + n: float(self.st.ses_t[0])})
        self.st.ctl_t[:], self.st.ctl_i[:] = t_ctl, i_ctl
        self.ensure_capacity(n)

    def load_sessions(self) -> None:
        """The session buffer: the sessions not yet arrived (from ctr[SES_I] on), then the
        next block (workload.SessionDraws)."""
        st = self.st
        i = int(st.ctr[S.SES_I])
        b = self.sessions.block()
        o = int(st.ses_off[i]) if i < len(st.ses_t) else 0
        off = np.concatenate([st.ses_off[i:] - o, b.off[:-1] + (len(st.ses_think) - o)])
        self.st = st._replace(
            ses_t=np.concatenate([st.ses_t[i:], b.t]), ses_n=np.concatenate([st.ses_n[i:], b.count]),
            ses_entry=np.concatenate([st.ses_entry[i:], b.entry]), ses_off=off,
            ses_think=np.concatenate([st.ses_think[o:], b.think]), ses_dem=np.concatenate([st.ses_dem[o:], b.demand]),
            ses_svc=np.concatenate([st.ses_svc[o:], b.service]),
            ses_jit=np.concatenate([st.ses_jit[2 * o:], b.jitter]))
        self.st.ctr[S.SES_BASE] += i
        self.st.ctr[S.SES_I] = 0

    def more_sessions(self) -> None:
        """What the next session needs before it can arrive (the kernel returned K_SESSIONS):
        the session after it drawn, a free user slot (the pool doubles: its timers, rows and
        the sessions' timer move up), rows long enough for its requests."""
        st = self.st
        i = int(st.ctr[S.SES_I])
        if i + 1 >= len(st.ses_t):
            self.load_sessions()
            st, i = self.st, 0
        n = len(st.usr_pos)
        rows = st.usr_think.shape[1]
        need = int(st.ses_n[i]) + 1
        grow = st.ctr[S.USR_FREE_N] == 0
        if not grow and need <= rows:
            return
        m = 2 * n if grow else n
        r = max(2 * rows, need) if need > rows else rows

        def grown(a, cols):
            b = np.zeros((m, cols) if a.ndim == 2 else m, dtype=a.dtype)
            b[tuple(slice(0, x) for x in a.shape)] = a
            return b
        jcols = 2 * r if st.usr_jit.shape[1] else 0
        new = dict(usr_think=grown(st.usr_think, r), usr_dem=grown(st.usr_dem, r), usr_svc=grown(st.usr_svc, r),
                   usr_jit=grown(st.usr_jit, jcols), usr_pos=grown(st.usr_pos, 0), usr_entry=grown(st.usr_entry, 0),
                   usr_ses=grown(st.usr_ses, 0), usr_free=grown(st.usr_free, 0))
        if grow and len(st.conn_task):
            # connections (balancer.unit = connection): a row per slot and service, new ones closed
            k = len(st.conn_task)
            new["conn_task"] = np.concatenate([st.conn_task, np.full(k, -1, dtype=st.conn_task.dtype)])
            new["conn_left"] = np.concatenate([st.conn_left, np.zeros(k, dtype=st.conn_left.dtype)])
            new["conn_entry"] = np.concatenate([st.conn_entry, np.zeros(k, dtype=st.conn_entry.dtype)])
        if grow:
            # the new slots are free; the timers: users' ids stay, the sessions' moves to u0 + m
            f = int(st.ctr[S.USR_FREE_N])
            new["usr_free"][f:f + m - n] = np.arange(m - 1, n - 1, -1, dtype=np.int32)
            st.ctr[S.USR_FREE_N] = f + m - n
            u0 = int(self.cfg_kw["user_timer0"])
            p = len(st.ctl_t) // 2
            leaves = st.ctl_t[p:p + u0 + n + 1]
            at = {j: float(v) for j, v in enumerate(leaves) if math.isfinite(v) and j != u0 + n}
            at[u0 + m] = float(leaves[u0 + n])
            new["ctl_t"], new["ctl_i"] = control.new_tree(u0 + m + 1, at)
            self.cfg_kw["users"] = np.int64(m)
            self.ensure_capacity(m - n)
        self.st = self.st._replace(**new)

    def direct_ok(self, force_heap: bool) -> bool:
        """Whether the kernel may record completions at dispatch (see engine.DIRECT)."""
        sc, spec = self.sc, self.spec
        # every hop is the same (no jitter): each task sees its requests in dispatch order, or,
        # with a hop and several entry nodes, in the order of the transit ring (Config.d_ring)
        in_order = sc.network.jitter == 0
        # a closed loop's users (not sessions: a session's user slot is freed at its last
        # response, which must not come before that response's time)
        return (not force_heap and self.sessions is None and not spec.reads_load and spec.on_complete is None and in_order
                and all(s.queue_limit == 0 for s in sc.services) and sc.run.drain
                and (not sc.orchestrated or self.crashes_only()) and not sc.clients.active and sc.cluster.cores is None)

    def crashes_only(self) -> bool:
        """An open loop whose tasks come and go only by task crashes (scripted on a task, or
        random; node slowdowns too, which change only later requests' service times): a request
        placed on a task is then ended only by that task's next crash in the schedule, known
        at its placement (`kill_at`), so the direct path records its outcome then
        (docs/architecture.md, "The request path")."""
        sc, kind = self.sc, self.schedule.kind
        return (not self.looped and not sc.deploy.events and not sc.autoscale
                and bool(np.isin(kind, (F_TASK_CRASH, F_NODE_SLOW)).all()))

    def kill_times(self) -> tuple[np.ndarray, np.ndarray]:
        """For the direct path with crashes (`crashes_only`): each task slot's first crash time
        (inf: none), and for each schedule event that is a task's crash, the time of that
        task's next crash (inf: none; other events: inf)."""
        sch = self.schedule
        T = len(self.cl.task_node)
        first = np.full(T, np.inf)
        nxt = np.full(len(sch.time), np.inf)
        crash = np.flatnonzero(sch.kind == F_TASK_CRASH)      # in time order (the schedule is sorted)
        if len(crash):
            order = crash[np.argsort(sch.target[crash], kind="stable")]     # by task, then time
            tg = sch.target[order]
            same = tg[1:] == tg[:-1]
            nxt[order[:-1][same]] = sch.time[order[1:][same]]
            head = np.ones(len(order), dtype=bool)
            head[1:] = ~same
            first[tg[head]] = sch.time[order[head]]
        return first, nxt

    def single_entry(self) -> bool:
        """One entry node for every request (a trace's own entry column overrides workload.entry)."""
        wl = self.workload
        return wl.entry_single >= 0 and (wl.trace is None or "entry" not in wl.trace.cols)

    def config(self) -> S.Config:
        # A duration-bounded run whose warm-up boundary is not reached yet measures nothing
        # (warm_index < 0 means "not known yet", not "measure everything").
        w = self.warm_index if self.warm_index >= 0 else np.iinfo(np.int64).max
        self.cfg_kw["warm_index"] = np.int64(w)
        return S.Config(**self.cfg_kw)

    def log_room(self, n_tasks: int, horizon: float) -> int:
        """The orchestrator's event log's first room (rows; 0: no log, a run without deployments
        or autoscalers): every task stopped and started at each deploy event and node fault, a
        replacement per task a crash takes (task_crash, service_crash: no stop is logged for a
        crash; node_slow: nothing), and 4 rows per autoscaler evaluation up to the horizon;
        `ensure_log` doubles it between calls of the kernel when it is half full. (Random task
        faults on a large cluster are many: a room of 2 x tasks rows each would be gigabytes.)"""
        asc, dep, sched = self.inp_autoscale, self.deploy, self.schedule
        if not len(dep) and not len(asc):
            return 0
        evals = sum(4 * (math.ceil(horizon / float(i)) + 1) for i in asc.interval) if math.isfinite(horizon) else 0
        crash = (sched.kind == F_TASK_CRASH) | (sched.kind == F_SERVICE_CRASH)
        node = ~crash & (sched.kind != F_NODE_SLOW)
        faults = int(sched.count[crash].sum()) + int(node.sum()) * (2 * n_tasks + 1)
        return 64 + len(dep) * (2 * n_tasks + 1) + faults + min(evals, 1 << 20)

    def ensure_log(self) -> None:
        """Double the event log's room when it is more than half full (before a call of the
        kernel: the rows a call adds are bounded by the orchestrator's actions within it); a
        call that took more than the room (rows lost) fails the run."""
        st = self.st
        cap, n = len(st.log_t), int(st.ctr[S.LOG_N])
        if n > cap:
            raise UserError(f"the orchestrator took {n:,} actions, more than the {cap:,} its event log had room "
                            "for within one call of the engine; lower run.chunk")
        if cap and 2 * n > cap:
            self.st = S.grow_log(st, 2 * cap)

    def ensure_capacity(self, extra: int) -> None:
        """Grow the in-flight slot pool so that `extra` more requests fit."""
        st = self.st
        cap = len(st.slot_task)
        in_use = cap - int(st.ctr[S.FREE_N])
        if in_use + extra <= cap:
            return
        if in_use + extra > INT32_MAX:
            raise UserError(f"{in_use + extra:,} requests in flight exceed the engine's {INT32_MAX:,} slots (int32); "
                            "the run is overloaded: lower the load or set a queue_limit")
        new = min(max(2 * cap, in_use + extra), INT32_MAX)
        self.st = S.grow_slots(st, new)


def _progress(total: int | None, duration: float | None):
    """A progress bar that appears only on a terminal and only for runs longer than 2 s."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    if not sys.stderr.isatty():
        return None
    if total is not None:
        return tqdm(total=total, unit="req", unit_scale=True, delay=2.0, leave=False, desc="simulating")
    return tqdm(total=duration, unit="s", delay=2.0, leave=False, desc="simulating", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} sim-s [{elapsed}<{remaining}]")


def _cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not on Linux
        return os.cpu_count() or 1


def _take(pending, m: int):
    """The chunk drawn ahead, which must be the one this pass would draw (the kernel trusts the
    number of arrivals: the trace arrays are sized by it)."""
    size, future = pending
    if size != m:
        raise RuntimeError(f"arrivals drawn ahead: {size}, needed {m}")
    return future.result()


def simulate(scenario, strategy: str | Strategy = "round_robin", params: dict | None = None,
             seed: int | None = None, *, overrides=None, trace: bool = False, chunk: int | None = None,
             progress: bool = True, force_heap: bool = False, prefetch: bool | None = None) -> Result:
    """Run one simulation.

    scenario   a preset name, a TOML path, a dict or a `Scenario`
    strategy   a registered name, "FILE.py:NAME", or a `Strategy`
    params     the strategy's parameters (validated against its declaration)
    seed       overrides run.seed
    trace      also return the per-request record (memory O(requests): small runs only)
    chunk      overrides run.chunk (results do not depend on it)
    force_heap carry every request in the completion heap even when nothing observes it
               (the general path; used to check the direct path against it)
    prefetch   draw the next chunk of arrivals on a second thread while the kernel runs this
               one (results do not depend on it: the same chunks, in the same order). Default:
               when the process may use more than one CPU. A sweep's workers run without it
               (their parallelism is the workers).
    """
    return run_parts(scenario, strategy, params, seed, overrides=overrides, trace=trace, chunk=chunk,
                     progress=progress, force_heap=force_heap, prefetch=prefetch).result()


def run_parts(scenario, strategy: str | Strategy = "round_robin", params: dict | None = None,
              seed: int | None = None, *, overrides=None, trace: bool = False, chunk: int | None = None,
              progress: bool = True, force_heap: bool = False, prefetch: bool | None = None) -> Parts:
    """`simulate`, its results left as `Parts` (no polars frame made yet)."""
    sc = load_scenario(scenario, _overrides(overrides, {"run.seed": seed, "run.chunk": chunk}))
    spec = resolve(strategy)
    pvals = spec.resolve_params(params)
    seed, chunk = sc.run.seed, sc.run.chunk
    wall0 = time.perf_counter()
    try:
        run = _Run(sc, spec, pvals, seed, trace, force_heap)
    except MemoryError:
        raise UserError(f"scenario {sc.name!r} needs more memory than is available (nodes x tasks, clients, "
                        "windows, or requests when tracing); make the run smaller") from None
    cfg = run.config()
    empty = S.Arrivals(np.empty(0), np.empty(0, np.int32), np.empty(0), np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0))
    t_compile = time.perf_counter()
    kernel = _kernel(spec, sc.orchestrated or sc.clients.active, run.direct, run.looped)
    # A call that does nothing (no arrivals, no event due by -inf) compiles the kernel or loads
    # it from the cache now, so that wall_s and req_per_s measure the simulation only.
    try:
        kernel(cfg, run.st, run.met, empty, np.int64(0), -math.inf)
    except Exception as exc:        # a plugin numba cannot compile
        _forget(kernel)
        raise _raised(spec, exc) from exc
    wall0 += time.perf_counter() - t_compile
    return _interruptible(lambda stop: _run_chunks(run, spec, pvals, seed, trace, chunk, progress, prefetch, cfg,
                                                   kernel, empty, wall0, stop))


def _forget(kernel) -> None:
    """No reference to a run's state outlives the run in the kernel's entry (specialise.Entry.forget)."""
    forget = getattr(kernel, "forget", None)
    if forget is not None:
        forget()


def _run_chunks(run: _Run, spec: Strategy, pvals: dict, seed: int, trace: bool, chunk: int, progress: bool,
                prefetch: bool | None, cfg, kernel, empty, wall0: float, stop) -> Parts | None:
    """The chunks of a run through the kernel (until `stop` is set, if given), then its result."""
    sc = run.sc
    n_req = run.n_req
    duration = sc.run.duration
    bar = _progress(n_req, duration) if progress else None
    done = 0
    draw = run.workload.chunk
    if prefetch is None:
        prefetch = _cpus() > 1
    pool = None             # the arrivals' thread, started with the second chunk
    pending = None          # the next chunk, being drawn there
    try:
        while not run.looped:
            if stop is not None and stop.is_set():
                return None
            if n_req is not None:
                m = min(chunk, n_req - done)
                if m <= 0:
                    break
                arr = _take(pending, m) if pending is not None else draw(m)
            else:
                arr = _take(pending, chunk) if pending is not None else draw(chunk)
                last = len(arr) == 0 or arr.t[-1] >= duration
                if last:
                    arr = _slice(arr, int(np.searchsorted(arr.t, duration, side="left")))
                if len(arr) == 0:
                    break
                if run.warm_index < 0 and arr.t[-1] >= sc.run.warmup * duration:
                    run.warm_index = arr.first + int(np.searchsorted(arr.t, sc.run.warmup * duration, side="left"))
                    cfg = run.config()
            # The chunk after this one, exactly as the next pass would draw it, drawn while the
            # kernel runs this one (the kernel releases the GIL). The thread touches only the
            # workload, and two draws never overlap: the loop draws itself only when nothing
            # was drawn ahead, and takes a chunk drawn ahead before it asks for the next one.
            pending = None
            if prefetch:
                nxt = chunk if n_req is None else min(chunk, n_req - done - len(arr))
                if nxt > 0 and (n_req is not None or not last):
                    if pool is None:
                        pool = ThreadPoolExecutor(1, thread_name_prefix="lbbench-arrivals")
                    pending = (nxt, pool.submit(draw, nxt))
            run.ensure_capacity(len(arr))
            run.ensure_log()
            until = float(arr.t[-1]) if len(arr) else float(run.st.fctr[S.T_LAST])
            a = S.Arrivals(arr.t, arr.service, arr.demand, arr.entry, arr.client, arr.jitter)
            try:
                status = kernel(cfg, run.st, run.met, a, np.int64(arr.first), until)
            except Exception as exc:
                raise _raised(spec, exc) from exc
            if status != 0:
                _not_a_candidate(run, spec)
            done += len(arr)
            if bar is not None:
                bar.update(len(arr) if n_req is not None else min(until, duration) - bar.n)
            if n_req is None and last:
                break
        if run.looped:
            if not _run_users(run, spec, cfg, kernel, empty, stop, bar):
                return None
        else:
            end = math.inf if sc.run.drain else (duration if duration is not None else float(run.st.fctr[S.T_LAST]))
            run.ensure_log()
            kernel(cfg, run.st, run.met, empty, np.int64(done), end)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)     # no thread outlives the run
        if bar is not None:
            bar.close()
        _forget(kernel)
    wall = time.perf_counter() - wall0
    parts = _result(run, spec, pvals, seed, wall, trace)
    _release_state(run)
    return parts


def _run_users(run: _Run, spec: Strategy, cfg, kernel, empty, stop, bar) -> bool:
    """A closed loop through the kernel: it runs to the end (the drain, or run.duration without
    it), stopping for a user's next draws and at the warm-up's end of a duration-bounded run.
    False: stopped (`stop` set)."""
    sc = run.sc
    until = math.inf if sc.run.drain else sc.run.duration
    while True:
        if stop is not None and stop.is_set():
            return False
        sent = int(run.st.ctr[S.REQUESTS])
        run.ensure_log()
        try:
            status = kernel(cfg, run.st, run.met, empty, np.int64(0), until)
        except Exception as exc:
            raise _raised(spec, exc) from exc
        if bar is not None:
            bar.update(int(run.st.ctr[S.REQUESTS]) - sent if run.n_req is not None
                       else min(float(run.st.fctr[S.T_LAST]), sc.run.duration) - bar.n)
        if status == S.K_DONE:
            return True
        if status == S.K_USER_DRAWS:
            run.draw_users()
        elif status == S.K_SESSIONS:
            run.more_sessions()
            cfg = run.config()
        elif status == S.K_WARM:
            run.warm_index = int(run.st.ctr[S.NEED])
            cfg = run.config()
        else:
            _not_a_candidate(run, spec)


def _not_a_candidate(run: _Run, spec: Strategy):
    value, request = int(run.st.ctr[S.ERR_VALUE]), int(run.st.ctr[S.ERR_REQ])
    raise StrategyError(
        f"strategy {spec.name!r} returned task {value} for request {request}, which is not one of its "
        "candidates", strategy=spec.name, kind="not_a_candidate", request=request, value=value)


def _interruptible(loop):
    """loop(stop) on a helper thread while this thread waits, where this is the main thread and
    Python handles SIGINT, so that Ctrl-C stops a run: Python runs a signal's handler in the
    main thread between bytecodes, and the compiled kernel returns to Python only when its
    chunk is done, which a plugin's endless loop never is. Interrupted, the loop is told to stop
    at its next chunk (a plugin's endless loop goes on, on its daemon thread: the command line
    leaves with os._exit). Elsewhere (a sweep's worker ignores SIGINT and is stopped by the
    sweep), loop(None) here."""
    if threading.current_thread() is not threading.main_thread() or not callable(signal.getsignal(signal.SIGINT)):
        return loop(None)
    stop, done, box = threading.Event(), threading.Event(), {}

    def target():
        try:
            box["result"] = loop(stop)
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()
    thread = threading.Thread(target=target, name="lbbench-run", daemon=True)
    thread.start()
    try:
        # woken ten times a second: a signal that another of the process's threads took
        # (polars' and numba's included) has its handler run when this thread runs Python
        while not done.wait(0.1):
            pass
    except BaseException:
        stop.set()
        raise
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def _raised(spec: Strategy, exc: Exception) -> StrategyError:
    """A plugin's failure in one line: code numba cannot compile (the kernel compiles at its
    first call for a type of arguments), or an exception raised in the loop."""
    why = compile_failure(exc)
    if why is not None:
        return StrategyError(f"strategy {spec.name!r} cannot be compiled: {why}; "
                             f"run lbbench check {spec.ref or spec.name} for details",
                             strategy=spec.name, kind="compile", value=why)
    text = str(exc).strip()
    # (view.position is empty for a spec declaring reads_position=False: docs/strategies.md)
    hint = ("; view.position is empty for a strategy declaring reads_position=False: if it reads it, "
            "declare reads_position=True" if isinstance(exc, IndexError) and not spec.reads_position else "")
    return StrategyError(f"strategy {spec.name!r} raised during the run: {exc.__class__.__name__}"
                         + (f": {text.splitlines()[0]}" if text else "") + hint, strategy=spec.name, kind="raised",
                         value=exc)


def _overrides(overrides, run_keys: dict) -> dict:
    """`simulate`'s overrides, checked (a dict of dotted keys, or a list of "key=value"
    strings), with its `seed` and `chunk` arguments as the overrides of run.seed and run.chunk
    they are: the scenario's validation checks them like those keys."""
    if overrides is None:
        items = []
    elif isinstance(overrides, dict):
        bad = [k for k in overrides if not isinstance(k, str)]
        if bad:
            raise UserError(f"overrides: key {bad[0]!r} is not a dotted key; write e.g. {{'workload.rho': 0.8}}")
        items = list(overrides.items())
    elif isinstance(overrides, (list, tuple)):
        bad = [o for o in overrides if not isinstance(o, str)]
        if bad:
            raise UserError(f"overrides: {bad[0]!r} is not a 'key=value' string; write e.g. ['workload.rho=0.8']")
        items = [parse_override(o) for o in overrides]
    else:
        raise UserError(f"overrides must be a dict {{'workload.rho': 0.8}} or a list of 'key=value' strings, "
                        f"not {type(overrides).__name__}")
    return {k: _plain(v) for k, v in items + [(k, v) for k, v in run_keys.items() if v is not None]}


def _plain(value):
    """A numpy number as the Python number it is (a notebook's `np.arange` seeds, say), so that
    the strict scenario types take it; a bool, a string or anything else is left to them."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _slice(arr, n):
    from ..model.workload import Chunk
    return Chunk(arr.first, arr.t[:n], arr.service[:n], arr.demand[:n], arr.entry[:n],
                 arr.client[:n] if len(arr.client) else arr.client,
                 arr.jitter[:2 * n] if len(arr.jitter) else arr.jitter)


def _result(run: _Run, spec: Strategy, pvals: dict, seed: int, wall: float, trace: bool) -> Parts:
    sc, cl, st, met = run.sc, run.cl, run.st, run.met
    ctr, f = st.ctr, st.fctr
    arrived, completed = int(ctr[S.ARRIVED]), int(ctr[S.COMPLETED])
    rejected, failed = int(ctr[S.REJECTED]), int(ctr[S.FAILED])
    in_flight = arrived - completed - rejected - failed
    retried, timed_out = int(ctr[S.RETRIED]), int(ctr[S.TIMED_OUT])
    finished = arrived - in_flight
    requests = int(ctr[S.REQUESTS])
    window = float(f[S.T_LAST] - f[S.T_FIRST]) if arrived > 1 else math.nan
    hist = met.hist.copy()
    p50, p90, p99, p999 = percentiles(hist, [0.5, 0.9, 0.99, 0.999], float(f[S.LAT_MAX]))
    util = met.task_busy / (window * cl.task_workers) if window and window > 0 else np.full(cl.n_tasks, np.nan)
    # a deployment's spare slots count once they have held a task
    used = cl.initial | (st.task_restarts > 0) if cl.n_initial >= 0 else slice(None)
    cov, maxmean, jain = _imbalance(util[used])
    svc0 = sc.services[0]
    capacity = sum(cl.service_capacity(i) for i in range(cl.n_services))
    rate = float(run.workload.rate)
    if run.looped:
        # a closed loop's offered load is what its users sent: the measured arrival rate
        rate = arrived / window if window and window > 0 else math.nan
        w = np.array([s.weight for s in sc.services])
        rho = float(rate * np.dot(w / w.sum(), [s.demand.mean for s in sc.services]) / capacity)
    elif sc.workload.rho is not None:
        rho = sc.workload.rho
    elif run.workload.trace is not None and "demand" in run.workload.trace.cols:
        rho = float(run.workload.trace.cols["demand"][:run.n_req].mean() * run.workload.rate / capacity)
    else:
        rho = float(sum(r * s.demand.mean for r, s in zip(run.workload.rates, sc.services)) / capacity)
    run_hash, run_id = run_identity(sc, spec, pvals, seed)
    row = {
        "run_id": run_id,
        "scenario": sc.name,
        "strategy": spec.name,
        "strategy_version": spec.version,
        "strategy_hash": _strategy_identity(spec)[2],      # (the source read once per spec)
        "params": json.dumps(pvals, sort_keys=True),
        "seed": seed,
        "nodes": cl.n_nodes,
        "tasks": int(cl.initial.sum()),     # (a deployment's spare slots are not tasks)
        "workers": int(svc0.workers),
        "rho": float(rho),
        "rate": rate,
        "users": run.users.n if run.users is not None else 0,
        "sessions": int(st.ctr[S.SESSIONS]),
        "mode": sc.balancer.mode,
        "info": sc.balancer.info,
        "hop": float(sc.network.hop),
        "requests": requests,
        "arrived": arrived,
        "completed": completed,
        "rejected": rejected,
        "failed": failed,
        "in_flight": in_flight,
        "retried": retried,
        "timed_out": timed_out,
        "availability": (completed - timed_out) / finished if finished else math.nan,
        "faults": len(run.schedule),
        "crashes": int(ctr[S.CRASHES]),
        "recovery_s": math.nan,
        "update_s": _update_s(run),
        "latency_mean": float(f[S.LAT_SUM] / completed) if completed else math.nan,
        "latency_p50": p50, "latency_p90": p90, "latency_p99": p99, "latency_p999": p999,
        "latency_max": float(f[S.LAT_MAX]) if completed else math.nan,
        "throughput": completed / window if window and window > 0 else math.nan,
        "offered_rate_mean": arrived / window if window and window > 0 else math.nan,
        "util_mean": float(np.mean(util[used])),
        "util_max": float(np.max(util[used])),
        "imbalance_cov": cov,
        "imbalance_max_mean": maxmean,
        "jain": jain,
        "cross_node_frac": float(ctr[S.CROSS] / arrived) if arrived else math.nan,
        **_cpu_columns(run, window, completed),
        "stable": None,
        "sim_time": float(f[S.T_LAST]),
        "wall_s": wall,
        "req_per_s": requests / wall if wall > 0 else math.nan,
        "lbbench_version": __version__,
        "schema_version": SCHEMA_VERSION,
    }
    row["stable"], unstable_why = _stability(run, util)
    check_result(row, hist, window)
    tasks = {
        "run_id": [row["run_id"]] * cl.n_tasks,
        "task": np.arange(cl.n_tasks, dtype=np.int32),
        "service": [sc.services[s].name for s in cl.task_service],
        "node": np.where(cl.initial | (st.task_restarts > 0), cl.task_node, -1).astype(np.int32),
        "first_node": run.first_node,
        "restarts": st.task_restarts.copy(),       # (the state goes to the next run: _release_state)
        "speed": cl.task_speed,
        "workers": cl.task_workers,
        "served": met.task_served,
        "busy_s": met.task_busy,
        "utilisation": util,
    }
    timeseries = _timeseries(run, row["run_id"])
    faults = _faults_table(run, row["run_id"])
    if faults is not None and faults.height:
        rec = faults.filter(~pl.col("kind").is_in(list(REPAIR_KINDS)))["recovery_s"]
        # the run's recovery: the longest of its faults' (NaN if one never recovered)
        longest = float(rec.fill_nan(math.inf).max()) if rec.len() else math.nan
        row["recovery_s"] = math.nan if math.isinf(longest) else longest
    tr = None
    if trace:
        tr = pl.DataFrame({
            "request": np.arange(len(met.tr_task), dtype=np.int64),
            "task": met.tr_task, "start": met.tr_start, "done": met.tr_done,
            "latency": met.tr_latency, "status": met.tr_status, "retries": met.tr_tries,
            **({"user": met.tr_user} if run.users is not None else {}),
            **({"session": met.tr_user} if run.sessions is not None else {}),
        })
    return Parts(row=row, tasks=tasks, hist_counts=hist, timeseries=timeseries, faults=faults,
                 nodes=_nodes_table(run, row["run_id"], window), events=_events_table(run, row["run_id"]), trace=tr,
                 scenario=sc, extra={"run_hash": run_hash, **({"unstable": unstable_why} if unstable_why else {})})


def _node_cpu(run: _Run, window: float) -> np.ndarray | None:
    """Each node's CPU utilisation: the core-seconds its measured completed requests held, per
    core and second of the measured window (cpu.py); None without cluster.cores."""
    cores = run.cl.node_cores
    if cores is None:
        return None
    if not (window and window > 0):
        return np.full(run.cl.n_nodes, np.nan)
    return run.st.node_cpu / (np.asarray(cores, dtype=np.float64) * window)


def _cpu_columns(run: _Run, window: float, completed: int) -> dict:
    """cpu_util_mean, cpu_util_max (over nodes) and contention_mean (per measured completion);
    null without cluster.cores."""
    util = _node_cpu(run, window)
    if util is None:
        return {"cpu_util_mean": None, "cpu_util_max": None, "contention_mean": None}
    return {"cpu_util_mean": float(np.mean(util)), "cpu_util_max": float(np.max(util)),
            "contention_mean": float(run.st.fctr[S.CONTENTION] / completed) if completed else math.nan}


def _update_s(run: _Run) -> float | None:
    """The longest, over the run's updates, time from an update's start to its last batch's last
    join (NaN if one never finished: a newer one took over, or the run ended first); None
    without updates."""
    dep = run.deploy
    upd = dep.kind == D_UPDATE
    if not upd.any():
        return None
    took = run.st.d_done[upd] - dep.time[upd]
    return math.nan if np.isnan(took).any() else float(took.max())


def _events_table(run: _Run, run_id: str) -> pl.DataFrame | None:
    """Every orchestrator action of a run with deployments or autoscalers, in the order taken
    (docs/model.md, "Deployments", its outputs): each deploy event (kind `scale` or `update`:
    `event`, its index in deploy.events; `before` and `after`, the service's replicas or
    version; an update's `done` and `duration_s`), each autoscaler decision that changes the
    replicas (`autoscale`: before, after, the metric's `value`, `detail` the metric), each task
    started (`start`), stopped (`stop`) or replacing a crashed or drained one (`replace`), with
    its `task`, `node` and cause (`detail`: scale, update, crash, drain). A deploy event the
    run never reached comes last, `before` -1."""
    if not len(run.deploy.time) and not len(run.inp_autoscale):
        return None
    run.ensure_log()        # (no row lost in the last call)
    dep, st = run.deploy, run.st
    n = int(st.ctr[S.LOG_N])
    names = [x.name for x in run.sc.services]
    metrics = [AS_METRICS[m] for m in run.inp_autoscale.metric]
    li = st.log_i[:n]
    kind, why = li[:, S.LOG_F_KIND], li[:, S.LOG_F_WHY]
    deploy = (kind == S.LOG_SCALE) | (kind == S.LOG_UPDATE)
    task_row = kind >= S.LOG_START
    unseen = np.flatnonzero(st.d_from < 0)        # deploy events past the run's end
    event = np.concatenate([np.where(deploy, why, -1), unseen])
    upd = np.concatenate([kind == S.LOG_UPDATE, dep.kind[unseen] == D_UPDATE])
    t = np.concatenate([st.log_t[:n], dep.time[unseen]])
    done = np.where(upd, st.d_done[np.maximum(event, 0)] if len(dep.time) else np.nan, np.nan)
    detail = [S.WHYS[w] if tr else (metrics[w] if k == S.LOG_AUTOSCALE else "")
              for k, w, tr in zip(kind, why, task_row)]

    def opt(col, keep):      # null where the column means nothing for the row's kind
        return [int(v) if k else None for v, k in zip(col, keep)]
    return pl.DataFrame({
        "run_id": [run_id] * len(t),
        "event": opt(event, event >= 0),
        "time": t,
        "service": [names[x] for x in np.concatenate([li[:, S.LOG_F_SVC], dep.service[unseen]])],
        "kind": [S.LOG_KINDS[k] for k in kind] + ["update" if u else "scale" for u in dep.kind[unseen] == D_UPDATE],
        "task": opt(li[:, S.LOG_F_TASK], task_row) + [None] * len(unseen),
        "node": opt(li[:, S.LOG_F_NODE], task_row) + [None] * len(unseen),
        "before": opt(li[:, S.LOG_F_BEFORE], ~task_row) + [-1] * len(unseen),
        "after": opt(li[:, S.LOG_F_AFTER], ~task_row) + [int(x) for x in np.where(
            dep.kind[unseen] == D_UPDATE, unseen + 1, dep.replicas[unseen])],
        "value": np.concatenate([st.log_v[:n], np.full(len(unseen), np.nan)]),
        "done": done,
        "duration_s": done - t,
        "detail": detail + [""] * len(unseen),
    }, schema_overrides={"event": pl.Int32, "task": pl.Int32, "node": pl.Int32, "before": pl.Int64, "after": pl.Int64})


def _nodes_table(run: _Run, run_id: str, window: float) -> pl.DataFrame | None:
    """One row per node (cluster.cores only): its cores, speed at the end, the core-seconds its
    measured completed requests held (busy_s) and its CPU utilisation (docs/model.md, "Nodes as
    shared machines", its CPU metrics)."""
    util = _node_cpu(run, window)
    if util is None:
        return None
    n = run.cl.n_nodes
    return pl.DataFrame({
        "run_id": [run_id] * n,
        "node": np.arange(n, dtype=np.int32),
        "cores": np.asarray(run.cl.node_cores, dtype=np.float64),
        "speed": np.asarray(run.cfg_kw["node_speed"], dtype=np.float64),
        "busy_s": run.st.node_cpu.copy(),
        "cpu_util": util,
    })


def _stability(run: _Run, util: np.ndarray) -> tuple[bool, str]:
    """Whether the run reached a steady state (lbbench.stability), and why not."""
    from .stability import cv2_of, judge
    wl, cl, met = run.workload, run.cl, run.met
    if wl.trace is not None and "demand" in wl.trace.cols:
        cv2 = np.full(cl.n_tasks, cv2_of(wl.trace.cols["demand"][:run.n_req]))
    else:
        per_service = np.array([d.variance() / d.d.mean**2 for d in wl.demand])
        cv2 = per_service[cl.task_service]
    lat_sum = completed = None
    if run.ts_n:
        first_measured = float(run.st.fctr[S.T_FIRST])
        a = int(math.ceil(first_measured / run.ts_window))
        b = min(run.ts_n, int(float(run.st.fctr[S.T_LAST]) // run.ts_window) + 1)
        lat_sum, completed = met.ts_lat_sum[a:b], met.ts_count[a:b, S.TS_COMPLETED]
    stable, why = judge(util, met.task_served, cv2, lat_sum, completed)
    if why and wl.varying:
        why += ("; the offered rate varies over time (workload profile, diurnal or bursts) and this verdict is on "
                "the measured window as a whole")
    return stable, why


def _faults_table(run: _Run, run_id: str) -> pl.DataFrame | None:
    """One row per scheduled fault: time, kind, target, pre-fault p99 and recovery_s (see
    faults.recovery; NaN without time series)."""
    sch = run.schedule
    if not len(sch):
        return None
    names = [s.name for s in run.sc.services]
    met = run.met
    n = min(run.ts_n, int(float(run.st.fctr[S.T_LAST]) // run.ts_window) + 1) if run.ts_n else 0
    edges = M.bucket_edges(M.TS_SUB)
    p99_of = lambda h: _percentile(h, edges, 0.99, math.inf)  # noqa: E731
    sc = run.sc
    t_measure = sc.run.warmup * (sc.run.duration if sc.run.duration is not None else run.horizon)
    levels, recs = recoveries(met.ts_hist[:n], met.ts_count[:n, S.TS_FAILED], np.arange(n) * run.ts_window,
                              run.ts_window, sch.time, t_measure, p99_of,
                              lambda h: _row_percentiles(h, edges, 0.99))
    # column by column (rows made one by one took 10 ms for 5,000 faults); a repair has no recovery
    repair = np.array([k.repair for k in FAULT_KINDS])[sch.kind]
    return pl.DataFrame({"run_id": pl.repeat(run_id, len(sch), eager=True, dtype=pl.String),
                         "fault": np.arange(len(sch), dtype=np.int64), "time": sch.time.astype(np.float64),
                         "kind": [FAULT_KINDS[k].name for k in sch.kind.tolist()],
                         "target": sch.targets(names),
                         "pre_p99": np.where(repair, math.nan, levels), "recovery_s": np.where(repair, math.nan, recs)},
                        schema={"run_id": pl.String, "fault": pl.Int64, "time": pl.Float64, "kind": pl.String,
                                "target": pl.String, "pre_p99": pl.Float64, "recovery_s": pl.Float64})


def _replicas_column(run: _Run, n: int) -> dict:
    """With deployments, `replicas`: per window, each service's tasks in the tables at its end
    (control.control_step samples them after each control event; a window without one keeps the
    last)."""
    rep = run.met.ts_replicas
    if rep.shape[0] == 0:
        return {}
    cl = run.cl
    cur = np.bincount(cl.task_service[cl.initial], minlength=cl.n_services).astype(np.int64)
    out = np.empty((n, cl.n_services), dtype=np.int64)
    for w in range(n):
        cur = np.where(rep[w] >= 0, rep[w], cur)
        out[w] = cur
    return {"replicas": out}


def _timeseries(run: _Run, run_id: str) -> dict | None:
    """Per window of arrival time: counts, throughput, latency mean/p99, node utilisation (the
    columns; `timeseries_frame` makes the frame)."""
    met, cl = run.met, run.cl
    if run.ts_n == 0:
        return None
    last = float(run.st.fctr[S.T_LAST])
    n = min(run.ts_n, int(last // run.ts_window) + 1)
    w = run.ts_window
    counts = met.ts_count[:n]
    p99 = _row_percentiles(met.ts_hist[:n], _TS_EDGES, 0.99)
    live = cl.initial | (run.st.task_restarts > 0)      # (a deployment's spare slots once used)
    node_workers = np.bincount(cl.task_node[live], weights=cl.task_workers[live], minlength=cl.n_nodes)
    length = np.full(n, w)
    length[-1] = max(last - (n - 1) * w, 1e-300)     # the last window ends at the last arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        node_util = met.ts_node_busy[:n] / (length[:, None] * node_workers[None, :])
        lat_mean = met.ts_lat_sum[:n] / counts[:, S.TS_COMPLETED]
    node_util[:, node_workers == 0] = np.nan
    return {
        "run_id": [run_id] * n,
        "window": np.arange(n, dtype=np.int32),
        "t_start": np.arange(n) * w,
        "t_end": np.arange(n) * w + length,
        "arrivals": counts[:, S.TS_ARRIVED],
        "completed": counts[:, S.TS_COMPLETED],
        "rejected": counts[:, S.TS_REJECTED],
        "failed": counts[:, S.TS_FAILED],
        "retried": counts[:, S.TS_RETRIED],
        "timed_out": counts[:, S.TS_TIMED_OUT],
        "availability": (counts[:, S.TS_COMPLETED] - counts[:, S.TS_TIMED_OUT]) / np.maximum(
            counts[:, S.TS_COMPLETED] + counts[:, S.TS_REJECTED] + counts[:, S.TS_FAILED], 1),
        "throughput": counts[:, S.TS_COMPLETED] / length,
        "offered_rate": counts[:, S.TS_ARRIVED] / length,
        "latency_mean": lat_mean,
        "latency_p99": np.asarray(p99),
        "node_util": node_util,
        # cluster.cores: each node's CPU, the core-seconds (demand / speed) its requests of the
        # window held per core and second
        **_replicas_column(run, n),
        **({"node_cpu": met.ts_node_busy[:n] / (length[:, None] * np.asarray(cl.node_cores)[None, :])}
           if cl.node_cores is not None else {}),
    }
