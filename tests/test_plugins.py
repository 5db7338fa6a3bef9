"""Plugin discovery (entry points, faked; paths), duplicate refusal, broken packages, and the
public checker (`lbbench.check_strategy`, `lbbench check`) on plugins with each kind of fault.

The faults come from tests/plugins/faulty.py (one file, one compile, a `mode` parameter per
fault) and two tiny files written here (a wrong signature: no compile; a typo numba cannot
type: a few seconds of failed compilation, not cacheable)."""
from __future__ import annotations

import pickle
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import lbbench
from lbbench import strategy as S
from lbbench.cli import main
from lbbench.errors import PluginError, UserError
from lbbench.strategy import Param, Strategy

FAULTY = f"{Path(__file__).parent / 'plugins' / 'faulty.py'}:STRATEGY"


def invoke(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


# --------------------------------------------------------------------------------------------
# Discovery with a faked importlib.metadata

@dataclass
class FakeDist:
    name: str


class FakeEntryPoint:
    """What registry() uses of an importlib.metadata.EntryPoint: name, value, dist, load()."""

    def __init__(self, name, value, package, obj=None, error=None):
        self.name, self.value, self.group = name, value, S.ENTRY_POINT_GROUP
        self.dist = FakeDist(package)
        self._obj, self._error = obj, error
        self.loads = 0

    def load(self):
        self.loads += 1
        if self._error is not None:
            raise self._error
        return self._obj


def _real_builtin():
    [ep] = [e for e in S.importlib.metadata.entry_points(group=S.ENTRY_POINT_GROUP) if e.name == "builtin"]
    return FakeEntryPoint("builtin", ep.value, "lbbench", obj=ep.load())


def fancy_select(cands, view, state, rng):
    return cands[0]


FANCY = Strategy(name="fancy", select=fancy_select, version="3", description="a third-party plugin",
                 params=(Param("k", 4, 1, 9, integer=True),), reads_load=False)


@pytest.fixture
def fake_eps(monkeypatch):
    """Install fake entry points and a fresh registry (restored afterwards)."""
    def install(*eps):
        monkeypatch.setattr(S, "_entry_points", lambda: list(eps))
        monkeypatch.setattr(S, "_REGISTRY", None)
    return install


def test_import_lbbench_does_not_read_entry_points():
    code = textwrap.dedent(f"""
        import importlib.metadata as md
        calls = []
        real = md.entry_points
        def spy(*a, **k):
            if k.get("group") == {S.ENTRY_POINT_GROUP!r}:
                calls.append(k)
            return real(*a, **k)
        md.entry_points = spy
        import lbbench, lbbench.cli, lbbench.strategies
        assert calls == [] and lbbench.strategy._REGISTRY is None, calls
        assert "round_robin" in lbbench.strategy.names()
        assert len(calls) == 1
        lbbench.strategy.names()
        assert len(calls) == 1       # read once, then kept
        print("ok")
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_an_installed_package_appears_beside_the_builtins(fake_eps, capsys):
    fancy = FakeEntryPoint("fancy", "fancy_lb:STRATEGY", "fancy-lb", obj=[FANCY])
    fake_eps(_real_builtin(), fancy)
    assert fancy.loads == 0                                    # lazy: nothing read yet
    assert {"fancy", "round_robin", "maglev"} <= set(S.names())
    spec, origin = S.registry()["fancy"]
    assert spec is FANCY and "package fancy-lb" in origin and "fancy_lb:STRATEGY" in origin
    assert S.resolve("fancy") is FANCY and FANCY.ref == "fancy"
    code, out, _ = invoke(capsys, "strategies")
    assert code == 0
    assert "fancy (v3; k=4): a third-party plugin" in out.splitlines()
    assert fancy.loads == 1


def test_a_duplicate_name_is_refused_naming_both_sources(fake_eps):
    dup = Strategy(name="round_robin", select=fancy_select)
    fake_eps(_real_builtin(), FakeEntryPoint("rr", "dup_lb:RR", "dup-lb", obj=dup))
    with pytest.raises(UserError) as exc:
        S.registry()
    msg = str(exc.value)
    assert "'round_robin' is registered twice" in msg
    assert "package lbbench (entry point builtin" in msg and "package dup-lb (entry point rr = dup_lb:RR)" in msg


def test_a_broken_package_warns_with_its_name_and_the_others_still_load(fake_eps):
    broken = FakeEntryPoint("oops", "broken_lb:STRATEGY", "broken-lb", error=ImportError("No module named 'numpyy'"))
    fancy = FakeEntryPoint("fancy", "fancy_lb:STRATEGY", "fancy-lb", obj=FANCY)
    fake_eps(broken, _real_builtin(), fancy)
    with pytest.warns(UserWarning, match=r"package broken-lb .*failed to load: ImportError: No module named 'numpyy'"):
        reg = S.registry()
    assert "fancy" in reg and "round_robin" in reg and len(reg) >= 13


def test_an_entry_point_that_is_not_a_strategy_is_refused(fake_eps):
    fake_eps(FakeEntryPoint("junk", "junk_lb:X", "junk-lb", obj=42))
    with pytest.raises(UserError, match="package junk-lb .* gives int, not an lbbench.Strategy"):
        S.registry()


# --------------------------------------------------------------------------------------------
# Path loading

def test_path_loading_a_spec_and_a_bare_function(tmp_path, monkeypatch):
    f = tmp_path / "mine.py"
    f.write_text(textwrap.dedent('''
        from lbbench.strategy import Strategy

        def last(cands, view, state, rng):
            """Always the last candidate."""
            return cands[-1]

        SPEC = Strategy(name="mine", select=last, version="2")
    '''))
    spec = S.resolve(f"{f}:SPEC")
    assert spec.name == "mine" and spec.version == "2" and spec.ref == f"{f.resolve()}:SPEC"
    assert pickle.loads(pickle.dumps(spec)) is spec               # by reference: the same module
    bare = S.resolve(f"{f}:last")
    assert bare.name == "mine:last" and bare.description == "Always the last candidate."
    monkeypatch.chdir(tmp_path)
    assert S.resolve("./mine.py:SPEC") is spec                    # relative paths too
    with pytest.raises(UserError, match="has no 'NOPE'"):
        S.resolve(f"{f}:NOPE")
    with pytest.raises(UserError, match="does not exist"):
        S.resolve(f"{tmp_path / 'absent.py'}:SPEC")
    bad = tmp_path / "bad.py"
    bad.write_text("import numpyy\n")
    with pytest.raises(UserError, match="failed to import: ModuleNotFoundError"):
        S.resolve(f"{bad}:SPEC")


# --------------------------------------------------------------------------------------------
# The checker

def test_check_strategy_is_public_and_passes_a_good_plugin():
    assert "check_strategy" in lbbench.__all__
    rep = lbbench.check_strategy(FAULTY, {"mode": 0})
    assert rep.ok and rep.findings == [] and rep.strategy == "faulty"
    text = str(rep)
    assert "no contract faults found" in text and "reads_load=False holds" in text and "reads_client=False holds" in text
    assert "reads_position=False holds" in text


@pytest.mark.parametrize("mode,fault", [
    (1, r"returns a non-candidate: task 99 for request 0 .*\[scenario '.+' and 4 more\]"),
    (5, r"returns a non-candidate: task 0 for request \d+ .*\[scenario 'per-node balancers, two services"),
    (3, r"raises IndexError: index is out of bounds"),
    (4, r"raises ValueError: boom"),
    (6, r"not deterministic: two runs with the same seed decide differently .*request \d+ went to task"),
    (7, r"declares reads_load=False but decides on view.load"),
    (8, r"declares reads_client=False but decides on view.client"),
])
def test_each_contract_fault_is_reported_in_plain_words(mode, fault):
    rep = lbbench.check_strategy(FAULTY, {"mode": mode})
    assert not rep.ok
    assert len(rep.findings) == 1, rep.findings
    assert re.search(fault, rep.findings[0]), rep.findings[0]
    assert "FAULT" in str(rep) and "1 contract fault found" in str(rep)


def test_wrong_signature_is_refused_as_the_file_loads_without_compiling(tmp_path):
    f = tmp_path / "three.py"
    f.write_text("def select(cands, view, state):\n    return cands[0]\n"
                 "def done(state, task):\n    pass\n"
                 "from lbbench.strategy import Strategy\n"
                 "S = Strategy(name='three', select=select, on_complete=done)\n")
    with pytest.raises(PluginError) as exc:
        lbbench.check_strategy(f"{f}:S")
    assert exc.value.plugin == "three" and exc.value.field == "select"
    assert [text for _, text in exc.value.faults] == [
        "wrong signature: select takes 3 parameters; it must take 4: select(cands, view, state, rng)",
        "wrong signature: on_complete takes 2 parameters; it must take 5: on_complete(state, task, latency, now, view)"]


def test_a_bad_declaration_is_refused_as_it_is_built():
    with pytest.raises(PluginError) as exc:
        Strategy(name="decl", select=fancy_select, state_size=-1, task_state=-2,
                 params=(Param("a", 5, 0, 1), Param("b", 1), Param("b", 2)))
    found = str(exc.value)
    assert found.startswith("strategy 'decl': ") and "\n" not in found
    assert "state_size must be a whole number in [0, 16,777,216], not -1" in found
    assert "task_state must be a whole number in [0, 1,024], not -2" in found
    assert "parameter name 'b' is declared twice" in found
    assert "the default of parameter a is not allowed by its own declaration" in found
    assert [f for f, _ in exc.value.faults] == ["state_size", "task_state", "params", "params"]


def test_code_numba_cannot_compile_is_reported_with_its_line(tmp_path):
    f = tmp_path / "typo.py"
    f.write_text("from numba import njit\n\n\n@njit\ndef select(cands, view, state, rng):\n"
                 "    return cands[view.lod[0] % cands.shape[0]]\n")
    rep = lbbench.check_strategy(f"{f}:select")
    assert rep.findings == ["not compilable by numba: Unknown attribute 'lod' of type View (typo.py line 6)"]


def test_check_cli_exit_codes(capsys, tmp_path):
    code, out, _ = invoke(capsys, "check", FAULTY)
    assert code == 0 and "no contract faults found" in out
    code, out, _ = invoke(capsys, "check", FAULTY, "--param", "mode=1")
    assert code == 1 and "FAULT   returns a non-candidate" in out
    code, _, err = invoke(capsys, "check", str(tmp_path / "nothere.py") + ":select")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    code, _, err = invoke(capsys, "check", "no_such_strategy")
    assert code == 2 and "unknown strategy 'no_such_strategy'" in err
    code, _, err = invoke(capsys, "check", FAULTY, "--param", "mode=13")
    assert code == 2 and "mode" in err


def test_every_result_row_records_version_and_source_hash(tmp_path):
    spec = S.resolve(FAULTY)
    row = lbbench.simulate("seed-mesh", spec, overrides={"run.requests": 200}, progress=False).row()
    assert row["strategy_version"] == spec.version == "1"
    assert row["strategy_hash"] == spec.source_hash and len(spec.source_hash) == 12
    f = tmp_path / "v.py"
    f.write_text("from lbbench.strategy import Strategy\n"
                 "def select(cands, view, state, rng):\n    return cands[0]\n"
                 "S = Strategy(name='v', select=select, version='7')\n")
    v = S.resolve(f"{f}:S")
    before = v.source_hash
    f.write_text(f.read_text() + "# an edit changes the hash\n")
    assert v.source_hash != before


def test_reset_registry_discovers_the_plugins_again():
    """reset_registry forgets the discovered plugins (and only them): the next lookup finds the
    built-ins again."""
    from lbbench.strategy import registry, reset_registry
    before = set(registry())
    reset_registry()
    assert set(registry()) == before and "round_robin" in before
