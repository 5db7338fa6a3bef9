"""The public conformance check of a strategy plugin (`lbbench.check_strategy`, `lbbench check`).

It runs the plugin on a few small scenarios that exercise what the contract covers (one and
several balancers, one and two services, a single task, hops with jitter, the five
information models, several workers, a queue limit) and reports every contract fault it
finds, in plain words:

- (the declaration and the hooks' signatures are checked as the spec is built: a faulty spec
  raises `PluginError` before any of this, see docs/strategies.md; a spec changed after it was
  built is listed here, fault by fault);
- compilation with numba (the first line of numba's message and the plugin's line);
- a returned id that is not one of the request's candidates;
- an exception raised inside the plugin;
- determinism: two runs with the same seed (and different chunk sizes) decide the same;
- the declarations: a plugin declaring `reads_load=False` must not decide on `view.load`
  (the engine then does not track loads and reports zeros), and one declaring
  `reads_client=False` must not decide on `view.client` (the engine passes -1), and one
  declaring `reads_position=False` must not read `view.position` (the engine passes an empty
  array).

A plugin stuck in an endless loop hangs the check until Ctrl-C, which stops it (see simulate).
A bad reference (unknown name, missing file, file that fails to import) or bad parameter
values raise `UserError` instead: that is the caller's input, not the plugin's fault.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import PluginError, StrategyError, UserError
from ..plugins.strategy import Strategy, resolve, spec_faults

SEED = 7

SCENARIOS: dict[str, dict] = {
    "one central balancer, 5 tasks of mixed speeds, global information": {
        "cluster": {"nodes": 5, "speeds": [1.0, 0.5, 2.0, 1.0, 1.5]},
        "services": [{"replicas": 5}],
        "workload": {"rho": 0.8, "clients": 40},
        "balancer": {"mode": "central", "info": "global", "rr_start": "zero"},
        "run": {"requests": 4000},
    },
    "per-node balancers, two services, overlay hop with jitter, local information": {
        "cluster": {"nodes": 4},
        "services": [{"name": "a", "port": 80, "replicas": 3},
                     {"name": "b", "port": 81, "replicas": 2, "demand": {"dist": "lognormal", "mean": 0.5}}],
        "workload": {"rho": 0.7, "clients": 50, "client_dist": "zipf"},
        "network": {"hop": 0.01, "jitter": 0.005},
        "balancer": {"mode": "per_node", "info": "local", "rr_start": "random"},
        "run": {"requests": 4000},
    },
    "stale information, 2 workers per task, a queue limit": {
        "cluster": {"nodes": 3},
        "services": [{"replicas": 4, "workers": 2, "queue_limit": 1}],
        "workload": {"rho": 0.95},
        "balancer": {"mode": "central", "info": "stale:0.5"},
        "run": {"requests": 4000},
    },
    "work information (unfinished work per task), heavy-tailed demand, 2 workers per task": {
        "cluster": {"nodes": 3, "speeds": [1.0, 2.0, 0.5]},
        "services": [{"replicas": 3, "workers": 2, "demand": {"dist": "pareto", "alpha": 1.2, "ratio": 1e4}}],
        "workload": {"rho": 0.8},
        "balancer": {"mode": "central", "info": "work"},
        "run": {"requests": 4000},
    },
    "a single task, piggyback information": {
        "cluster": {"nodes": 1},
        "services": [{"replicas": 1}],
        "workload": {"rho": 0.5},
        "balancer": {"info": "piggyback"},
        "run": {"requests": 500},
    },
}
SECOND_CHUNK = 333          # the repeat run uses another chunk size: results must not change


@dataclass
class CheckReport:
    """What `check_strategy` found: `findings` (plain sentences, empty when clean), `passed`
    (what was checked and held), `ok`; `print(report)` shows both."""

    strategy: str
    ref: str
    passed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    _faults: dict = field(default_factory=dict, repr=False)     # fault -> scenarios it showed in

    @property
    def findings(self) -> list[str]:
        out = []
        for fault, where in self._faults.items():
            if not where:
                out.append(fault)
            elif len(where) == 1:
                out.append(f"{fault} [scenario '{where[0]}']")
            else:
                out.append(f"{fault} [scenario '{where[0]}' and {len(where) - 1} more]")
        return out

    @property
    def ok(self) -> bool:
        return not self._faults

    def add(self, fault: str, scenario: str | None = None) -> None:
        where = self._faults.setdefault(fault, [])
        if scenario is not None and scenario not in where:
            where.append(scenario)

    def format(self) -> str:
        lines = [f"checking strategy {self.strategy} ({self.ref})"]
        lines += [f"  ok      {p}" for p in self.passed]
        lines += [f"  FAULT   {f}" for f in self.findings]
        n = len(self._faults)
        lines.append(f"no contract faults found ({self.seconds:.1f} s)" if n == 0 else
                     f"{n} contract fault{'s' if n > 1 else ''} found ({self.seconds:.1f} s)")
        return "\n".join(lines)

    __str__ = format


def _check_spec(spec: Strategy, rep: CheckReport) -> bool:
    """The declaration and the hooks' signatures (`spec_faults`); False when any is wrong
    (`simulate` refuses such a spec)."""
    faults = spec_faults(spec)
    for fault in faults:
        rep.add(fault)
    if not faults:
        rep.passed.append("spec and signatures: select(cands, view, state, rng)"
                          + (", on_complete(state, task, latency, now, view)" if spec.on_complete is not None else ""))
    return not faults


def _trace(res) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tr = res.trace
    return tr["task"].to_numpy(), tr["status"].to_numpy(), tr["done"].to_numpy()


def _first_difference(a, b) -> int | None:
    ta, sa, da = a
    tb, sb, db = b
    same = (ta == tb) & (sa == sb) & ((da == db) | (np.isnan(da) & np.isnan(db)))
    bad = np.flatnonzero(~same)
    return int(bad[0]) if len(bad) else None


class _Stop(Exception):
    pass


def _run(spec, params, sc, rep: CheckReport, where: str, **kw):
    """One traced run; a contract fault becomes a finding and raises _Stop."""
    from ..engine.run import simulate
    try:
        return simulate(sc, spec, params, seed=SEED, trace=True, progress=False, **kw)
    except StrategyError as exc:
        cause = exc.__cause__
        if exc.kind == "compile":
            rep.add(f"not compilable by numba: {exc.value}")
            raise _Stop from None
        if exc.kind == "not_a_candidate":
            rep.add(f"returns a non-candidate: task {exc.value} for request {exc.request} "
                    "(select must return one of cands)", where)
        elif cause is not None:
            rep.add(f"raises {cause.__class__.__name__}: {str(cause).splitlines()[0] if str(cause) else ''}", where)
        else:
            rep.add(str(exc), where)
        return None
    except UserError:
        raise
    except Exception as exc:        # e.g. a state_size too large to allocate
        rep.add(f"a run failed: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", where)
        return None


def check_strategy(strategy: str | Strategy, params: dict | None = None) -> CheckReport:
    """Check a strategy (a `Strategy`, a registered name or "FILE.py:NAME") against the plugin
    contract on small scenarios; returns a `CheckReport` (`.ok`, `.findings`, `print(report)`).

    `params` are the strategy's parameters to check with (defaults otherwise). A reference
    that cannot be loaded, parameter values outside their declaration, or values giving a state
    above the limit, raise `UserError`; a `state_size` function failing at the values is a finding.
    """
    t0 = time.perf_counter()
    spec = resolve(strategy, faulty=True)
    rep = CheckReport(strategy=getattr(spec, "name", "?"), ref=spec.ref or spec.name)
    if not _check_spec(spec, rep):
        rep.seconds = time.perf_counter() - t0
        return rep
    try:
        pvals = spec.resolve_params(params)
    except PluginError as exc:      # a state_size function failing at these values: a finding
        for _, text in exc.faults:
            rep.add(text)
        rep.seconds = time.perf_counter() - t0
        return rep
    try:
        _check_runs(spec, pvals, rep)
    except _Stop:
        pass
    rep.seconds = time.perf_counter() - t0
    return rep


def _check_runs(spec: Strategy, pvals: dict, rep: CheckReport) -> None:
    t = time.perf_counter()
    names = list(SCENARIOS)
    first = {names[0]: _run(spec, pvals, SCENARIOS[names[0]], rep, names[0])}      # compiles the kernel
    rep.passed.append(f"compiles with numba (first run {time.perf_counter() - t:.1f} s; "
                      "compiled engines are cached on disk)")
    clean, decided, deterministic = 0, 0, True
    for name in names:
        a = first[name] if name in first else _run(spec, pvals, SCENARIOS[name], rep, name)
        first[name] = a
        b = _run(spec, pvals, SCENARIOS[name], rep, name, chunk=SECOND_CHUNK) if a is not None else None
        if b is None:
            continue
        ta, tb = _trace(a), _trace(b)
        i = _first_difference(ta, tb)
        if i is not None:
            deterministic = False
            rep.add("not deterministic: two runs with the same seed decide differently (keep all state in "
                    "`state`, draw only from `rng`)",
                    f"{name}: request {i} went to task {ta[0][i]}, then to {tb[0][i]}")
            continue
        decided += int((ta[0] >= 0).sum())
        clean += 1
    if clean == len(names):
        rep.passed.append(f"{len(names)} scenarios, each run twice with seed {SEED}: {decided:,} decisions, "
                          "every id a candidate, no exception, the same decisions both times")
    # The declarations: the same decisions with the undeclared input supplied.
    if not deterministic:
        return
    if not spec.reads_load and spec.on_complete is None and first[names[0]] is not None:
        b = _run(spec, pvals, SCENARIOS[names[0]], rep, names[0], force_heap=True)
        if b is not None and _first_difference(_trace(first[names[0]]), _trace(b)) is not None:
            rep.add("declares reads_load=False but decides on view.load (without it the engine does not track "
                    "loads and view.load is all zeros): declare reads_load=True")
        elif b is not None:
            rep.passed.append("reads_load=False holds: the same decisions when loads are tracked")
    if not spec.reads_client and first[names[1]] is not None:
        b = _run(dataclasses.replace(spec, reads_client=True), pvals, SCENARIOS[names[1]], rep, names[1])
        if b is not None and _first_difference(_trace(first[names[1]]), _trace(b)) is not None:
            rep.add("declares reads_client=False but decides on view.client (without it view.client is -1): "
                    "declare reads_client=True")
        elif b is not None:
            rep.passed.append("reads_client=False holds: the same decisions when client ids are given")
    if not spec.reads_position:
        # (without the declaration view.position is empty: a plugin reading it raises, its bounds
        # checked, in the first run; with it that run completes)
        quiet = CheckReport(strategy=rep.strategy, ref=rep.ref)
        b = _run(dataclasses.replace(spec, reads_position=True), pvals, SCENARIOS[names[0]], quiet, names[0])
        if first[names[0]] is None and b is not None:
            rep.add("declares reads_position=False but reads view.position (without it view.position is empty): "
                    "declare reads_position=True")
        elif b is not None and first[names[0]] is not None:
            rep.passed.append("reads_position=False holds: the same run completes when positions are given")
