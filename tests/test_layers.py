"""The layer rule (docs/architecture.md, "Layers and the import rule"), read from the source.

Every module under lbbench/ is parsed with `ast`; its imports (at module level, inside
functions and under TYPE_CHECKING alike) must point down the layers:

    errors, jitcache, rng  <  model  <  plugins  <  engine  <  results  <  experiments  <  cli

A layer imports from itself and the layers below it. The public facade (`lbbench/__init__.py`
and the aliases `lbbench/strategy.py`, `lbbench/analysis.py`) is exempt and may not be imported
from inside the package, except the version constants the root package defines before anything
else (`__version__`, `SCHEMA_VERSION`): Python has run `lbbench/__init__.py` before any submodule.
"""
from __future__ import annotations

import ast
import itertools
import textwrap
from pathlib import Path

import pytest

import lbbench

PKG = Path(lbbench.__file__).parent
FACADE = {"lbbench", "lbbench.strategy", "lbbench.analysis"}
ROOT_CONSTANTS = {"__version__", "SCHEMA_VERSION"}
BASE = {"errors", "jitcache", "rng"}
ALLOWED = {
    "errors": set(),
    "jitcache": set(),
    "rng": {"errors", "jitcache"},
    "model": BASE | {"model"},
    "plugins": BASE | {"model", "plugins"},
    "engine": BASE | {"model", "plugins", "engine"},
    "results": BASE | {"model", "plugins", "engine", "results"},
    "experiments": BASE | {"model", "plugins", "engine", "results", "experiments"},
}


def module_name(path: Path, root: Path = PKG) -> str:
    parts = ("lbbench",) + path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules(root: Path = PKG) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def layer(mod: str) -> str | None:
    """The layer of an lbbench module; None for the facade, `cli` for the command line."""
    parts = mod.split(".")
    if mod in FACADE:
        return None
    if parts[1] in ("cli", "__main__"):
        return "cli"
    return parts[1]


