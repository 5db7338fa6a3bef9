"""Join-idle-queue: dispatch to a task that reported itself idle, else to a random one.

Origin: Lu, Xie, Kliot, Geller, Larus and Greenberg, "Join-Idle-Queue: A novel load balancing
algorithm for dynamically scalable web services", Performance Evaluation 68(11), 2011. Each
dispatcher keeps an I-queue of idle servers; a server that becomes idle reports to one
I-queue; a dispatcher sends a job to the first server in its I-queue (removing it) and, when
the I-queue is empty, to a random server. Dispatching costs O(1) and needs no load query on
the critical path.

Here each balancer keeps its own I-queue (FIFO). A task reports to the balancer whose request
it has just completed, when that completion leaves it idle per the information model's load
figures (the `on_complete` hook: no report is ever made ahead of the completion that caused
it). At the balancer's first decision every candidate idle per the load figures joins the
queue (in the order of the table from the balancer's start offset). An id popped from the
queue that is no longer a candidate (the table changed) is dropped: `view.position`, the
engine's own position of each task in the candidate list, tells it in O(1).

State: [0] started, [1] head (a task id), [2] length, [3] tail of the I-queue, a FIFO linked
through the tasks. Per task, one number (`task_state`, sized by the engine to the run's tasks,
so any number of tasks): 0.0 while the task is not in the queue, -1.0 while it is the queue's
last, else 1 + the next task's id. A task is only ever in its own service's queue, once, so
one row per task serves every service's queue. (One column, not a next and a flag: each
balancer keeps a row per task, 80 MB at 1,000 per-node balancers and 10,000 tasks, not 160.)
"""
from numba import njit

from lbbench.rng import integers
from lbbench.strategy import Strategy

HEAD, LEN, TAIL = 1, 2, 3
OUT, LAST = 0.0, -1.0   # task_state[task, 0] of a task not in the queue, of the queue's last


@njit(inline="always")
def _push(state, ts, task):
    if ts[task, 0] == OUT:
        if state[LEN] == 0.0:
            state[HEAD] = task
        else:
            ts[int(state[TAIL]), 0] = task + 1.0
        state[TAIL] = task
        state[LEN] += 1.0
        ts[task, 0] = LAST


@njit(inline="always")
def _is_candidate(cands, view, task):
    p = view.position[task]
    return 0 <= p < cands.shape[0] and cands[p] == task


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    ts = view.task_state
    if state[0] == 0.0:
        state[0] = 1.0
        i = view.start % n
        for _ in range(n):
            if view.load[cands[i]] == 0:
                _push(state, ts, cands[i])
            i += 1
            if i == n:
                i = 0
    while state[LEN] > 0.0:
        task = int(state[HEAD])
        state[HEAD] = ts[task, 0] - 1.0      # (the last's: -2, never read, the queue being empty)
        state[LEN] -= 1.0
        ts[task, 0] = OUT
        if _is_candidate(cands, view, task):
            return cands[view.position[task]]
    return cands[integers(rng, n)]


@njit
def on_complete(state, task, latency, now, view):
    if view.load[task] == 0:
        _push(state, view.task_state, task)


STRATEGY = Strategy(
    name="join_idle_queue",
    select=select,
    on_complete=on_complete,
    description="a task from this balancer's idle queue, fed by completions that leave it idle; else random "
                "(Lu et al. 2011)",
    version="1",
    state_size=4,
    task_state=1,
    boundscheck=False,
)
