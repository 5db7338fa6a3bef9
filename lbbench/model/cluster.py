"""Cluster state as struct-of-arrays, and Swarm's spread placement.

Nodes are 0..N-1; tasks are numbered in placement order (service by service, replica by
replica). Everything the engine reads about the cluster is a flat numpy array indexed by node
or task id; nothing here is touched per request.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenario import Scenario


def spread_replicas(replicas: int, counts_total: np.ndarray, eligible: np.ndarray) -> list[int]:
    """The nodes of a new service's replicas by Swarm's spread rule, one replica after another:
    the eligible node with the fewest tasks of this service, then the fewest tasks overall, then
    the lowest id (Swarm's order is arbitrary; ours is fixed). Only the chosen node's counts
    change, and both by one, so every node takes its m-th replica before any its (m+1)-th, and
    within each round the nodes come in the same order, by (tasks, id) at the start: replica i
    goes to that order's node i mod E (E eligible nodes). O(nodes log nodes + replicas).
    `counts_total` is not modified. (The engine's spread_node places replacements by the same
    rule.)"""
    ids = np.flatnonzero(eligible)
    if len(ids) == 0:
        if replicas > 0:
            raise ValueError("spread placement: no eligible node")
        return []
    order = ids[np.lexsort((ids, np.asarray(counts_total)[ids]))]
    return order[np.arange(replicas) % len(order)].tolist()


@dataclass
class ClusterState:
    """Static layout of a run: node and task arrays, per-service balancer tables."""

    node_speed: np.ndarray      # float64[N]
    node_up: np.ndarray         # bool[N]
    node_drained: np.ndarray    # bool[N]
    task_node: np.ndarray       # int32[T]
    task_service: np.ndarray    # int32[T]
    task_speed: np.ndarray      # float64[T] (speed of the task's node)
    task_workers: np.ndarray    # int32[T]
    task_wstart: np.ndarray     # int32[T+1] offsets into the flat worker array
    task_qlimit: np.ndarray     # int64[T] (0 = unbounded)
    table: np.ndarray           # int32[sum capacity]: per-service lists of tasks in the tables
    table_start: np.ndarray     # int64[S]
    table_len: np.ndarray       # int64[S]
    table_pos: np.ndarray       # int64[T]: position of a task in its service's table, -1 if absent
    node_cores: np.ndarray | None = None   # float64[N]: cluster.cores (None: a core per worker)
    n_initial: int = -1         # tasks placed at the start; the slots after them are spares for
                                # deployments (deploy.spare_slots), with no task yet (-1: no spares)

    @property
    def n_nodes(self) -> int:
        return len(self.node_speed)

    @property
    def n_tasks(self) -> int:
        return len(self.task_node)

    @property
    def n_services(self) -> int:
        return len(self.table_start)

    @property
    def initial(self) -> np.ndarray:
        """bool[T]: the slots holding a task at the start (all but the deployments' spares)."""
        m = np.ones(self.n_tasks, dtype=bool)
        if self.n_initial >= 0:
            m[self.n_initial:] = False
        return m

    def service_capacity(self, s: int) -> float:
        """Work per second the service's tasks can do (workers x speed), demand units. With
        cluster.cores the service's workers on a node use at most its cores: the sum over nodes
        of min(workers there, cores) x speed, the service alone on its nodes (docs/model.md,
        "Nodes as shared machines")."""
        m = (self.task_service == s) & self.initial
        if self.node_cores is not None:
            per_node = np.bincount(self.task_node[m], weights=self.task_workers[m], minlength=self.n_nodes)
            return float(np.sum(np.minimum(per_node, self.node_cores) * self.node_speed))
        return float(np.sum(self.task_workers[m] * self.task_speed[m]))


def build_cluster(sc: Scenario) -> ClusterState:
    n = sc.cluster.nodes
    speed = np.asarray(sc.cluster.speeds if sc.cluster.speeds is not None else [1.0] * n, dtype=np.float64)
    drained = np.zeros(n, dtype=bool)
    drained[list(sc.cluster.drained)] = True
    up = np.ones(n, dtype=bool)
    total = np.zeros(n, dtype=np.int64)
    task_node, task_service, task_workers, task_q = [], [], [], []
    for s, svc in enumerate(sc.services):
        nodes = list(svc.placement) if svc.placement is not None else spread_replicas(svc.replicas, total, up & ~drained)
        np.add.at(total, np.asarray(nodes, dtype=np.int64), 1)
        task_node += nodes
        task_service += [s] * svc.replicas
        task_workers += [svc.workers] * svc.replicas
        task_q += [svc.queue_limit] * svc.replicas
    n_initial = len(task_node)
    if sc.deploy.events or sc.autoscale:        # spare slots for the deployments, after every initial task
        from .deploy import spare_slots
        for s, (svc, n_spare) in enumerate(zip(sc.services, spare_slots(sc))):
            task_node += [0] * n_spare          # a placeholder until the orchestrator places a task there
            task_service += [s] * n_spare
            task_workers += [svc.workers] * n_spare
            task_q += [svc.queue_limit] * n_spare
    task_node = np.asarray(task_node, dtype=np.int32)
    task_service = np.asarray(task_service, dtype=np.int32)
    task_workers = np.asarray(task_workers, dtype=np.int32)
    wstart = np.zeros(len(task_node) + 1, dtype=np.int32)
    np.cumsum(task_workers, out=wstart[1:])
    n_services = len(sc.services)
    # Table capacity per service: room for every task of the service (replacements reuse it).
    counts = np.bincount(task_service, minlength=n_services)
    table_start = np.zeros(n_services, dtype=np.int64)
    table_start[1:] = np.cumsum(counts)[:-1]
    table = np.empty(int(counts.sum()), dtype=np.int32)
    table_len = np.zeros(n_services, dtype=np.int64)
    table_pos = np.full(len(task_node), -1, dtype=np.int64)
    # the initial tasks in id order within each service's table
    ts = task_service[:n_initial]
    order = np.argsort(ts, kind="stable")
    table_len[:] = np.bincount(ts, minlength=n_services)
    first = np.zeros(n_services, dtype=np.int64)
    first[1:] = np.cumsum(table_len)[:-1]
    pos = np.arange(n_initial) - first[ts[order]]
    table[table_start[ts[order]] + pos] = order
    table_pos[order] = pos
    return ClusterState(
        node_speed=speed, node_up=up, node_drained=drained,
        task_node=task_node, task_service=task_service, task_speed=speed[task_node].copy(),
        task_workers=task_workers, task_wstart=wstart, task_qlimit=np.asarray(task_q, dtype=np.int64),
        table=table, table_start=table_start, table_len=table_len, table_pos=table_pos,
        node_cores=None if sc.cluster.cores is None else np.asarray(sc.cluster.core_list(), dtype=np.float64),
        n_initial=n_initial if n_initial < len(task_node) else -1,
    )
