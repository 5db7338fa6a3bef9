"""The strategy plugin API (DESIGN section 3) and the registry.

A strategy is a `Strategy` spec whose `select(cands, view, state, rng)` is compiled with numba
and inlined into the dispatch loop:

- `cands`  int32 array: the tasks of the request's service in this balancer's table;
- `view`   a `View` (see `lbbench.engine.View`): loads per the information model, task nodes
           and speeds, entry node, time, start offset, parameters, client id, service;
- `state`  float64[state_size]: this balancer's own state for this service, zero at start;
- `rng`    uint64[1]: this balancer's random stream (draw with `lbbench.rng.uniform/integers`).

It returns a task id that must be one of `cands`; the engine checks it. Optional
`on_complete(state, task, latency, now, view)` runs inside the loop when a request this
balancer sent completes (feedback strategies learn only from completions that happened).

Discovery (lazy, at first use): the entry-point group `lbbench.strategies` (an entry point
gives a `Strategy` or a list of them; lbbench's own built-ins come the same way), and paths
`FILE.py:NAME` for files that are not installed.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from numba import njit
from numba.core.registry import CPUDispatcher

from .errors import UserError

ENTRY_POINT_GROUP = "lbbench.strategies"


@dataclass(frozen=True)
class Param:
    """A declared strategy parameter: a number with a default and an allowed range."""

    name: str
    default: float
    low: float = -math.inf
    high: float = math.inf
    integer: bool = False
    doc: str = ""

    def check(self, value, strategy: str) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise UserError(f"strategy {strategy}: parameter {self.name} must be a number, got {value!r}") from None
        if math.isnan(v) or not self.low <= v <= self.high:
            raise UserError(f"strategy {strategy}: parameter {self.name} = {value!r} is outside [{self.low:g}, {self.high:g}]")
        if self.integer and v != int(v):
            raise UserError(f"strategy {strategy}: parameter {self.name} must be a whole number, got {value!r}")
        return v


@dataclass(frozen=True, eq=False)
class Strategy:
    """Spec of one strategy plugin."""

    name: str
    select: Callable
    description: str = ""
    version: str = "1"
    params: tuple[Param, ...] = ()
    state_size: int = 1
    reads_load: bool = True
    reads_client: bool = False
    on_complete: Callable | None = None
    # Compile the hooks with bounds checks, so that an out-of-range index inside the plugin
    # raises instead of corrupting memory. On by default; lbbench's built-ins, whose indices
    # are in range by construction and covered by the conformance tests, turn it off.
    boundscheck: bool = True
    ref: str = field(default="", compare=False)      # how to load it again (set by the registry)

    def resolve_params(self, given: dict | None) -> dict[str, float]:
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        for k in given:
            if k not in known:
                names = ", ".join(known) or "none"
                raise UserError(f"strategy {self.name}: unknown parameter {k!r} (its parameters: {names})")
        return {p.name: p.check(given.get(p.name, p.default), self.name) for p in self.params}

    @property
    def source_hash(self) -> str:
        """sha1 of the source file(s) defining the hooks: stored with every result row."""
        h = hashlib.sha1()
        for fn in (self.select, self.on_complete):
            if fn is None:
                continue
            py = getattr(fn, "py_func", fn)
            try:
                h.update(Path(inspect.getsourcefile(py)).read_bytes())
            except (TypeError, OSError):
                h.update(py.__code__.co_code)
        h.update(repr((self.name, self.version, self.params, self.state_size)).encode())
        return h.hexdigest()[:12]

    def summary_line(self) -> str:
        ps = ", ".join(f"{p.name}={p.default:g}" for p in self.params)
        desc = self.description.strip().splitlines()[0] if self.description.strip() else "(no description)"
        return f"{self.name} (v{self.version}{'; ' + ps if ps else ''}): {desc}"

    def __reduce__(self):
        # Pickle by reference: a worker process loads the plugin again from where it came.
        return (resolve, (self.ref or self.name,))


# --------------------------------------------------------------------------------------------
# Registry

_REGISTRY: dict[str, tuple[Strategy, str]] | None = None


def _entry_points():
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _register(reg: dict, spec, origin: str) -> None:
    if not isinstance(spec, Strategy):
        raise UserError(f"{origin} gives {type(spec).__name__}, not an lbbench.Strategy")
    if spec.name in reg:
        raise UserError(f"strategy name {spec.name!r} is registered twice: by {reg[spec.name][1]} and by {origin}; rename one")
    object.__setattr__(spec, "ref", spec.name)
    reg[spec.name] = (spec, origin)


def registry() -> dict[str, tuple[Strategy, str]]:
    """name -> (spec, origin), read from entry points at first use."""
    global _REGISTRY
    if _REGISTRY is None:
        reg: dict[str, tuple[Strategy, str]] = {}
        for ep in _entry_points():
            dist = getattr(ep, "dist", None)
            package = dist.name if dist is not None else ep.value.split(":")[0]
            origin = f"package {package} (entry point {ep.name} = {ep.value})"
            try:
                obj = ep.load()
            except (Exception, SystemExit) as exc:  # a broken plugin package must not break the others
                warnings.warn(f"lbbench: strategy plugin from {origin} failed to load: {exc.__class__.__name__}: {exc}", stacklevel=2)
                continue
            for spec in obj if isinstance(obj, (list, tuple)) else [obj]:
                _register(reg, spec, origin)
        _REGISTRY = reg
    return _REGISTRY


def reset_registry() -> None:
    global _REGISTRY
    _REGISTRY = None
    _COMPILED.clear()


def names() -> list[str]:
    return sorted(registry())


def _load_path(ref: str) -> Strategy:
    path_s, _, attr = ref.rpartition(":")
    if not path_s or not attr:
        raise UserError(f"strategy {ref!r}: write FILE.py:NAME (NAME is a Strategy or a select function)")
    path = Path(path_s).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"strategy file {path_s!r} does not exist")
    # Named by content, not by path: numba's disk cache of a compiled kernel refers to the
    # plugin's module by name, so the same file at another path (a copy, a fresh tmp folder)
    # must get the same name to reuse it; an edited file gets a new module.
    mod_name = "lbbench_user_" + hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    mod = sys.modules.get(mod_name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod
        try:
            spec.loader.exec_module(mod)
        except (Exception, SystemExit) as exc:     # sys.exit() in a plugin must not end lbbench with its code
            del sys.modules[mod_name]
            raise UserError(f"strategy file {path_s!r} failed to import: {exc.__class__.__name__}: {exc}") from None
    if not hasattr(mod, attr):
        raise UserError(f"strategy file {path_s!r} has no {attr!r}")
    obj = getattr(mod, attr)
    if isinstance(obj, Strategy):
        spec = obj
    elif callable(obj):
        spec = Strategy(name=f"{path.stem}:{attr}", select=obj, description=(inspect.getdoc(obj) or "").split("\n")[0])
    else:
        raise UserError(f"strategy {ref!r}: {attr} is neither a Strategy nor a function")
    object.__setattr__(spec, "ref", f"{path}:{attr}")
    return spec


def resolve(name: str | Strategy) -> Strategy:
    """A registered name, or FILE.py:NAME, to its spec."""
    if isinstance(name, Strategy):
        return name
    if ".py:" in name or name.endswith(".py"):
        return _load_path(name)
    reg = registry()
    if name not in reg:
        raise UserError(f"unknown strategy {name!r}; known: {', '.join(sorted(reg))} (or FILE.py:NAME)")
    return reg[name][0]


def name_clash(strategy: str | Strategy) -> str | None:
    """Why a file plugin's name is a problem, or None: a plugin named like a registered strategy
    would have its results filed under that strategy's name."""
    spec = resolve(strategy)
    reg = registry()
    if spec.ref and spec.ref != spec.name and spec.name in reg:
        return (f"{spec.ref} is named {spec.name!r}, like the registered strategy from {reg[spec.name][1]}; "
                "their results would carry one name: rename the plugin (Strategy(name=...))")
    return None


