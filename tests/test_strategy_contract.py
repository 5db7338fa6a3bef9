"""The engine's side of the strategy contract: every returned id is checked, a faulty plugin
gets a clear error naming it, and never corrupts the engine's memory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lbbench import StrategyError, UserError, simulate
from lbbench.model.cluster import build_cluster
from lbbench.model.scenario import load_scenario
from lbbench.strategy import resolve
from lbbench.model.workload import Workload

FAULTY = f"{Path(__file__).parent / 'plugins' / 'faulty.py'}:STRATEGY"
SMALL = {"cluster": {"nodes": 3}, "services": [{"replicas": 3}], "workload": {"rho": 0.5},
         "run": {"requests": 2000}}


def test_a_well_behaved_mode_runs():
    res = simulate(SMALL, FAULTY, {"mode": 0})
    assert res.row()["completed"] == res.row()["arrived"] > 0


@pytest.mark.parametrize("mode,value", [(1, 99), (2, -3)])
def test_non_candidate_is_refused_naming_plugin_request_value(mode, value):
    with pytest.raises(StrategyError) as exc:
        simulate(SMALL, FAULTY, {"mode": mode})
    msg = str(exc.value)
    assert "'faulty'" in msg and f"returned task {value}" in msg and "request 0" in msg
    err = exc.value         # the details as fields: no caller parses the message
    assert (err.strategy, err.kind, err.request, err.value) == ("faulty", "not_a_candidate", 0, value)


def test_a_task_of_another_service_is_refused():
    two = {"cluster": {"nodes": 2}, "workload": {"rho": 0.5}, "run": {"requests": 500},
           "services": [{"name": "a", "port": 80, "replicas": 2}, {"name": "b", "port": 81, "replicas": 2}]}
    with pytest.raises(StrategyError, match="'faulty' returned task 0"):
        simulate(two, FAULTY, {"mode": 5})


def test_out_of_bounds_inside_the_plugin_raises_instead_of_corrupting():
    with pytest.raises(StrategyError, match="'faulty' raised.*IndexError"):
        simulate(SMALL, FAULTY, {"mode": 3})


def test_a_plugin_that_raises_is_named():
    with pytest.raises(StrategyError, match="'faulty' raised.*boom") as exc:
        simulate(SMALL, FAULTY, {"mode": 4})
    err = exc.value
    assert (err.strategy, err.kind, err.request) == ("faulty", "raised", None)
    assert isinstance(err.value, ValueError) and str(err.value) == "boom"


@pytest.mark.parametrize("mode", [9, 10])
def test_a_division_by_zero_in_the_plugin_stops_the_run(mode):
    """The plugin compiles inside the kernel, under its error model: a float or integer division
    by zero raises (Python's semantics), rather than going on with inf, NaN or 0."""
    with pytest.raises(StrategyError, match="'faulty' raised.*ZeroDivisionError"):
        simulate(SMALL, FAULTY, {"mode": mode})


def test_state_is_per_balancer():
    """Two balancers (per_node mode, entry uniform over 2 nodes) each count their own decisions."""
    sc = {"cluster": {"nodes": 2}, "services": [{"replicas": 2}], "workload": {"rho": 0.3, "entry": "uniform"},
          "balancer": {"mode": "per_node"}, "run": {"requests": 400, "warmup": 0}}
    res = simulate(sc, FAULTY, {"mode": 0}, trace=True)
    scn = load_scenario(sc)
    entry = Workload(scn, build_cluster(scn), 0).chunk(400).entry
    tasks = res.trace["task"].to_numpy()
    for node in (0, 1):
        got = tasks[entry == node]
        assert len(got) > 100
        assert (got == np.arange(1, len(got) + 1) % 2).all()


def test_a_plain_python_function_is_compiled_and_runs(tmp_path):
    f = tmp_path / "plain.py"
    f.write_text("def select(cands, view, state, rng):\n    return cands[-1]\n")
    res = simulate(SMALL, f"{f}:select", trace=True)
    assert (res.trace["task"].to_numpy() == 2).all()


def test_params_are_validated_before_running():
    with pytest.raises(UserError, match="unknown parameter"):
        simulate(SMALL, FAULTY, {"x": 1})
    with pytest.raises(UserError, match="mode"):
        simulate(SMALL, FAULTY, {"mode": 13})
    with pytest.raises(UserError, match="whole number"):
        resolve(FAULTY).resolve_params({"mode": 1.5})
