"""Prequal: a pool of reusable load probes and the hot-cold lexicographic (HCL) choice.

Origin: Wydrowski, Kleinberg, Rumble and Archer, "Load is not what you should balance:
Introducing Prequal", NSDI 2024 (Google; YouTube's load balancer). A client keeps a small pool
of recent probe responses, each a replica's requests-in-flight (RIF) and estimated latency;
probes are sent asynchronously, a few per query to random replicas, and each response is
reused for several queries. A query goes by HCL: replicas whose RIF is above the Q_RIF
quantile of the RIF distribution are hot; among the cold probes the lowest estimated latency
wins; if every probe is hot, the lowest RIF wins. A used probe's RIF counts the query just
sent, and a probe is dropped after `reuse` uses (or when older than `max_age` seconds).

Here each balancer keeps its own pool in its state. At a decision it first chooses from the
pool (HCL; a random candidate when the pool is empty), then sends `probes` probes to distinct
random candidates: their answers join the pool for *later* decisions, as asynchronous probes
do (a probe of a task already in the pool replaces its entry; a full pool drops its oldest).
A probe answers the task's RIF r per the information model and its latency estimate
(r + 1) * s, where s is the task's time per queued request, a moving average (weight `ALPHA`)
of latency / (requests still outstanding at the task + 1) over the completions of requests
this balancer sent there (learnt in `on_complete`, so only from completions that happened).
As a Prequal replica's estimate, it follows the current RIF at once and the task's speed
slowly; a task never heard from estimates 0, so it is tried. (An average of raw latencies
instead starves a task after one slow answer: it is never chosen again, so never corrected.)
The RIF distribution is that of the last `HISTORY` probe answers. Defaults: 3 probes per
decision, a pool of 16, Q_RIF = 0.75, 2 uses per probe, no age limit.

State: header, the positions probed in this round (`kit.draw_distinct`), the pool (`pool`
entries: task, position, RIF, latency, time, uses), the RIF history (a ring and a count per
RIF value). Per task (`task_state`, sized by the engine to the run's tasks): [0] its latency
estimate.
"""
from numba import njit

from lbbench.plugins import kit
from lbbench.rng import integers
from lbbench.strategy import Param, Strategy

EST = 0                         # task_state column: the latency estimate
MAX_POOL = 64
MAX_PROBES = 16
HISTORY = 64
MAX_RIF = 255                   # RIF values above it count as MAX_RIF in the history
ALPHA = 0.05

# header
P_LEN, H_LEN, H_HEAD = 0, 1, 2
PROBED = 3                                  # positions probed in this round (MAX_PROBES)
POOL = PROBED + MAX_PROBES                  # MAX_POOL entries of FIELDS values
FIELDS = 6
F_TASK, F_POS, F_RIF, F_LAT, F_TIME, F_USES = range(FIELDS)
H_RING = POOL + MAX_POOL * FIELDS           # HISTORY RIF values
H_COUNT = H_RING + HISTORY                  # count per RIF value 0..MAX_RIF
SIZE = H_COUNT + MAX_RIF + 1


@njit(inline="always")
def _remove(state, e):
    """Drop pool entry e (the last entry takes its place)."""
    last = int(state[P_LEN]) - 1
    if e != last:
        for f in range(FIELDS):
            state[POOL + e * FIELDS + f] = state[POOL + last * FIELDS + f]
    state[P_LEN] = last


@njit(inline="always")
def _better(state, e, best, first, second):
    """Whether pool entry e beats entry `best` (-1: none yet) on the fields (first, second),
    compared lexicographically."""
    if best < 0:
        return True
    b = POOL + e * FIELDS
    c = POOL + best * FIELDS
    return state[b + first] < state[c + first] or (state[b + first] == state[c + first]
                                                    and state[b + second] < state[c + second])


@njit(inline="always")
def _threshold(state, q):
    """The q-quantile of the RIF history (+inf while it is empty)."""
    h = int(state[H_LEN])
    if h == 0:
        return 1e300
    need = q * h
    acc = 0.0
    for r in range(MAX_RIF + 1):
        acc += state[H_COUNT + r]
        if acc >= need:
            return float(r)
    return float(MAX_RIF)


