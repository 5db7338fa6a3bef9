"""The load index (lbbench/engine/loadindex.py): least_load answers from a min tree per
information-model row and service in O(log n), and must make the decisions of the scan it
replaces, request by request, under every information model, with failures that take tasks out
of the tables and bring replacements back (positions shift), retries and queue limits."""
from __future__ import annotations

import copy
from collections import namedtuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from lbbench.engine import loadindex
from lbbench.engine.run import simulate
from lbbench.plugins import kit

from simcheck import rows_equal, scenario

SCAN = '''
from numba import njit
from lbbench.plugins import kit
from lbbench.strategy import Strategy


@njit
def select(cands, view, state, rng):
    return kit.least_load_from(cands, view.load, kit.rotate_from(state, 0, cands.shape[0], view.start))


STRATEGY = Strategy(name="least_load_scan", select=select, state_size=1, boundscheck=False, version="2")
'''

HEALTH = {"task_detect": 4.0, "node_detect": 6.0, "restart_delay": 2.0, "startup": 1.0}


def _faulty(sc: dict) -> dict:
    sc = copy.deepcopy(sc)
    sc["faults"] = {"events": [{"at": 40.0, "kind": "task_crash", "task": 3},
                               {"at": 60.0, "kind": "node_down", "node": 1},
                               {"at": 90.0, "kind": "node_up", "node": 1},
                               {"at": 120.0, "kind": "node_drain", "node": 2}],
                    "random": [{"target": "task", "mtbf": 150.0}]}
    sc["health"] = dict(HEALTH)
    sc["clients"] = {"retries": 1, "backoff": 0.5}
    return sc


# 37 tasks: trees of 64 leaves, several levels, tables that shrink and grow
CASES = {
    "global": _faulty(scenario(nodes=6, replicas=37, workers=1, rho=0.9, requests=6000, info="global")),
    "local": _faulty(scenario(nodes=6, replicas=37, workers=2, rho=0.9, requests=6000, info="local", hop=0.002)),
    "stale": _faulty(scenario(nodes=6, replicas=37, workers=1, rho=0.85, requests=6000, info="stale:0.7")),
    "piggyback": _faulty(scenario(nodes=6, replicas=37, workers=1, rho=0.9, requests=6000, info="piggyback",
                                  hop=0.003, queue_limit=3)),
    "central": _faulty(scenario(nodes=5, replicas=23, workers=1, rho=0.95, requests=6000, mode="central")),
}


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> str:
    f = tmp_path_factory.mktemp("scan") / "least_load_scan.py"
    f.write_text(SCAN)
    return f"{f}:STRATEGY"


@pytest.fixture(params=["leaves", "blocks"])
def nodes(request, monkeypatch):
    """Both layouts of the index's bottom level: a node per leaf (a small index, as these are),
    and blocks of loadindex.BLOCK leaves (a large one; forced here)."""
    if request.param == "blocks":
        monkeypatch.setattr(loadindex, "SMALL", 0)
    lay = loadindex.layout(np.zeros(37, dtype=np.int64), 1, room=True, rows=6)
    assert (lay.nb[0] < lay.p[0]) == (request.param == "blocks")
    return request.param


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_index_makes_the_scans_decisions(case, scan, nodes):
    sc = CASES[case]
    a = simulate(sc, "least_load", trace=True, progress=False)
    b = simulate(sc, scan, trace=True, progress=False)
    ta, tb = a.trace, b.trace
    assert ta["task"].to_list() == tb["task"].to_list()
    assert ta["status"].to_list() == tb["status"].to_list()
    ra, rb = a.row(), b.row()
    assert rows_equal(ra, rb, ignore={"wall_s", "req_per_s", "strategy", "strategy_hash", "run_id", "params"}) == []
    assert ra["failed"] > 0 or ra.get("retried", 0) > 0, "the faults did not bite"


def test_the_index_keeps_the_scans_decisions_through_renumberings(scan, nodes):
    """100 tasks on 10 balancers' rows (`local`), crashing often: each rejoin takes the
    service's next leaf, and when the leaves' room (128 - 100) is used up the live tasks are
    renumbered and the trees rebuilt (loadindex.join). The replacements cross that room
    several times, and the decisions stay the scan's request by request."""
    sc = _faulty(scenario(nodes=10, replicas=100, workers=1, rho=0.9, requests=6000, info="local", hop=0.002))
    sc["faults"]["random"] = [{"target": "task", "mtbf": 40.0}]
    a = simulate(sc, "least_load", trace=True, progress=False)
    b = simulate(sc, scan, trace=True, progress=False)
    assert a.trace["task"].to_list() == b.trace["task"].to_list()
    assert a.trace["status"].to_list() == b.trace["status"].to_list()
    assert rows_equal(a.row(), b.row(), ignore={"wall_s", "req_per_s", "strategy", "strategy_hash", "run_id",
                                                "params"}) == []
    li_p = loadindex.layout(np.zeros(100, dtype=np.int64), 1, room=True).p
    joins = int(a.tasks["restarts"].sum())
    assert joins > 3 * (int(li_p[0]) - 100), f"{joins} rejoins: the leaves were not renumbered 3 times"


View = namedtuple("View", ["load_index", "index_map", "load"])


def _index(loads: list[int], gaps: list[int], block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A load index built here from its definition (docs/strategies.md): the candidates 0..n-1
    hold leaves in order, with `gaps[i]` empty leaves before candidate i; the tree's bottom node
    j is the least of block j's `block` leaves (+inf for an empty leaf), node 0 log2 of the
    leaves per block."""
    n = len(loads)
    leaves = []
    for i in range(n):
        leaves += [-1] * gaps[i] + [i]
    p = 1
    while p < len(leaves):
        p *= 2
    leaves += [-1] * (p - len(leaves))
    where = np.full(2 * p, -1, dtype=np.int32)
    where[:p] = leaves
    for q, k in enumerate(leaves):
        if k >= 0:
            where[p + k] = q
    nb = max(p // block, 1)
    bl = p // nb
    inf = np.iinfo(np.int32).max
    tree = np.full(2 * nb, inf, dtype=np.int32)
    tree[0] = bl.bit_length() - 1
    for j in range(nb):
        tree[nb + j] = min([loads[k] if k >= 0 else inf for k in leaves[j * bl:(j + 1) * bl]])
    for i in range(nb - 1, 0, -1):
        tree[i] = min(tree[2 * i], tree[2 * i + 1])
    return tree, where, np.asarray(loads, dtype=np.int32)


@njit
def _query(tree, where, load, off):
    cands = np.arange(load.shape[0], dtype=np.int32)
    return kit.least_load_indexed(cands, View(tree, where, load), off)


@pytest.mark.parametrize("block", [1, loadindex.BLOCK])
@settings(max_examples=400, deadline=None, derandomize=True)
@given(cells=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=1, max_size=90), off=st.integers(0, 127))
def test_the_tree_query_is_the_scan(block, cells, off):
    """On any loads, any gaps between the candidates' leaves and any offset, the index's answer
    is the scan's (first minimum round the list from the offset). Up to 90 candidates and 360
    gaps: trees of one block and of many, minima in the offset's own block, later ones and
    earlier ones."""
    loads = [c[0] for c in cells]
    n = len(loads)
    off %= n
    tree, where, load = _index(loads, [c[1] for c in cells], block)
    want = min(range(n), key=lambda j: (loads[(off + j) % n], j))
    assert _query(tree, where, load, off) == (off + want) % n
