"""A strategy's state size as a function of its parameters (docs/strategies.md, "Going further"):
the engine allocates exactly the size resolved for the run's values; a size too large for the
values given is one line naming the parameter; a function that fails names the plugin; the hash
sees the function's source. maglev's state follows M.

No kernel is compiled here: the engine's allocation is read from a run's set-up (`_Run`, which
builds the state the kernel gets), and maglev's tables from its own `build` and `lookup`. A run
of maglev's kernel with a table above the old cap of 65537 is in tests/test_strategies.py (it
shares that file's maglev kernel); the command-line cases are in tests/hostile/commands_api.txt.
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from lbbench.engine.run import _Run
from lbbench.errors import PluginError, UserError
from lbbench.experiments.checker import check_strategy
from lbbench.model.scenario import load_scenario
from lbbench.plugins.strategy import MAX_STATE_SIZE, resolve
from lbbench.strategies import maglev
from lbbench.strategy import Param, Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


def _exit(code):
    raise SystemExit(code)


def sized(state_size, default=1) -> Strategy:
    return Strategy(name="sized", select=select, reads_load=False, state_size=state_size,
                    params=(Param("k", default, 0, 10 ** 9, integer=True),))


def allocated(spec: Strategy, params: dict, overrides: dict | None = None) -> tuple[tuple[int, int], int]:
    """The shape of the strategy state the engine allocates for a run, and balancers x services."""
    sc = load_scenario("seed-mesh", overrides)
    run = _Run(sc, spec, spec.resolve_params(params), 1, False)
    return run.st.bal_state.shape, run.n_bal * run.cl.n_services


@pytest.mark.parametrize("k", [0, 1, 7, 1000])
def test_a_function_state_size_gets_exactly_that_many_slots(k):
    shape, rows = allocated(sized(lambda p: 2 + 3 * int(p["k"])), {"k": k})
    assert rows == 3 and shape == (rows, 2 + 3 * k)
    # two services, central: one balancer, two rows
    two = {"services": [{"name": "a", "port": 80}, {"name": "b", "port": 81}], "balancer.mode": "central"}
    assert allocated(sized(lambda p: 2 + 3 * int(p["k"])), {"k": k}, two)[0] == (2, 2 + 3 * k)


def test_a_whole_number_state_size_is_as_before():
    assert allocated(sized(17), {"k": 5})[0] == (3, 17)
    assert sized(17).state_size_for({"k": 5.0}) == 17


def test_maglev_state_follows_M_and_is_unchanged_at_the_default():
    spec = resolve("maglev")
    # the default M gives the 3 + 65537 values every maglev run had before M could change it
    assert allocated(spec, {})[0] == (3, 3 + 65537)
    assert allocated(spec, {"M": 251})[0] == (3, 3 + 251)
    assert spec.state_size_for(spec.resolve_params({"M": 6553621})) == 3 + 6553621
    assert spec.state_size_for(spec.resolve_params({"M": maglev.MAX_M})) == MAX_STATE_SIZE == 1 << 24
    with pytest.raises(UserError, match=r"parameter M = 16777259 is outside \[7, 16777213\]"):
        spec.resolve_params({"M": 16777259})


def test_maglev_builds_a_large_table():
    """M = 655373 (ten times the old cap) on 500 tasks, with the state the engine would give:
    every slot holds a candidate, each owns floor or ceil of M / n slots (Maglev's population),
    and a state one value short is refused rather than overrun."""
    spec = maglev.STRATEGY
    m = 655373
    cands = np.arange(500, dtype=np.int32)[::-1].copy()
    state = np.zeros(spec.state_size_for({"M": float(m)}))
    nxt = spec.task_state_array(1, 500)[0]
    maglev.build(cands, state, nxt, float(m))
    table = state[maglev.TABLE:].astype(np.int64)
    assert len(table) == m and state[2] == m
    owned = np.bincount(table, minlength=500)
    assert owned.min() == m // 500 and owned.max() == m // 500 + 1
    clients = np.arange(0, 200_000, 7)
    slots = [maglev.lookup(state, int(c)) for c in clients]
    assert set(slots) <= set(cands.tolist()) and len(set(slots)) == 500
    with pytest.raises(ValueError, match="beyond the state"):
        maglev.build(cands, np.zeros(maglev.TABLE + m - 1), nxt, float(m))


def test_too_large_a_size_names_the_parameter():
    spec = sized(lambda p: 1000 * int(p["k"]))
    assert spec.resolve_params({"k": 16777}) == {"k": 16777.0}
    with pytest.raises(UserError) as exc:
        spec.resolve_params({"k": 16778})
    assert not isinstance(exc.value, PluginError)
    msg = str(exc.value)
    assert msg == ("strategy sized: k = 16778 gives a state of 16,778,000 float64 per balancer and service, "
                   "above the limit 16,777,216: choose a smaller k")


@pytest.mark.parametrize("fn,said", [
    (lambda p: 1 if p["k"] < 3 else 1 // 0, "state_size(k=5) raised ZeroDivisionError"),
    (lambda p: 3 - int(p["k"]), "state_size(k=5) gave -2, outside [0, 16,777,216]"),
    (lambda p: 1 if p["k"] < 3 else 2.0, "state_size(k=5) must give a whole number (an int), gave 2.0"),
    (lambda p: 1 if p["k"] < 3 else True, "must give a whole number (an int), gave True"),
    (lambda p: 1 if p["k"] < 3 else _exit(3), "state_size(k=5) raised SystemExit: 3"),
], ids=["raises", "negative", "float", "bool", "exits"])
def test_a_failing_function_names_the_plugin(fn, said):
    spec = sized(fn)                        # fine at the default k = 1
    with pytest.raises(PluginError) as exc:
        spec.resolve_params({"k": 5})
    assert exc.value.plugin == "sized" and exc.value.field == "state_size"
    assert str(exc.value).startswith("strategy 'sized': ") and said in str(exc.value)
    assert "\n" not in str(exc.value)
    # lbbench check lists it as a finding, without compiling anything
    report = check_strategy(spec, {"k": 5})
    assert not report.ok and any(said in f for f in report.findings)


@pytest.mark.parametrize("fn,said", [
    (lambda p: 1 // 0, "state_size(k=1) raised ZeroDivisionError"),
    (lambda p: -1, "state_size(k=1) gave -1"),
    (lambda p: 1.0, "gave 1.0"),
    (lambda p: MAX_STATE_SIZE + 1, "gave 16,777,217, outside [0, 16,777,216]"),
    (lambda: 3, "a function of one argument"),
    (lambda p, q: 3, "a function of one argument"),
], ids=["raises", "negative", "float", "too-large", "no-argument", "two-arguments"])
def test_a_function_failing_at_the_defaults_is_refused_as_the_spec_is_built(fn, said):
    with pytest.raises(PluginError) as exc:
        sized(fn)
    assert exc.value.field == "state_size" and said in str(exc.value)


def test_the_hash_sees_the_function_by_its_source_not_its_address():
    a, b, c = (sized(eval(src)) for src in ("lambda p: 4 + int(p['k'])", "lambda p: 4 + int(p['k'])",
                                             "lambda p: 5 + int(p['k'])"))
    assert a.state_size is not b.state_size
    assert a.source_hash == b.source_hash != c.source_hash
    assert sized(4).source_hash != a.source_hash
