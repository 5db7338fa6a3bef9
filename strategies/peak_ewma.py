"""Peak EWMA: power of two choices on (peak-sensitive EWMA of latency) x (outstanding + 1).

Origin: Finagle's `Balancers.p2cPeakEwma` (Twitter, 2016; Marius Eriksen and Steve Gury) and
Linkerd's `PeakEwma` load estimator (tower-balance, Linkerd 2). Per endpoint the balancer
keeps `cost`, a moving average of observed round-trip times that jumps to any observation
above it (peak sensitive) and otherwise decays towards it with weight exp(-dt / decay), dt
being the time since the endpoint's last update; an endpoint's load is cost * (pending + 1),
or a large penalty when it has no latency history but requests pending. Two distinct
candidates are drawn at random (`kit.two_positions`) and the lower load wins (a tie keeps the
first drawn).

It learns only from completions that happened: `on_complete` feeds the latency of each
request this balancer sent (seconds, hops included); a decision only decays costs to now, as
Finagle's `get()` does (observing 0). `pending` is the information model's load figure.
`decay` is Finagle's decay time (default 10 s).

Per task (`task_state`, sized by the engine to the run's tasks): [0] cost, [1] the time of
its last update. No per-service `state`.
"""
import math

from numba import njit

from lbbench.plugins import kit
from lbbench.strategy import Param, Strategy

COST, STAMP = 0, 1      # task_state columns
PENALTY = 1e12          # seconds; Finagle uses Long.MaxValue >> 16 nanoseconds


@njit(inline="always")
def _load(ts, task, pending, now, decay):
    dt = now - ts[task, STAMP]
    cost = ts[task, COST]
    if dt > 0.0 and cost > 0.0:
        cost *= math.exp(-dt / decay)
        ts[task, COST] = cost
    ts[task, STAMP] = now
    if cost == 0.0 and pending != 0:
        return PENALTY + pending
    return cost * (pending + 1)


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    if n == 1:
        return cands[0]
    ia, ib = kit.two_positions(rng, n)
    a = cands[ia]
    b = cands[ib]
    decay = view.params.decay
    la = _load(view.task_state, a, view.load[a], view.now, decay)
    lb = _load(view.task_state, b, view.load[b], view.now, decay)
    return a if la <= lb else b


@njit
def on_complete(state, task, latency, now, view):
    ts = view.task_state
    dt = now - ts[task, STAMP]
    if dt < 0.0:
        dt = 0.0
    cost = ts[task, COST]
    if latency > cost:
        cost = latency
    else:
        w = math.exp(-dt / view.params.decay)
        cost = cost * w + latency * (1.0 - w)
    ts[task, COST] = cost
    ts[task, STAMP] = now


STRATEGY = Strategy(
    name="peak_ewma",
    select=select,
    on_complete=on_complete,
    description="two random choices on peak-EWMA latency x (outstanding + 1) (Finagle / Linkerd)",
    version="1",
    params=(Param("decay", 10.0, 1e-9, 1e9, doc="seconds: time constant of the latency average"),),
    state_size=0,
    task_state=2,
    reads_position=False,
)
