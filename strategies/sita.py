"""SITA-E: size-interval task assignment with equal load.

Origin: M. Harchol-Balter, M. E. Crovella and C. D. Murta, "On choosing a task assignment
policy for a distributed server system", Journal of Parallel and Distributed Computing 59(2),
1999: the demand range is cut into as many intervals as there are hosts, each host serves the
tasks of one interval, and the cut-offs are chosen so that every interval carries the same
share of the load (the sum of the demands, not their count).

Here the hosts are the candidates in table order, the first taking the smallest demands. The
cut-offs come from the request's service's demand distribution (`view.demand_dist`): the
k-th cut-off x_k solves L(x_k) = (s_1 + ... + s_k) / (s_1 + ... + s_n), where L(x) is the share
of the load carried by demands <= x and s_i the i-th candidate's speed (equal speeds: k / n,
SITA-E; a faster task takes a proportionally larger share):
- bounded Pareto (alpha, low, high): L(x) = (1 - (x / low)^(1 - alpha)) / (1 - (high / low)^(1 - alpha))
  (log(x / low) / log(high / low) at alpha = 1), inverted in closed form;
- exponential (mean m): L(x) = 1 - e^-y (1 + y), y = x / m;
- hyperexp: the two phases' L, weighted by p_i m_i;
- lognormal (mu, sigma of log D): L(x) = Phi((log x - mu) / sigma - sigma);
  these three inverted by bisection on log x to double precision;
- deterministic demands (every request the same size) and demands from a trace have no
  intervals to cut: the engine refuses such a run (`demand_dists`).
A request of demand d goes to the first candidate whose interval's upper cut-off exceeds d (a
binary search). The cut-offs are computed again when the candidate list changes (a task leaves
or joins: `kit.list_changed`), and kept per task in `view.task_state[t, 0]`.

State: [0], [1] the candidate list's signature and length (`kit.record_list`).
"""
import math

from numba import njit

from lbbench.plugins import kit
from lbbench.strategy import Strategy

EXPONENTIAL, LOGNORMAL, PARETO, HYPEREXP = 0, 2, 3, 4     # view.demand_dist codes (model/workload.py)


@njit(inline="always")
def _exp_share(y):
    """Share of an exponential's load carried by demands <= y means: 1 - e^-y (1 + y)."""
    return -math.expm1(-y) - y * math.exp(-y)


@njit
def load_share(dist, x):
    """L(x): the share of the load (the mean demand) carried by demands <= x, for a row of
    `view.demand_dist` of an exponential, lognormal or hyperexp distribution."""
    code = int(dist[0])
    if code == EXPONENTIAL:
        return _exp_share(x / dist[1])
    if code == LOGNORMAL:
        z = (math.log(x) - dist[1]) / dist[2] - dist[2]
        return 0.5 * math.erfc(-z / math.sqrt(2.0))
    p1, m1, m2 = dist[1], dist[2], dist[3]
    a, b = p1 * m1, (1.0 - p1) * m2
    return (a * _exp_share(x / m1) + b * _exp_share(x / m2)) / (a + b)


@njit
def cutoff(dist, p):
    """The demand x with L(x) = p (0 < p < 1) for a row of `view.demand_dist`; inf for p >= 1
    or a distribution without intervals (deterministic, a trace: refused before the run)."""
    code = int(dist[0])
    if p >= 1.0 or not (code == EXPONENTIAL or code == LOGNORMAL or code == PARETO or code == HYPEREXP):
        return math.inf
    if code == PARETO:
        alpha, low, high = dist[1], dist[2], dist[3]
        if abs(alpha - 1.0) < 1e-12:
            return low * (high / low) ** p
        e = 1.0 - alpha
        return low * (1.0 - p * (1.0 - (high / low) ** e)) ** (1.0 / e)
    scale = dist[1] if code == EXPONENTIAL else (math.exp(dist[1] + dist[2] * dist[2]) if code == LOGNORMAL
                                                 else max(dist[2], dist[3]))
    lo, hi = scale, scale
    for _ in range(2100):           # brackets: L(lo) < p <= L(hi) (a factor 2 per step)
        if load_share(dist, lo) < p:
            break
        lo *= 0.5
    for _ in range(2100):
        if load_share(dist, hi) >= p:
            break
        hi *= 2.0
    for _ in range(200):            # bisection on log x: the geometric mean of the bracket
        mid = math.sqrt(lo) * math.sqrt(hi)
        if not lo < mid < hi:
            break
        if load_share(dist, mid) < p:
            lo = mid
        else:
            hi = mid
    return hi


@njit
def set_cutoffs(cands, view):
    """Each candidate's upper cut-off into view.task_state[t, 0]: intervals in table order whose
    loads follow the candidates' speeds; the last one's is inf."""
    n = cands.shape[0]
    total = 0.0
    for i in range(n):
        total += view.task_speed[cands[i]]
    dist = view.demand_dist[view.service]
    cum = 0.0
    for i in range(n):
        cum += view.task_speed[cands[i]]
        view.task_state[cands[i], 0] = math.inf if i == n - 1 else cutoff(dist, cum / total)


@njit
def select(cands, view, state, rng):
    if kit.list_changed(state, 0, cands):
        set_cutoffs(cands, view)
        kit.record_list(state, 0, cands)
    d = view.demand
    lo, hi = 0, cands.shape[0] - 1
    while lo < hi:                  # the first candidate whose upper cut-off exceeds d
        mid = (lo + hi) // 2
        if d < view.task_state[cands[mid], 0]:
            hi = mid
        else:
            lo = mid + 1
    return cands[lo]


STRATEGY = Strategy(
    name="sita",
    select=select,
    description="size-interval task assignment with equal load (SITA-E): demand intervals cut from the demand distribution",
    version="1",
    state_size=2,
    task_state=1,
    reads_load=False,
    demand_dists=("exponential", "lognormal", "pareto", "hyperexp"),
    boundscheck=False,
    reads_position=False,
)
