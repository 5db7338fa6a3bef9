"""Power of d choices: the least loaded of d distinct candidates drawn at random.

Origin: Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing" (PhD thesis 1996;
IEEE TPDS 12(10), 2001) and Vvedenskaya, Dobrushin and Karpelevich (1996): with d >= 2 the
queue-length tail falls doubly exponentially. In practice: IPVS `twos` (weighted least
connection of two random servers), Envoy's `LEAST_REQUEST` (`choice_count`, default 2), nginx
`random two least_conn`, Finagle's P2C.

The d candidates are distinct positions drawn with the balancer's own random stream; the least
load per the information model wins and a tie keeps the candidate drawn first (a uniformly
random one of the tied). d >= the number of candidates scans all of them from a random
position (least-load with random ties). d = 1 is `random`.

State: the positions drawn for the current decision (d <= 64).
"""
from numba import njit

from lbbench.rng import integers
from lbbench.strategy import Param, Strategy

MAX_D = 64


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    d = int(view.params[0])
    load = view.load
    if d >= n:
        i = integers(rng, n)
        best = cands[i]
        best_load = load[best]
        for _ in range(n - 1):
            i += 1
            if i == n:
                i = 0
            t = cands[i]
            if load[t] < best_load:
                best = t
                best_load = load[t]
        return best
    if d == 2:
        # two distinct positions from one draw each: b skips over a
        ia = integers(rng, n)
        ib = integers(rng, n - 1)
        if ib >= ia:
            ib += 1
        a = cands[ia]
        b = cands[ib]
        return a if load[a] <= load[b] else b
    best = cands[0]
    best_load = 0
    for j in range(d):
        while True:
            i = integers(rng, n)
            fresh = True
            for m in range(j):
                if state[m] == i:
                    fresh = False
                    break
            if fresh:
                break
        state[j] = i
        t = cands[i]
        if j == 0 or load[t] < best_load:
            best = t
            best_load = load[t]
    return best


STRATEGY = Strategy(
    name="power_of_d",
    select=select,
    description="least load of d distinct random candidates (Mitzenmacher; IPVS twos, Envoy least-request)",
    version="1",
    params=(Param("d", 2, 1, MAX_D, integer=True, doc="candidates sampled per decision"),),
    state_size=MAX_D,
    boundscheck=False,
)
