"""Never queue: an idle task if there is one, else shortest expected delay (IPVS `nq`).

Origin: the IPVS Never Queue scheduler (`ip_vs_nq.c`, Wensong Zhang): a server with no active
connection gets the request at once, however slow it is ("never queue" when a server is
idle); otherwise the task minimising (outstanding + 1) / weight wins, as in `sed`. Here the
weight is the node's speed and "idle" and "outstanding" are the information model's load
figures.

The scan starts one position further along the candidate list at every decision (the first
idle task met from there wins; ties of the delay break the same way), so idle tasks and tied
tasks share the load; IPVS scans from the head of its list. The rotation begins at the
balancer's start offset (`view.start`). State: [0] the rotation offset (`kit.rotate_from`); the
select is `shortest_expected_delay`'s taking the first idle task met (`kit.least_delay_from`).
"""
from lbbench.strategy import Strategy

from .shortest_expected_delay import delay_select

select = delay_select(idle_first=True)


STRATEGY = Strategy(
    name="never_queue",
    select=select,
    description="an idle task if any, else least (outstanding + 1) / node speed (IPVS nq)",
    version="2",
    state_size=1,
    boundscheck=False,
    reads_position=False,
)
