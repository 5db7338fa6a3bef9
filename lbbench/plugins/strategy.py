"""The strategy plugin API (docs/strategies.md; docs/architecture.md, "Specialisation per strategy") and the registry.

A strategy is a `Strategy` spec whose `select(cands, view, state, rng)` is compiled with numba
and inlined into the dispatch loop:

- `cands`  int32 array: the tasks of the request's service in this balancer's table;
- `view`   a `View` (see `lbbench.engine.View`): loads per the information model, task nodes
           and speeds, entry node, time, start offset, parameters, client id, service;
- `state`  float64[state_size]: this balancer's own state for this service, zero at start
           (`state_size` a whole number, or a function of the parameter values resolved
           before the run: `Strategy.state_size_for`);
- `rng`    uint64[1]: this balancer's random stream (draw with `lbbench.rng.uniform/integers`).

`view.params` holds the declared parameters by name (`view.params.d`; `view.params[0]` too),
`view.task_state` the balancer's per-task memory, float64[T, task_state], zero at start (the
engine sizes it to the run's tasks: no plugin caps task ids), and with `load_index=True`
`view.load_index` the load index (`kit.least_load_indexed`). It returns a task id that must
be one of `cands`; the engine checks it. Optional `on_complete(state, task, latency, now, view)`
runs inside the loop when a request this balancer sent completes (feedback strategies learn
only from completions that happened). `lbbench.plugins.kit` has the pieces the built-ins
share. A spec's declaration is checked when it is built (`PluginError`, docs/strategies.md).

Discovery (lazy, at first use): the entry-point group `lbbench.strategies` (an entry point
gives a `Strategy` or a list of them; lbbench's own built-ins come the same way), and paths
`FILE.py:NAME` for files that are not installed.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import keyword
import math
import numbers
import re
import sys
import warnings
from collections import namedtuple
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..errors import NotATaskId, PluginError, UserError

ENTRY_POINT_GROUP = "lbbench.strategies"
# services.N.demand.dist's values (lbbench/model/scenario.py, Demand), for Strategy.demand_dists
DEMAND_DISTS = ("exponential", "deterministic", "lognormal", "pareto", "hyperexp")

# Limits of a declaration (docs/strategies.md, "Going further").
MAX_STATE_SIZE = 1 << 24        # float64 per balancer and service (128 MB)
MAX_TASK_STATE = 1024           # float64 per balancer and task
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}")
# Parameter names the named tuple of `view.params` cannot take: its methods.
RESERVED_PARAM_NAMES = frozenset(n for n in dir(tuple) if not n.startswith("_"))


def _bound(x: float) -> str:
    """A parameter's bound in an error: a whole number in full (16777213, not 1.67772e+07)."""
    return str(int(x)) if abs(x) < 1e15 and x == int(x) else f"{x:g}"


