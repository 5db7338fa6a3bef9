"""The strategy plugin API and the Python API under misuse: strictly typed parameters,
`simulate`'s seed, chunk and overrides checked like the scenario's keys, a spec `lbbench check`
calls faulty refused at load, a plugin numba cannot compile (or whose select returns no
integer) named in one line. Cheap command lines: tests/hostile/commands_api.txt and
tests/hostile/sweeps/api_*.toml (run by tests/test_hostile.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lbbench
from lbbench import strategy as S
from lbbench.cli import main
from lbbench.errors import PluginError, StrategyError, UserError
from lbbench.strategy import Param, Strategy, resolve

PLUGINS = Path(__file__).parent / "hostile" / "plugins"
SMALL = {"run.requests": 1000}


def sim(*args, **kw):
    kw.setdefault("overrides", SMALL)
    return lbbench.simulate("seed-mesh", *args, progress=False, prefetch=False, **kw)


def one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------------------------
# 5. Parameters are numbers: no strings, no bools; an integer parameter refuses 2.5

@pytest.mark.parametrize("value,why", [("2", "must be a number, got '2'"), (True, "must be a number, got True"),
                                       (False, "must be a number, got False"), (None, "must be a number"),
                                       (2.5, "must be a whole number, got 2.5"), (10**400, "is outside")],
                         ids=["str", "true", "false", "none", "2.5", "huge"])
def test_a_parameter_takes_numbers_only(value, why):
    with pytest.raises(UserError, match="strategy power_of_d: parameter d ") as exc:
        resolve("power_of_d").resolve_params({"d": value})
    assert why in one_line(exc)
    with pytest.raises(UserError, match=why.replace("(", r"\(").replace("*", r"\*")):
        sim("power_of_d", {"d": value})


def test_integers_serve_real_parameters_and_numpy_numbers_are_numbers():
    p = Param("w", 0.5, 0, 4)
    assert p.check(2, "x") == 2.0 and isinstance(p.check(2, "x"), float)
    assert p.check(np.float64(1.5), "x") == 1.5 and p.check(np.int64(3), "x") == 3.0
    assert resolve("power_of_d").resolve_params({"d": 3}) == {"d": 3.0}
    with pytest.raises(UserError, match="must be a number"):
        p.check(np.bool_(True), "x")


# --------------------------------------------------------------------------------------------
# 6. simulate's seed and chunk: checked like run.seed and run.chunk (they are their overrides)

@pytest.mark.parametrize("kw,key", [({"seed": 1.5}, "run.seed"), ({"seed": "1"}, "run.seed"),
                                    ({"seed": True}, "run.seed"), ({"seed": -1}, "run.seed"),
                                    ({"seed": 2**64}, "run.seed"), ({"chunk": "x"}, "run.chunk"),
                                    ({"chunk": 0}, "run.chunk"), ({"chunk": 2**40}, "run.chunk"),
                                    ({"chunk": 2.0}, "run.chunk")])
def test_seed_and_chunk_are_validated_like_the_scenario_keys(kw, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")) as exc:
        sim(**kw)
    one_line(exc)


def test_seed_and_chunk_keep_their_meaning():
    a = sim(seed=3, chunk=100, trace=True)
    b = sim(overrides={**SMALL, "run.seed": 3}, trace=True)
    assert a.row()["seed"] == 3 and a.row()["run_id"] == b.row()["run_id"]     # chunk is no part of a run's identity
    assert a.trace.equals(b.trace)
    assert sim(overrides={**SMALL, "run.seed": 3}, seed=4).row()["seed"] == 4  # the argument wins over the key


# --------------------------------------------------------------------------------------------
# 7. Misuse of the Python API is a UserError in one line, not a TypeError

@pytest.mark.parametrize("kw,msg", [
    ({"overrides": 5}, "overrides must be a dict"),
    ({"overrides": [3]}, "overrides: 3 is not a 'key=value' string"),
    ({"overrides": {5: 3}}, "overrides: key 5 is not a dotted key"),
    ({"overrides": ["run.requests"]}, "expected KEY=VALUE"),
    ({"strategy": 3}, "strategy must be a registered name"),
    ({"strategy": None}, "strategy must be a registered name"),
    ({"params": [2]}, "params must be a dict"),
    ({"params": "d=2"}, "params must be a dict"),
])
def test_python_api_misuse_is_a_user_error(kw, msg):
    with pytest.raises(UserError, match=msg) as exc:
        sim(**kw)
    one_line(exc)


def test_overrides_as_a_list_of_strings_still_work():
    assert sim(overrides=["run.requests=1000", "run.seed=2"]).row()["seed"] == 2


# --------------------------------------------------------------------------------------------
# 13, 14. A spec `lbbench check` calls faulty is refused at load, in one line naming it

def select4(cands, view, state, rng):
    return cands[0]


def select2(cands, view):
    return cands[0]


def done3(state, task, latency):
    pass


FAULTY_SPECS = [
    (dict(name="dup", select=select4, params=(Param("d", 2, 1, 4), Param("d", 3, 1, 4))), "parameter name 'd' is declared twice"),
    (dict(name="neg", select=select4, state_size=-5), "state_size must be a whole number in [0, 16,777,216], not -5"),
    (dict(name="huge", select=select4, state_size=1 << 30), "state_size must be a whole number in [0, 16,777,216]"),
    (dict(name="flt", select=select4, state_size=2.0), "state_size must be a whole number in [0, 16,777,216], not 2.0"),
    (dict(name="tneg", select=select4, task_state=-1), "task_state must be a whole number in [0, 1,024], not -1"),
    (dict(name="tbig", select=select4, task_state=4096), "task_state must be a whole number in [0, 1,024], not 4096"),
    (dict(name="tbool", select=select4, task_state=True), "task_state must be a whole number in [0, 1,024], not True"),
    (dict(name="a b", select=select4), "name 'a b' is not a valid strategy name"),
    (dict(name="x/y", select=select4), "name 'x/y' is not a valid strategy name"),
    (dict(name="pkw", select=select4, params=(Param("if", 2, 1, 4),)), "parameter name 'if' is not a Python identifier"),
    (dict(name="pdash", select=select4, params=(Param("max-age", 2, 1, 4),)), "'max-age' is not a Python identifier"),
    (dict(name="punder", select=select4, params=(Param("_fields", 2, 1, 4),)), "'_fields' is not a Python identifier"),
    (dict(name="pidx", select=select4, params=(Param("index", 2, 1, 4),)), "'index' is a method of view.params"),
    (dict(name="", select=select4), "the spec has no name"),
    (dict(name=7, select=select4), "the spec has no name"),
    (dict(name="nocall", select=3), "select is a int, not a function"),
    (dict(name="nosel", select=None), "the spec has no select function"),
    (dict(name="arity", select=select2), "select takes 2 parameters; it must take 4"),
    (dict(name="hook", select=select4, on_complete=done3), "on_complete takes 3 parameters; it must take 5"),
    (dict(name="dflt", select=select4, params=(Param("d", 100, 1, 4),)), "d = 100 is outside [1, 4]"),
    (dict(name="dstr", select=select4, params=(Param("d", "2", 1, 4),)), "the default of parameter d"),
    (dict(name="pname", select=select4, params=(Param("", 2, 1, 4),)), "a parameter has no name"),
    (dict(name="ptype", select=select4, params=({"d": 2},)), "params must be a tuple of lbbench.strategy.Param"),
    (dict(name="ver", select=select4, version=2), "version must be a string"),
]


@pytest.mark.parametrize("kw,fault", FAULTY_SPECS, ids=[str(k["name"]) or "empty" for k, _ in FAULTY_SPECS])
def test_a_faulty_spec_is_refused_as_it_is_built_naming_the_plugin(kw, fault):
    with pytest.raises(PluginError, match="^strategy ") as exc:
        Strategy(**kw)
    assert fault in one_line(exc)
    err = exc.value
    assert isinstance(err, UserError) and err.plugin == kw["name"]
    assert err.field in ("name", "version", "state_size", "task_state", "params", "select", "on_complete")
    assert any(fault in text for _, text in err.faults)


def test_a_spec_changed_after_it_was_built_is_refused_when_resolved():
    spec = Strategy(name="later", select=select4)
    object.__setattr__(spec, "task_state", -2)
    with pytest.raises(PluginError, match="strategy 'later': task_state must be a whole number") as exc:
        resolve(spec)
    assert exc.value.field == "task_state"


def test_several_faults_are_all_named_in_one_line():
    with pytest.raises(PluginError) as exc:
        Strategy(name="many", select=select2, state_size=-1)
    msg = one_line(exc)
    assert msg.startswith("strategy 'many': state_size must be") and "select takes 2 parameters" in msg
    assert [f for f, _ in exc.value.faults] == ["state_size", "select"]


def test_zero_sizes_are_allowed():
    spec = Strategy(name="nothing_kept", select=select4, state_size=0, task_state=0)
    assert spec.task_state_array(3, 10).shape == (3, 0, 0)
    assert Strategy(name="per_task", select=select4, task_state=2).task_state_array(3, 10).shape == (3, 10, 2)


def test_a_plugin_file_with_a_faulty_spec_is_refused_at_load():
    with pytest.raises(PluginError, match=r"strategy 'api_two_args:select': wrong signature: select takes 2"):
        resolve(f"{PLUGINS / 'api_two_args.py'}:select")
    with pytest.raises(PluginError, match=r"strategy 'api_negative_state': state_size") as exc:
        resolve(f"{PLUGINS / 'api_negative_state.py'}:STRATEGY")
    assert exc.value.plugin == "api_negative_state" and exc.value.field == "state_size"
    # not imported half-way: the module is not kept
    assert not any(getattr(m, "__file__", "") == str(PLUGINS / "api_negative_state.py") for m in list(sys.modules.values()))


def test_a_sweep_refuses_a_faulty_plugin_file(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text(f'scenario = "seed-mesh"\nseeds = [1]\n[set]\n"run.requests" = 1000\n[axes]\n'
                 f'strategy = ["round_robin", "{PLUGINS / "api_dup_param.py"}:STRATEGY"]\n')
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(f), "--workers", "1", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "'d' is declared twice" in err
    assert not out.exists() or not any(out.iterdir())


class _EP:
    def __init__(self, name, obj):
        self.name, self.value, self.dist, self._obj = name, f"pkg:{name}", None, obj

    def load(self):
        return self._obj


class _FaultyEP(_EP):
    """An entry point whose module builds a faulty spec as it is imported."""

    def load(self):
        return Strategy(**self._obj)


def test_an_installed_faulty_spec_is_warned_and_skipped(monkeypatch):
    good = Strategy(name="good", select=select4)
    changed = Strategy(name="changed", select=select4)
    object.__setattr__(changed, "name", "")         # faulty after it was built: caught when registered
    eps = [_FaultyEP("bad", dict(name="bad", select=select4, state_size=-5)), _EP("good", [good, changed])]
    monkeypatch.setattr(S, "_entry_points", lambda: eps)
    monkeypatch.setattr(S, "_REGISTRY", None)
    with pytest.warns(UserWarning, match=r"is skipped") as rec:
        reg = S.registry()
    assert set(reg) == {"good"}
    msgs = sorted(str(w.message) for w in rec)
    assert len(msgs) == 2 and "package pkg (entry point bad = pkg:bad) is skipped: strategy 'bad': state_size" in msgs[0]
    assert "strategy '': the spec has no name" in msgs[1]


# --------------------------------------------------------------------------------------------
# 13, 15. Compile failures and a select returning no integer: one line naming the plugin

def test_code_numba_cannot_type_is_one_line_naming_the_plugin():
    ref = f"{PLUGINS / 'api_typo.py'}:select"
    with pytest.raises(StrategyError) as exc:
        sim(ref)
    msg = one_line(exc)
    assert msg.startswith("strategy 'api_typo:select' cannot be compiled: Unknown attribute 'lod' of type View "
                          "(api_typo.py line 7); run lbbench check ")
    assert msg.endswith("api_typo.py:select for details")


def test_a_select_returning_a_float_is_refused_and_check_reports_it():
    ref = f"{PLUGINS / 'api_float_return.py'}:STRATEGY"
    for _ in range(2):      # the second time too (a kernel that failed to compile is never cached)
        with pytest.raises(StrategyError) as exc:
            sim(ref)
        assert "strategy 'api_float_return' cannot be compiled: select returns float64, not a task id " \
               "(an integer from cands)" in one_line(exc)
    rep = lbbench.check_strategy(ref)
    assert rep.findings == ["not compilable by numba: select returns float64, not a task id (an integer from cands)"]


def test_the_command_line_gives_one_line_and_exit_1_for_a_plugin_that_cannot_compile(tmp_path):
    for name, expect in (("api_float_return.py:STRATEGY", "select returns float64"),
                         ("api_typo.py:select", "Unknown attribute 'lod'")):
        p = subprocess.run([sys.executable, "-m", "lbbench", "run", "seed-mesh", "--strategy", str(PLUGINS / name),
                            "--requests", "1000", "--out", str(tmp_path / "out")], capture_output=True, text=True)
        err = p.stderr.strip()
        assert p.returncode == 1 and len(err.splitlines()) == 1 and expect in err, err


def test_numpy_numbers_serve_as_seed_chunk_and_override_values():
    # a notebook's seeds come from np.arange: the same run as with Python ints
    a = lbbench.simulate("seed-mesh", seed=np.int64(3), chunk=np.int32(500),
                 overrides={"run.requests": np.int64(3000), "workload.rho": np.float32(0.5)}, progress=False).row()
    b = lbbench.simulate("seed-mesh", seed=3, chunk=500, overrides={"run.requests": 3000, "workload.rho": float(np.float32(0.5))},
                 progress=False).row()
    assert a["seed"] == 3 and a["requests"] == 3000 and a["latency_mean"] == b["latency_mean"]
    with pytest.raises(UserError, match="run.seed"):
        lbbench.simulate("seed-mesh", seed=np.bool_(True), progress=False)
