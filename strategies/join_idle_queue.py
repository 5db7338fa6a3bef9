"""Join-idle-queue: dispatch to a task that reported itself idle, else to a random one.

Origin: Lu, Xie, Kliot, Geller, Larus and Greenberg, "Join-Idle-Queue: A novel load balancing
algorithm for dynamically scalable web services", Performance Evaluation 68(11), 2011. Each
dispatcher keeps an I-queue of idle servers; a server that becomes idle reports to one
I-queue; a dispatcher sends a job to the first server in its I-queue (removing it) and, when
the I-queue is empty, to a random server. Dispatching costs O(1) and needs no load query on
the critical path.

Here each balancer keeps its own I-queue (FIFO) in its state. A task reports to the balancer
whose request it has just completed, when that completion leaves it idle per the information
model's load figures (the `on_complete` hook: no report is ever made ahead of the completion
that caused it). At the balancer's first decision every candidate idle per the load figures
joins the queue (in the order of the table from the balancer's start offset). An id popped
from the queue that is no longer a candidate (the table changed) is dropped.

State: [0] started, [1] head, [2] length of the I-queue, then the queue (task ids), a flag
per task id (in the queue), and a task id -> position map used to check that a popped task is
still a candidate (rebuilt only when that check misses). Task ids must be below `CAPACITY`.
"""
from numba import njit

from lbbench.rng import integers
from lbbench.strategy import Strategy

CAPACITY = 4096
HEAD, LEN = 1, 2
QUEUE = 3                       # ring buffer of task ids
IN_QUEUE = QUEUE + CAPACITY     # 1.0 when the task id is in the queue
POS = IN_QUEUE + CAPACITY       # task id -> position in the candidate list (a hint)


@njit(inline="always")
def _push(state, task):
    if task >= CAPACITY:
        raise ValueError("join_idle_queue: task id >= 4096")
    if state[IN_QUEUE + task] == 0.0:
        k = int(state[HEAD] + state[LEN])
        if k >= CAPACITY:
            k -= CAPACITY
        state[QUEUE + k] = task
        state[LEN] += 1.0
        state[IN_QUEUE + task] = 1.0


@njit(inline="always")
def _index(cands, state):
    for i in range(cands.shape[0]):
        t = cands[i]
        if t >= CAPACITY:
            raise ValueError("join_idle_queue: task id >= 4096")
        state[POS + t] = i


@njit(inline="always")
def _is_candidate(cands, state, task):
    p = int(state[POS + task])
    if p < cands.shape[0] and cands[p] == task:
        return True
    _index(cands, state)            # the table changed: the hint is stale
    p = int(state[POS + task])
    return p < cands.shape[0] and cands[p] == task


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    if state[0] == 0.0:
        state[0] = 1.0
        _index(cands, state)
        i = view.start % n
        for _ in range(n):
            if view.load[cands[i]] == 0:
                _push(state, cands[i])
            i += 1
            if i == n:
                i = 0
    while state[LEN] > 0.0:
        h = int(state[HEAD])
        task = int(state[QUEUE + h])
        state[HEAD] = h + 1.0 if h + 1 < CAPACITY else 0.0
        state[LEN] -= 1.0
        state[IN_QUEUE + task] = 0.0
        if _is_candidate(cands, state, task):
            return cands[int(state[POS + task])]
    return cands[integers(rng, n)]


@njit
def on_complete(state, task, latency, now, view):
    if view.load[task] == 0:
        _push(state, task)


STRATEGY = Strategy(
    name="join_idle_queue",
    select=select,
    on_complete=on_complete,
    description="a task from this balancer's idle queue, fed by completions that leave it idle; else random "
                "(Lu et al. 2011)",
    version="1",
    state_size=POS + CAPACITY,
    boundscheck=False,
)