@dataclass(frozen=True)
class Param:
    """A declared strategy parameter: a number with a default and an allowed range."""

    name: str
    default: float
    low: float = -math.inf
    high: float = math.inf
    integer: bool = False
    doc: str = ""

    def fault(self, value) -> str | None:
        """Why `value` is not allowed for this parameter, or None. Numbers only: a string or a
        bool is refused (no "2" or true for 2); an integer is fine for a real parameter."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"parameter {self.name} must be a number, got {value!r}"
        try:
            v = float(value)
        except OverflowError:
            v = math.inf if value > 0 else -math.inf
        if math.isnan(v) or not self.low <= v <= self.high:
            return f"parameter {self.name} = {value!r} is outside [{_bound(self.low)}, {_bound(self.high)}]"
        if self.integer and v != int(v):
            return f"parameter {self.name} must be a whole number, got {value!r}"
        return None

    def check(self, value, strategy: str) -> float:
        why = self.fault(value)
        if why is not None:
            raise UserError(f"strategy {strategy}: {why}")
        return float(value)


@dataclass(frozen=True, eq=False)
class Strategy:
    """Spec of one strategy plugin."""

    name: str
    select: Callable
    description: str = ""
    version: str = "1"
    params: tuple[Param, ...] = ()
    # float64 of `state` per balancer and service: a whole number, or a function of the
    # parameter values ({name: float}) giving one, resolved before a run (state_size_for)
    state_size: int | Callable[[Mapping[str, float]], int] = 1
    reads_load: bool = True
    reads_client: bool = False
    # the strategy reads view.position: the engine keeps every task's position in its table
    # exact, rewriting the later tasks' positions when a task leaves a table; False gives it an
    # empty view.position and spares that (docs/strategies.md, "Going further"). Not in the source
    # hash: results do not depend on it (with bounds checks, the default, a plugin reading the
    # empty array raises; `lbbench check` names the declaration)
    reads_position: bool = True
    on_complete: Callable | None = None
    # Compile the hooks with bounds checks, so that an out-of-range index inside the plugin
    # raises instead of corrupting memory. On by default; lbbench's built-ins, whose indices
    # are in range by construction and covered by the conformance tests, turn it off.
    boundscheck: bool = True
    # float64 per task the engine gives each balancer, as view.task_state[task, 0:task_state]
    task_state: int = 0
    # the engine keeps the load index (view.load_index, kit.least_load_indexed): the least
    # loaded candidate in O(log n), its upkeep O(log n) per load change
    load_index: bool = False
    # the engine fills view.work (each candidate's unfinished work) at every decision under
    # balancer.info = "work"; O(candidates x workers) per decision
    reads_work: bool = False
    # the demand distributions (services.N.demand.dist) the strategy can use, None: any; a run
    # with another, or a trace giving demands, is refused before it starts
    demand_dists: tuple[str, ...] | None = None
    ref: str = field(default="", compare=False)      # how to load it again (set by the registry)

    def __post_init__(self):
        faults = _faults(self)
        if faults:
            raise PluginError(self.name, faults)

    @cached_property
    def params_type(self):
        """The named tuple class of `view.params` (fields: the parameters' names, in declaration
        order), or None for a strategy without parameters (its view.params is an empty array)."""
        return namedtuple("Params", [p.name for p in self.params]) if self.params else None

    def param_tuple(self, values):
        """`view.params` for these parameter values (in declaration order), as the engine builds
        it: the named tuple of floats, or the float64 array when there are no parameters."""
        if self.params_type is None:
            return np.asarray(values, dtype=np.float64)
        return self.params_type(*(float(v) for v in values))

    def task_state_array(self, n_bal: int, n_tasks: int) -> np.ndarray:
        """Zeros for every balancer's `view.task_state`: (n_bal, n_tasks, task_state), or
        (n_bal, 0, 0) when the strategy keeps nothing per task."""
        k = self.task_state
        return np.zeros((n_bal, n_tasks if k else 0, k), dtype=np.float64)

    def resolve_params(self, given: dict | None) -> dict[str, float]:
        if given is not None and not isinstance(given, Mapping):
            raise UserError(f"strategy {self.name}: params must be a dict {{name: number}}, not {type(given).__name__}")
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        for k in given:
            if k not in known:
                names = ", ".join(known) or "none"
                raise UserError(f"strategy {self.name}: unknown parameter {k!r} (its parameters: {names})")
        values = {p.name: p.check(given.get(p.name, p.default), self.name) for p in self.params}
        self.state_size_for(values)             # a size these values make too large: refused here
        return values

    def state_size_for(self, values: Mapping[str, float]) -> int:
        """The float64 of `state` per balancer and service for these (resolved) parameter
        values: `state_size`, or its value at them when it is a function. A function that
        raises or gives no whole number in [0, MAX_STATE_SIZE] is a `PluginError` naming the
        plugin; a size too large for values other than the defaults is a `UserError` naming
        those parameters (the fix is to lower them)."""
        if not callable(self.state_size):
            return self.state_size
        size, why, too_large = _state_size_at(self.state_size, values)
        if why is None:
            return size
        changed = [p for p in self.params if values.get(p.name) != float(p.default)]
        if too_large and changed:
            given = ", ".join(f"{p.name} = {values[p.name]:g}" for p in changed)
            raise UserError(f"strategy {self.name}: {given} gives a state of {size:,} float64 per balancer and "
                            f"service, above the limit {MAX_STATE_SIZE:,}: choose a smaller "
                            f"{' or '.join(p.name for p in changed)}")
        raise PluginError(self.name, [("state_size", why)])

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
        h.update(repr((self.name, self.version, self.params, _size_key(self.state_size), self.task_state)
                      + ((True,) if self.load_index else ())
                      + (("work",) if self.reads_work else ())
                      + ((self.demand_dists,) if self.demand_dists is not None else ())).encode())
        return h.hexdigest()[:12]

    def summary_line(self) -> str:
        ps = ", ".join(f"{p.name}={p.default:g}" for p in self.params)
        desc = self.description.strip().splitlines()[0] if self.description.strip() else "(no description)"
        return f"{self.name} (v{self.version}{'; ' + ps if ps else ''}): {desc}"

    def __reduce__(self):
        # Pickle by reference: a worker process loads the plugin again from where it came.
        return (resolve, (self.ref or self.name,))


_HOOKS = (("select", 4, "(cands, view, state, rng)"), ("on_complete", 5, "(state, task, latency, now, view)"))


def _n_params(fn) -> int | None:
    """Number of positional parameters of a (jitted) function; None if it takes *args."""
    py = getattr(fn, "py_func", fn)
    try:
        sig = inspect.signature(py)
    except (TypeError, ValueError):
        return None
    ps = list(sig.parameters.values())
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in ps):
        return None
    return len(ps)


def _size_fault(name: str, value, low: int, high: int) -> str | None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not low <= value <= high:
        return f"{name} must be a whole number in [{low}, {high:,}], not {value!r}"
    return None


def _size_key(size):
    """`state_size` as the source hash sees it: the number itself, or a function by its source
    (its code where the source cannot be read), never by its address."""
    if not callable(size):
        return size
    try:
        text = inspect.getsource(size).encode()
    except (TypeError, OSError):
        code = getattr(size, "__code__", None)
        text = code.co_code + repr(code.co_consts).encode() if code is not None else repr(type(size)).encode()
    return "fn:" + hashlib.sha1(text).hexdigest()[:12]


def _state_size_at(fn, values: Mapping[str, float]) -> tuple[int | None, str | None, bool]:
    """(size, None, False) when a `state_size` function gives a whole number in [0,
    MAX_STATE_SIZE] at these parameter values, else (size or None, why in words, whether the
    only fault is a size above the limit)."""
    at = ", ".join(f"{k}={v:g}" for k, v in values.items())
    try:
        size = fn(dict(values))
    except (Exception, SystemExit) as exc:     # a plugin's function: any failure is its fault, named
        return None, f"state_size({at}) raised {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", False
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
        return None, f"state_size({at}) must give a whole number (an int), gave {size!r}", False
    if not 0 <= size <= MAX_STATE_SIZE:
        return int(size), (f"state_size({at}) gave {size:,}, outside [0, {MAX_STATE_SIZE:,}] float64 per "
                           "balancer and service"), size > MAX_STATE_SIZE
    return int(size), None, False


def _faults(spec: Strategy) -> list[tuple[str, str]]:
    """(field, sentence) for each fault of a spec's declaration and its hooks' signatures."""
    out = []
    if not isinstance(spec.name, str) or not spec.name.strip():
        out.append(("name", f"the spec has no name (got {spec.name!r}): give Strategy(name=...)"))
    elif not NAME_RE.fullmatch(spec.name):
        out.append(("name", f"name {spec.name!r} is not a valid strategy name: use letters, digits and _ . : - "
                            "(at most 128), e.g. 'my_strategy'"))
    if not isinstance(spec.version, str):
        out.append(("version", f"version must be a string, not {spec.version!r}"))
    for flag in ("load_index", "reads_work", "reads_position"):
        if not isinstance(getattr(spec, flag), bool):
            out.append((flag, f"{flag} must be True or False, not {getattr(spec, flag)!r}"))
    dists = spec.demand_dists
    if dists is not None and (not isinstance(dists, tuple) or not dists or not all(d in DEMAND_DISTS for d in dists)):
        out.append(("demand_dists", f"demand_dists must be None or a tuple of demand distributions "
                                    f"({', '.join(DEMAND_DISTS)}), not {dists!r}"))
    sizes = (("task_state", spec.task_state, MAX_TASK_STATE),)
    if callable(spec.state_size):
        if _n_params(spec.state_size) != 1:
            out.append(("state_size", "state_size must be a whole number or a function of one argument (the "
                                      "parameter values by name, e.g. lambda p: 3 + int(p['M']))"))
    else:
        sizes = (("state_size", spec.state_size, MAX_STATE_SIZE),) + sizes
    for name, value, high in sizes:
        why = _size_fault(name, value, 0, high)
        if why is not None:
            out.append((name, why))
    params = spec.params if isinstance(spec.params, (tuple, list)) else None
    if params is None or not all(isinstance(p, Param) for p in params):
        out.append(("params", "params must be a tuple of lbbench.strategy.Param"))
        params = ()
    names = [p.name for p in params]
    for p in params:
        n = p.name
        if not isinstance(n, str) or not n.strip():
            out.append(("params", f"a parameter has no name (got {n!r}): give Param(name, default, ...)"))
        elif not n.isidentifier() or keyword.iskeyword(n) or n.startswith("_"):
            out.append(("params", f"parameter name {n!r} is not a Python identifier (letters, digits, _; not a "
                                  "keyword, no leading _): it is read as view.params.NAME"))
        elif n in RESERVED_PARAM_NAMES:
            out.append(("params", f"parameter name {n!r} is a method of view.params (a named tuple): rename it"))
    dup = sorted({n for n in names if names.count(n) > 1}, key=str)
    if dup:
        out.append(("params", f"parameter name {dup[0]!r} is declared twice"))
    for p in params:
        why = p.fault(p.default)
        if why is not None:
            out.append(("params", f"the default of parameter {p.name} is not allowed by its own declaration: {why}"))
    if (callable(spec.state_size) and _n_params(spec.state_size) == 1
            and not any(f == "params" or f == "state_size" for f, _ in out)):
        why = _state_size_at(spec.state_size, {p.name: float(p.default) for p in params})[1]
        if why is not None:         # at the defaults: the declaration's own fault
            out.append(("state_size", why))
    for hook, want, args in _HOOKS:
        fn = getattr(spec, hook)
        if fn is None:
            if hook == "select":
                out.append((hook, "the spec has no select function"))
            continue
        if not callable(fn):
            out.append((hook, f"{hook} is a {type(fn).__name__}, not a function"))
            continue
        n = _n_params(fn)
        if n != want:
            got = "a variable number of" if n is None else str(n)
            out.append((hook, f"wrong signature: {hook} takes {got} parameters; it must take {want}: {hook}{args}"))
    return out


def spec_faults(spec: Strategy) -> list[str]:
    """What is wrong with a spec's declaration and its hooks' signatures, in plain words (empty
    when nothing): a valid name, whole `state_size` and `task_state` within their limits (a
    `state_size` function of one argument, giving such a number at the defaults),
    `Param`s with distinct identifier names whose defaults their own declarations allow,
    `select(cands, view, state, rng)` and `on_complete(state, task, latency, now, view)`.
    Building a `Strategy` with any raises `PluginError`; registering or resolving one checks
    again (a spec changed after it was built)."""
    return [text for _, text in _faults(spec)]


def _refuse_faulty(spec: Strategy) -> Strategy:
    """The spec, or a one-line `PluginError` naming the plugin and its faults."""
    faults = _faults(spec)
    if faults:
        raise PluginError(spec.name, faults)
    return spec


# --------------------------------------------------------------------------------------------
# Registry

_REGISTRY: dict[str, tuple[Strategy, str]] | None = None


def _entry_points():
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _register(reg: dict, spec, origin: str) -> None:
    if not isinstance(spec, Strategy):
        raise UserError(f"{origin} gives {type(spec).__name__}, not an lbbench.Strategy")
    _refuse_faulty(spec)
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
            except PluginError as exc:              # a spec refused as it was built: skipped, named
                warnings.warn(f"lbbench: strategy plugin from {origin} is skipped: {exc}", stacklevel=2)
                continue
            except (Exception, SystemExit) as exc:  # a broken plugin package must not break the others
                warnings.warn(f"lbbench: strategy plugin from {origin} failed to load: {exc.__class__.__name__}: {exc}", stacklevel=2)
                continue
            for spec in obj if isinstance(obj, (list, tuple)) else [obj]:
                try:
                    if isinstance(spec, Strategy):
                        _refuse_faulty(spec)
                except UserError as exc:    # a faulty spec is skipped like a package that fails to load
                    warnings.warn(f"lbbench: strategy plugin from {origin} is skipped: {exc}", stacklevel=2)
                    continue
                _register(reg, spec, origin)
        _REGISTRY = reg
    return _REGISTRY


def reset_registry() -> None:
    """Discover the plugins again at next use. (Compiled kernels stay: they are keyed by the
    plugin's source hash, so a changed plugin gets a new one.)"""
    global _REGISTRY
    _REGISTRY = None


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
        except PluginError:                        # a faulty spec, refused as it was built: named as such
            del sys.modules[mod_name]
            raise
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


def resolve(name: str | Strategy, *, faulty: bool = False) -> Strategy:
    """A registered name, FILE.py:NAME or a `Strategy` to its spec; a spec with a fault in its
    declaration (`spec_faults`) is refused unless `faulty` (`lbbench check` lists them)."""
    if isinstance(name, Strategy):
        spec = name
    elif not isinstance(name, str):
        raise UserError(f"strategy must be a registered name, 'FILE.py:NAME' or an lbbench.Strategy, not {name!r}")
    elif ".py:" in name or name.endswith(".py"):
        spec = _load_path(name)
    else:
        reg = registry()
        if name not in reg:
            raise UserError(f"unknown strategy {name!r}; known: {', '.join(sorted(reg))} (or FILE.py:NAME)")
        return reg[name][0]         # checked when registered
    return spec if faulty else _refuse_faulty(spec)


def name_clash(strategy: str | Strategy) -> str | None:
    """Why a file plugin's name is a problem, or None: a plugin named like a registered strategy
    would have its results filed under that strategy's name."""
    spec = resolve(strategy, faulty=True)       # about its name only: `lbbench check` lists its faults
    reg = registry()
    if spec.ref and spec.ref != spec.name and spec.name in reg:
        return (f"{spec.ref} is named {spec.name!r}, like the registered strategy from {reg[spec.name][1]}; "
                "their results would carry one name: rename the plugin (Strategy(name=...))")
    return None


# --------------------------------------------------------------------------------------------
# A plugin numba cannot compile, in one line

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def compile_failure(exc: BaseException | None) -> str | None:
    """Why numba could not compile a plugin, in one line (the first informative line of numba's
    message and the plugin's line it points at), or None when `exc` is no compile failure."""
    from numba.core.errors import NumbaError

    if not isinstance(exc, (NumbaError, NotATaskId)):
        return None
    text = _ANSI.sub("", str(exc))
    lines = [ln.strip() for ln in text.splitlines()]
    first = next((ln for ln in lines if ln and not ln.startswith("Failed in ") and not ln.startswith("During:")), "")
    where = ""
    for ln in lines:
        m = re.match(r'File "(.+)", line (\d+)', ln)
        if m and not ("lbbench/engine/" in m.group(1) or m.group(1).endswith("lbbench/rng.py")):
            where = f" ({m.group(1).rsplit('/', 1)[-1]} line {m.group(2)})"
            break
    first = _short_types(first or (text.splitlines()[0] if text else type(exc).__name__))
    return first + where


def _short_types(line: str) -> str:
    """'... of type View(array(int64, 1d, C), ...)' -> '... of type View': the fields are noise."""
    i = line.find("View(")
    if i < 0:
        return line
    depth, j = 0, i + 4
    while j < len(line):
        depth += {"(": 1, ")": -1}.get(line[j], 0)
        j += 1
        if depth == 0:
            break
    return line[:i + 4] + line[j:]