def imports_of(path: Path, mod: str, known: set[str]) -> list[tuple[int, str, str | None]]:
    """(line, imported lbbench module, name taken from the root package or None) for every import
    in the file, wherever it stands; relative imports resolved against the module's package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "lbbench"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base.split(".")[0] != "lbbench":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in known:                 # `from .. import rng`: the module itself
                    out.append((node.lineno, sub, None))
                else:                            # `from ..model.faults import X`: the module it is in
                    out.append((node.lineno, base, a.name if base == "lbbench" else None))
    return out


def violations(modules: dict[str, Path], root: Path = PKG) -> list[str]:
    known = set(modules)
    bad = []
    for mod, path in modules.items():
        src = layer(mod)
        if src is None or src == "cli":
            continue
        for line, target, name in imports_of(path, mod, known):
            where = f"{path.relative_to(root).as_posix()}:{line}"
            if target == "lbbench" and name in ROOT_CONSTANTS:
                continue
            dst = layer(target)
            if dst is None:
                bad.append(f"{where}: {mod} ({src}) imports the facade {target}{'.' + name if name else ''}")
            elif dst not in ALLOWED.get(src, set()):
                bad.append(f"{where}: {mod} ({src}) imports {target} ({dst})")
    return bad


def test_every_module_has_a_layer():
    for mod in all_modules():
        assert layer(mod) in set(ALLOWED) | {"cli", None}, mod


def test_imports_point_down_the_layers():
    assert violations(all_modules()) == []


def test_engine_modules_import_no_circle():
    modules = all_modules()
    engine = {m: p for m, p in modules.items() if m.startswith("lbbench.engine")}
    graph = {m: {t for _, t, _ in imports_of(p, m, set(modules)) if t in engine and t != m} for m, p in engine.items()}
    assert find_cycle(graph) is None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_rule_catches_what_it_should(tmp_path):
    """The checker on a made-up package: every kind of import it must see, and must not flag."""
    pkg = tmp_path / "lbbench"
    files = {
        "__init__.py": "__version__ = '0'\nSCHEMA_VERSION = 1\n",
        "errors.py": "",
        "rng.py": "from .errors import UserError\n",
        "model/__init__.py": "",
        "model/scenario.py": "from .. import rng\nfrom ..errors import UserError\n",
        "model/bad.py": "def f():\n    from ..engine.run import simulate\n",             # in a function
        "plugins/__init__.py": "",
        "plugins/strategy.py": "import lbbench.model.scenario\nfrom ..results import store\n",  # line 2 up
        "engine/__init__.py": "",
        "engine/run.py": "from .. import __version__\nfrom .. import simulate\nfrom . import kernel\n",
        "engine/kernel.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .run import X\n",
        "results/__init__.py": "",
        "results/store.py": "from ..engine.run import X\nfrom lbbench.strategy import Strategy\n",
        "experiments/__init__.py": "",
        "experiments/sweep.py": "from ..results import store\nfrom ..cli import main\n",
        "cli.py": "from .experiments import sweep\n",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(textwrap.dedent(text))
    modules = all_modules(pkg)
    bad = sorted(violations(modules, pkg))
    assert bad == [
        "engine/run.py:2: lbbench.engine.run (engine) imports the facade lbbench.simulate",
        "experiments/sweep.py:2: lbbench.experiments.sweep (experiments) imports lbbench.cli (cli)",
        "model/bad.py:2: lbbench.model.bad (model) imports lbbench.engine.run (engine)",
        "plugins/strategy.py:2: lbbench.plugins.strategy (plugins) imports lbbench.results.store (results)",
        "results/store.py:2: lbbench.results.store (results) imports the facade lbbench.strategy",
    ]
    engine = {m: p for m, p in modules.items() if m.startswith("lbbench.engine")}
    graph = {m: {t for _, t, _ in imports_of(p, m, set(modules)) if t in engine and t != m} for m, p in engine.items()}
    assert find_cycle(graph) in (["lbbench.engine.kernel", "lbbench.engine.run", "lbbench.engine.kernel"],
                                 ["lbbench.engine.run", "lbbench.engine.kernel", "lbbench.engine.run"])


# ---- the public facade


def test_facade_names_resolve():
    from lbbench.strategy import Param, Strategy
    import lbbench.analysis
    import lbbench.engine
    import lbbench.plugins.strategy
    import lbbench.rng
    import lbbench.strategy

    assert lbbench.strategy is lbbench.plugins.strategy
    assert Strategy is lbbench.plugins.strategy.Strategy and Param is lbbench.plugins.strategy.Param
    import lbbench.results.analysis
    assert lbbench.analysis is lbbench.results.analysis
    from lbbench.engine.run import simulate
    from lbbench.model.scenario import load_scenario
    from lbbench.engine.kernel import View
    assert lbbench.simulate is simulate
    assert lbbench.load_scenario is load_scenario
    assert callable(lbbench.analysis.load)
    assert lbbench.engine.View is View
    assert callable(lbbench.rng.integers)


def test_facade_refuses_unknown_names():
    import lbbench.engine

    for mod in (lbbench, lbbench.engine):
        with pytest.raises(AttributeError, match="no_such_name"):
            getattr(mod, "no_such_name")


def test_every_cached_function_is_stamped_with_the_packages_source(tmp_path):
    """Every lbbench module that caches a compiled function installs the stamped cache locator
    first (lbbench/jitcache.py), so each of its cached dispatchers carries the hash of what
    compiled code is made of; and the hash changes when one of those files changes (a copy of
    the package, one file edited)."""
    import importlib
    import shutil

    from numba.core.registry import CPUDispatcher

    from lbbench import jitcache
    cached = [mod for mod, path in all_modules().items() if "cache=True" in path.read_text()]
    assert "lbbench.engine.requests" in cached and "lbbench.engine.control" in cached
    seen = 0
    for mod in cached:
        m = importlib.import_module(mod)
        for obj in vars(m).values():
            disp = getattr(obj, "dispatcher", obj)      # a function compiled apart wraps its dispatcher
            if isinstance(disp, CPUDispatcher) and disp._cache is not None and getattr(disp._cache, "_impl", None):
                loc = disp._cache._impl.locator
                assert isinstance(loc, jitcache.Stamped), (mod, obj)
                assert loc.get_source_stamp()[1] == jitcache.SOURCE_HASH
                seen += 1
    assert seen > 20
    copy = tmp_path / "lbbench"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert jitcache.source_hash(copy) == jitcache.SOURCE_HASH
    f = copy / "engine" / "requests.py"
    f.write_text(f.read_text() + "\n# edited\n")
    assert jitcache.source_hash(copy) != jitcache.SOURCE_HASH