@njit(inline="always")
def _remember(state, rif):
    r = rif if rif < MAX_RIF else MAX_RIF
    if r < 0:
        r = 0
    h = int(state[H_LEN])
    head = int(state[H_HEAD])
    if h == HISTORY:
        old = int(state[H_RING + head])
        state[H_COUNT + old] -= 1.0
    else:
        state[H_LEN] = h + 1
    state[H_RING + head] = r
    state[H_COUNT + r] += 1.0
    state[H_HEAD] = head + 1 if head + 1 < HISTORY else 0


@njit(inline="always")
def _add_probe(state, task, pos, rif, lat, now, pool):
    n = int(state[P_LEN])
    e = -1
    oldest = 0
    for j in range(n):
        if state[POOL + j * FIELDS + F_TASK] == task:
            e = j
            break
        if state[POOL + j * FIELDS + F_TIME] < state[POOL + oldest * FIELDS + F_TIME]:
            oldest = j
    if e < 0:
        if n < pool:
            e = n
            state[P_LEN] = n + 1
        else:
            e = oldest
    b = POOL + e * FIELDS
    state[b + F_TASK] = task
    state[b + F_POS] = pos
    state[b + F_RIF] = rif
    state[b + F_LAT] = lat
    state[b + F_TIME] = now
    state[b + F_USES] = 0.0


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    p = view.params
    probes = int(p.probes)
    pool = int(p.pool)
    q = p.q_rif
    reuse = p.reuse
    max_age = p.max_age
    now = view.now
    theta = _threshold(state, q)
    # hot-cold lexicographic choice over the valid pool entries
    cold = -1
    hot = -1
    e = 0
    while e < int(state[P_LEN]):
        b = POOL + e * FIELDS
        pos = int(state[b + F_POS])
        if pos >= n or cands[pos] != state[b + F_TASK] or (max_age > 0.0 and now - state[b + F_TIME] > max_age):
            _remove(state, e)       # the table changed, or the probe is too old
            continue
        if state[b + F_RIF] <= theta:
            if _better(state, e, cold, F_LAT, F_RIF):
                cold = e
        elif _better(state, e, hot, F_RIF, F_LAT):
            hot = e
        e += 1
    pick = cold if cold >= 0 else hot
    if pick >= 0:
        b = POOL + pick * FIELDS
        k = cands[int(state[b + F_POS])]
        state[b + F_RIF] += 1.0
        state[b + F_USES] += 1.0
        if state[b + F_USES] >= reuse:
            _remove(state, pick)
    else:
        k = cands[integers(rng, n)]
    # asynchronous probes: answers for later decisions
    m = probes if probes < n else n
    for j in range(m):
        i = kit.draw_distinct(rng, n, state, PROBED, j)
        t = cands[i]
        rif = view.load[t]
        _add_probe(state, t, i, rif, (rif + 1.0) * view.task_state[t, EST], now, pool)
        _remember(state, rif)
    return k


@njit
def on_complete(state, task, latency, now, view):
    per = latency / (view.load[task] + 1.0)       # time per request queued at the task
    est = view.task_state[task, EST]
    view.task_state[task, EST] = per if est == 0.0 else est + ALPHA * (per - est)


STRATEGY = Strategy(
    name="prequal",
    select=select,
    on_complete=on_complete,
    description="pool of reused probes (RIF, latency), hot-cold lexicographic choice (Google, NSDI 2024)",
    version="1",
    params=(
        Param("probes", 3, 0, MAX_PROBES, integer=True, doc="probes sent per decision"),
        Param("pool", 16, 1, MAX_POOL, integer=True, doc="probe pool size"),
        Param("q_rif", 0.75, 0.0, 1.0, doc="RIF quantile above which a task is hot"),
        Param("reuse", 2, 1, 1000, integer=True, doc="uses of a probe before it is dropped"),
        Param("max_age", 0.0, 0.0, 1e9, doc="seconds a probe stays usable (0: no limit)"),
    ),
    state_size=SIZE,
    task_state=1,
    boundscheck=False,
    reads_position=False,
)
