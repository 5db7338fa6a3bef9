"""Least node load: the task on the node with the least load per core; ties by the task's own
load, then by rotation.

Origin: the claim this project started from, that the choice of node "depends on the current
load on the two nodes", made a strategy; and the premise of Prequal (Wydrowski et al., "Load is
not what you should balance: Introducing Prequal", NSDI 2024): a replica's latency follows the
load of the machine it shares, not only its own queue. Nodes are shared machines here when the
scenario gives `cluster.cores` (docs/model.md, "Nodes as shared machines"): `view.node_load` is
each node's requests in service plus background work per core, as the balancer's information
model reports it. Without `cluster.cores` there is no node load (`view.node_load` is empty) and
this is least_load's scan.

The scan starts one position further along the candidates at every decision, from the
balancer's start offset (`kit.rotate_from`, as least_load), and keeps the first candidate with
the least (node load, task load) met.

State: [0] the rotation offset.
"""
from numba import njit

from lbbench.plugins import kit
from lbbench.strategy import Strategy


@njit(inline="always")
def _better(view, t, best, has_nodes):
    """(node load, task load) of t below best's."""
    if has_nodes:
        a = view.node_load[view.task_node[t]]
        b = view.node_load[view.task_node[best]]
        if a != b:
            return a < b
    return view.load[t] < view.load[best]


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    off = kit.rotate_from(state, 0, n, view.start)
    has_nodes = view.node_load.shape[0] > 0
    best = cands[off]
    for i in range(off + 1, n):
        if _better(view, cands[i], best, has_nodes):
            best = cands[i]
    for i in range(off):
        if _better(view, cands[i], best, has_nodes):
            best = cands[i]
    return best


STRATEGY = Strategy(
    name="least_node_load",
    select=select,
    description="the task on the node with the least load per core (cluster.cores), ties by the task's load, then rotation",
    version="2",
    state_size=1,
    boundscheck=False,
    reads_position=False,
)