# --------------------------------------------------------------------------------------------
# Compilation: one specialised engine per strategy and process, cached on disk by numba.

_COMPILED: dict[tuple[str, bool, bool], Callable] = {}


def _jit(fn, boundscheck: bool):
    if fn is None:
        return None
    py = getattr(fn, "py_func", fn)
    if boundscheck:
        # Not inlined at numba's level: an inlined body would take the kernel's flags and lose
        # its bounds checks. LLVM may still inline the compiled function.
        return njit(boundscheck=True)(py)
    return njit(inline="always")(py)


def compiled_kernel(spec: Strategy, full: bool = True, direct: bool = False):
    """The dispatch kernel with this strategy inlined (compiled once per process); `full`:
    with failures and client retries, `direct`: the direct path (see engine.FULL, DIRECT)."""
    from . import engine

    # The module is part of the key: a cached kernel refers to the plugin's module by name.
    module = getattr(getattr(spec.select, "py_func", spec.select), "__module__", "")
    key = f"{spec.name}|{spec.source_hash}|{module}|bc{int(spec.boundscheck)}"
    k = _COMPILED.get((key, full, direct))
    if k is None:
        k = engine.specialise(key, _jit(spec.select, spec.boundscheck), _jit(spec.on_complete, spec.boundscheck),
                              full=full, direct=direct)
        _COMPILED[(key, full, direct)] = k
    return k
