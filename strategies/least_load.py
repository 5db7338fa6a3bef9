"""Least-load: the task with the fewest outstanding requests (IPVS `lc`, join-the-shortest-queue).

The load figures are whatever the balancer's information model reports: true outstanding
requests (`global`), the requests this entry node sent (`local`, what IPVS knows), or a stale
snapshot (`stale:P`). Ties break by rotation: the scan starts one position further along the
candidate list at every decision, from the balancer's start offset (`view.start`,
`balancer.rr_start`), and keeps the first minimum it meets, so tied tasks share the load evenly
and deterministically (IPVS itself always takes the first in its list: `rr_start = "zero"`
starts every balancer's rotation at the first, where under `local` information a thousand
balancers, each seeing only its own requests, move through the list together).

State: [0] the rotation offset (`kit.rotate_from`, from `view.start`). The engine keeps the
load index for it (`load_index=True`): `kit.least_load_indexed` finds the scan's answer (`kit.least_load_from`) in
O(log n) per decision. With slow start (`balancer.slow_start`) it takes the least (load + 1) /
weight (`view.weight`), Envoy's least request with weights: the index's answer whenever that
task's weight is 1.
"""
from numba import njit

from lbbench.plugins import kit
from lbbench.strategy import Strategy


@njit
def select(cands, view, state, rng):
    off = kit.rotate_from(state, 0, cands.shape[0], view.start)
    k = kit.least_load_indexed(cands, view, off)
    if view.weight.shape[0] > 0 and view.weight[k] < 1.0:
        # slow start: the least (load + 1) / weight (Envoy's least request with weights); when
        # the least loaded task has weight 1 it is that answer already
        k = kit.least_delay_from(cands, view.load, view.weight, off, False)
    return k


STRATEGY = Strategy(
    name="least_load",
    select=select,
    description="fewest outstanding requests per the information model (IPVS lc, JSQ); ties by rotation",
    version="2",
    state_size=1,
    boundscheck=False,
    load_index=True,
    reads_position=False,
)
