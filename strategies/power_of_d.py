"""Power of d choices: the least loaded of d distinct candidates drawn at random.

Origin: Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing" (PhD thesis 1996;
IEEE TPDS 12(10), 2001) and Vvedenskaya, Dobrushin and Karpelevich (1996): with d >= 2 the
queue-length tail falls doubly exponentially. In practice: IPVS `twos` (weighted least
connection of two random servers), Envoy's `LEAST_REQUEST` (`choice_count`, default 2), nginx
`random two least_conn`, Finagle's P2C.

The d candidates are distinct positions drawn with the balancer's own random stream
(`kit.two_positions`, `kit.draw_distinct`); the least load per the information model wins and
a tie keeps the candidate drawn first (a uniformly random one of the tied). d >= the number of
candidates scans all of them from a random position (least-load with random ties,
`kit.least_load_from`). d = 1 is `random`.

State: the positions drawn for the current decision (d <= 64).
"""
from numba import njit

from lbbench.plugins import kit
from lbbench.rng import integers
from lbbench.strategy import Param, Strategy

MAX_D = 64


@njit
def select(cands, view, state, rng):
    n = cands.shape[0]
    d = int(view.params.d)
    load = view.load
    if d >= n:
        return kit.least_load_from(cands, load, integers(rng, n))
    if d == 2:
        ia, ib = kit.two_positions(rng, n)
        a = cands[ia]
        b = cands[ib]
        return a if load[a] <= load[b] else b
    best = cands[0]
    best_load = 0
    for j in range(d):
        t = cands[kit.draw_distinct(rng, n, state, 0, j)]
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
    reads_position=False,
)
