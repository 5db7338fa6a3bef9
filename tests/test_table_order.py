"""The tables' order and the positions a strategy reads (docs/architecture.md, "Control events";
docs/strategies.md, "Going further"). A task leaving its service's table finds its place by a
binary search over `State.task_seq`; the other tasks' positions move only for a strategy that
declares `reads_position` (the default). The engine against the reference simulator with
crashes and deployments (tests/test_faults.py, tests/test_deploy.py) checks the order; here:
the declaration changes nothing in a run, positions are exact when declared, and a plugin that
reads them without declaring it is told so."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import lbbench
from lbbench.engine.run import simulate
from lbbench.errors import PluginError, StrategyError
from lbbench.strategy import resolve

from simcheck import WALL_COLUMNS, rows_equal, scenario

FAULTY = f"{Path(__file__).parent / 'plugins' / 'faulty.py'}:STRATEGY"

# Tables that change all the time: random crashes (mtbf 150 s over 12 tasks), a node down and
# up, a scale down and up, a rolling update; hops, so that requests reach dead tasks.
CHURN = copy.deepcopy(scenario(nodes=4, replicas=12, rho=0.7, hop=0.005, requests=6000))
CHURN.update(
    faults={"events": [{"at": 150.0, "kind": "node_down", "node": 1}, {"at": 260.0, "kind": "node_up", "node": 1}],
            "random": [{"target": "task", "mtbf": 150.0}]},
    health={"task_detect": 4.0, "node_detect": 6.0, "restart_delay": 2.0, "startup": 1.0, "grace": 1.0},
    deploy={"events": [{"at": 100.0, "kind": "scale", "service": "web", "replicas": 7},
                       {"at": 180.0, "kind": "scale", "service": "web", "replicas": 12},
                       {"at": 300.0, "kind": "update", "service": "web", "parallelism": 3, "delay": 2.0}]})


def _same_run(a, b):
    assert rows_equal(a.row(), b.row(), ignore=WALL_COLUMNS | {"run_id"}) == []
    for col in a.trace.columns:
        np.testing.assert_array_equal(a.trace[col].to_numpy(), b.trace[col].to_numpy(), err_msg=col)


@pytest.mark.parametrize("strategy", ["round_robin", "least_load"])
def test_declaring_reads_position_changes_nothing_in_a_run(strategy):
    spec = resolve(strategy)
    assert spec.reads_position is False
    lazy = simulate(CHURN, spec, trace=True, progress=False)
    exact = simulate(CHURN, dataclasses.replace(spec, reads_position=True), trace=True, progress=False)
    row = lazy.row()
    assert row["crashes"] >= 20 and row["failed"] > 0       # the tables did change, many times
    _same_run(lazy, exact)


def test_positions_are_exact_for_a_strategy_that_reads_them():
    # faulty's mode 12 checks every task's position at every decision and returns a
    # non-candidate (the run stops) at the first one that is wrong
    spec = dataclasses.replace(resolve(FAULTY), reads_position=True)
    res = simulate(CHURN, spec, {"mode": 12}, trace=True, progress=False)
    assert res.row()["crashes"] >= 20
    assert (res.trace["task"].to_numpy() >= 0).sum() > 5000


def test_a_plugin_reading_positions_it_did_not_declare_is_stopped_and_told():
    spec = resolve(FAULTY)
    assert spec.reads_position is False and spec.boundscheck
    with pytest.raises(StrategyError, match="IndexError.*declare reads_position=True"):
        simulate(CHURN, spec, {"mode": 11}, progress=False)
    rep = lbbench.check_strategy(FAULTY, {"mode": 11})
    assert any("declares reads_position=False but reads view.position" in f for f in rep.findings), rep.findings
    # (that the check passes a plugin whose declaration holds: tests/test_plugins.py)


@pytest.mark.parametrize("value", ["no", 1, None])
def test_reads_position_must_be_a_bool(value):
    with pytest.raises(PluginError, match="reads_position must be True or False"):
        dataclasses.replace(resolve("round_robin"), reads_position=value)
