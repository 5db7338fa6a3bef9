"""A plugin keeping memory per task (`task_state`) and reading its parameters by name: each
balancer sends a request to the candidate it has heard back from least (completions counted
per task in on_complete), among `width` candidates from a random start; ties to the first."""
from numba import njit

from lbbench.rng import integers
from lbbench.strategy import Param, Strategy

DONE, SENT = 0, 1       # task_state columns


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    ts = view.task_state
    w = int(view.params.width)
    if w > n:
        w = n
    i = integers(rng, n)
    best = cands[i]
    for _ in range(w - 1):
        i += 1
        if i == n:
            i = 0
        t = cands[i]
        if ts[t, DONE] * view.params.weight < ts[best, DONE] * view.params[1]:
            best = t
    ts[best, SENT] += 1.0
    state[0] += 1.0
    return best


@njit
def on_complete(state, task, latency, now, view):
    view.task_state[task, DONE] += 1.0


STRATEGY = Strategy(name="per_task", select=select, on_complete=on_complete, reads_load=False, task_state=2,
                    params=(Param("width", 4, 1, 1e6, integer=True), Param("weight", 1.0, 0.1, 10.0)))
# The same hooks inlined into the loop (as lbbench's built-ins are): their writes into
# view.task_state must stick there too (see lbbench/engine/kernel.py, _view_aliases).
INLINED = Strategy(name="per_task_inlined", select=select, on_complete=on_complete, reads_load=False, task_state=2,
                   params=STRATEGY.params, boundscheck=False)
