"""Engine-allocated per-task state (`Strategy(task_state=K)`, `view.task_state`), parameters by
name (`view.params.NAME`), and no built-in capped by the number of tasks (docs/strategies.md)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lbbench.engine.run import _Run, simulate
from lbbench.model.scenario import load_scenario
from lbbench.strategy import names, resolve

from naive import simulate_naive

PER_TASK = f"{Path(__file__).parent / 'plugins' / 'per_task.py'}:STRATEGY"
SMALL = {"cluster": {"nodes": 3}, "services": [{"replicas": 4}, {"name": "b", "port": 81, "replicas": 3}],
         "workload": {"rho": 0.7}, "balancer": {"mode": "per_node", "rr_start": "random"},
         "network": {"hop": 0.01, "jitter": 0.005}, "run": {"requests": 1500}}


def test_task_state_is_allocated_per_balancer_and_task_and_kept_by_the_run():
    spec = resolve(PER_TASK)
    sc = load_scenario(SMALL)
    run = _Run(sc, spec, spec.resolve_params(None), 1, False)
    assert run.st.bal_task_state.shape == (3, 7, 2) and not run.st.bal_task_state.any()
    rr = resolve("round_robin")
    assert _Run(sc, rr, {}, 1, False).st.bal_task_state.shape == (3, 0, 0)


@pytest.mark.parametrize("ref", [PER_TASK, PER_TASK.replace(":STRATEGY", ":INLINED")], ids=["called", "inlined"])
def test_per_task_state_and_named_parameters_agree_with_the_reference_simulator(ref):
    """The engine and naive.py build the same View (task_state rows, the params named tuple):
    the same decisions request by request, and the per-task memory steers them, whether the
    hooks are called (bounds-checked) or inlined into the loop."""
    res = simulate(SMALL, ref, {"width": 3, "weight": 2.0}, seed=4, trace=True, progress=False)
    ref = simulate_naive(SMALL, ref, seed=4, params={"width": 3, "weight": 2.0})
    tasks = res.trace["task"].to_numpy()
    np.testing.assert_array_equal(tasks, ref.task)
    assert res.row()["completed"] == res.row()["arrived"] > 0
    # the least-heard-from rule spreads a balancer's requests evenly over each service's tasks
    served = res.tasks["served"].to_numpy()
    assert served.min() > 0.6 * served.mean()


def test_params_by_name_and_position_are_the_same_values():
    spec = resolve(PER_TASK)
    p = spec.param_tuple(np.array([3.0, 2.5]))
    assert p.width == p[0] == 3.0 and p.weight == p[1] == 2.5 and p._fields == ("width", "weight")
    assert resolve("round_robin").param_tuple(np.array([])).shape == (0,)


def _wide(mode: str) -> dict:
    return {"cluster": {"nodes": 3}, "services": [{"replicas": 20_000}],
            "workload": {"rho": 0.5, "clients": 5000},
            "balancer": {"mode": mode, "info": "global", "rr_start": "random"},
            "run": {"requests": 6000, "warmup": 0.0}}


@pytest.mark.parametrize("mode", ["per_node", "central"])
@pytest.mark.parametrize("name", names())
def test_every_builtin_runs_at_20000_tasks(name, mode):
    """Task ids and candidate lists past the old 4096 caps: no error, every request completed,
    the requests spread over many tasks, task ids past 4096 chosen. (The heap path, whose kernel
    every built-in has in the suite; the direct path takes the same ids.)"""
    res = simulate(_wide(mode), name, seed=2, progress=False, force_heap=True)     # default parameters
    row = res.row()
    assert row["tasks"] == 20_000
    assert row["completed"] == row["arrived"] == 6000 and row["failed"] == row["rejected"] == 0
    served = res.tasks["served"].to_numpy()
    used = np.flatnonzero(served)
    assert len(used) >= 1000, (name, len(used))
    assert used.max() >= 4096
    assert served.max() <= 60, (name, served.max())


def test_ring_hash_spreads_its_ring_over_a_large_service():
    """Past 65536 / points tasks each task gets floor(65536 / n) points: the same clients go to
    the same tasks as with that many points asked for explicitly."""
    a = simulate(_wide("central"), "ring_hash", seed=3, trace=True, progress=False, force_heap=True)
    b = simulate(_wide("central"), "ring_hash", {"points": 65536 // 20_000}, seed=3, trace=True, progress=False,
                 force_heap=True)
    np.testing.assert_array_equal(a.trace["task"].to_numpy(), b.trace["task"].to_numpy())
