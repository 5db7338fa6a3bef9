"""How the engine calls a strategy: inlined into a kernel per strategy (lbbench's way) against one
kernel for every strategy that calls the plugin through a first-class function type.

    python benchmarks/perf/calling.py [--strategies round_robin,least_load] [--rounds N]

(strategies without an on_complete hook or declared parameters: round_robin, least_load, random)

Which is better is a design choice; this measures both on the `reference` preset. The
first-class kernel is built here from the engine's own `_kernel`, with the strategy hook made an
argument typed `FunctionType(int32(cands, View, state, rng))` instead of a global that numba
inlines; everything else is the same code. Each variant runs in a fresh process with an empty
compile cache, alternately, N rounds: the first run's time (compile included), then ns per
simulated request (best of two runs), and the runs' mean latencies, which must be identical.

The first-class kernel cannot be cached on disk here (numba caches functions that have a source
file), so its first run compiles the whole kernel; the script also times the compile of the
plugin alone for the first-class signature, which is what a new plugin would cost once such a
kernel was cached.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[3])
import calling
import lbbench
from lbbench.engine import run as simulation
strategy, variant = sys.argv[1], sys.argv[2]
if variant == "first-class":
    simulation.compiled_kernel = calling.first_class_kernel
t = time.perf_counter()
lbbench.simulate("reference", strategy, overrides={"run.requests": 10_000}, progress=False)
first = time.perf_counter() - t
n = 10_000_000 if strategy in ("round_robin", "random") else 2_000_000
best = float("inf")
for _ in range(2):
    t = time.perf_counter()
    r = lbbench.simulate("reference", strategy, overrides={"run.requests": n, "run.warmup": 0.0}, progress=False,
                     prefetch=False)
    best = min(best, time.perf_counter() - t)
plugin = calling.plugin_compile_time(strategy) if variant == "first-class" else float("nan")
print(first, best / n * 1e9, plugin, repr(r.row()["latency_mean"]))
"""


def _view_type(full: bool = True):
    """The numba type of the View the first-class kernel builds (every scalar field int64 or
    float64, every array C; `weight` is the engine's constant empty array, read-only, in a kernel
    without failures: kernel._weights)."""
    import numpy as np
    from numba import typeof

    from lbbench.engine.kernel import View
    a = np.zeros(1)
    i32 = np.zeros(0, np.int32)
    weight = np.zeros(0)
    weight.setflags(write=bool(full))
    return typeof(View(np.zeros(1, np.int32), np.zeros(1, np.int32), a, 0, 0.0, 0, a, 0, 0, np.zeros((0, 0)), i32, a, a,
                       weight, 0.0, a, np.zeros((0, 4)), i32, np.zeros(0, np.int64)))


def select_signature(full: bool = True):
    import numpy as np
    from numba import typeof
    from numba import types as nbtypes
    return nbtypes.int32(typeof(np.zeros(1, np.int32)), _view_type(full), typeof(np.zeros(1)), typeof(np.zeros(1, np.uint64)))


def shared_kernel(select, full: bool, direct: bool, load_index: bool = False, reads_work: bool = False):
    """The engine's kernel with `_select` an argument of first-class function type (the functions
    a hookless strategy's kernel shares, specialise._shared, shared the same way)."""
    import inspect
    import textwrap
    import types

    import numpy as np
    from numba import njit, typeof
    from numba import types as nbtypes

    from lbbench.engine import kernel as engine
    from lbbench.engine import specialise
    from lbbench.engine.lowlevel import RunStateCompiler

    src = textwrap.dedent(inspect.getsource(engine._kernel.py_func)).replace("@njit(cache=True)\n", "")
    edits = [
        ("def _kernel(cfg, st, met, arr, first, until):", "def _kernel(cfg, st, met, arr, first, until, sel):"),
        ("view = View(load, cfg.task_node, cfg.task_speed, e, now, cfg.bal_start[b], _params(cfg.params), client, s,\n"
         "                        st.bal_task_state[b], tree_of(cfg, st, b, us), node_load_of(cfg, st, b), cfg.node_cores,\n"
         "                        _weights(st), dem, st.work, cfg.dem_dist, map_of(cfg, us), cfg.table_pos)",
         "view = View(load, cfg.task_node, cfg.task_speed, np.int64(e), np.float64(now), np.int64(cfg.bal_start[b]), "
         "cfg.params, np.int64(client), np.int64(s), st.bal_task_state[b], tree_of(cfg, st, b, us), "
         "node_load_of(cfg, st, b), cfg.node_cores, _weights(st), np.float64(dem), st.work, cfg.dem_dist, "
         "map_of(cfg, us), cfg.table_pos)"),
        ("k = _task_id(_select(cands, view,", "k = _task_id(sel(cands, view,"),
    ]
    for old, new in edits:
        if old not in src:
            sys.exit(f"calling.py: the engine's _kernel no longer contains {old!r}; update the edits")
        src = src.replace(old, new)
    switches = {"FULL": bool(full), "DIRECT": bool(direct), "LOAD_INDEX": bool(load_index), "CLOSED": False,
                "READS_WORK": bool(reads_work)}
    g = dict(vars(engine), **switches, HAS_COMPLETE=False)
    shared = specialise._shared(switches)
    g.update((name, shared[name]) for name in engine.SHARED_FUNCS + engine.HOOKLESS_FUNCS)
    for name in engine.KERNEL_FUNCS[:-1]:
        if name in shared:
            continue
        py = getattr(g[name], "py_func", g[name])
        g[name] = njit(inline="always")(types.FunctionType(py.__code__, g, py.__name__, py.__defaults__, py.__closure__))
    exec(compile(src, "<first-class kernel>", "exec"), g)
    compiled = {}

    def kernel(cfg, st, met, arr, first, until):
        k = compiled.get("k")
        if k is None:
            sig = nbtypes.int64(typeof(cfg), typeof(st), typeof(met), typeof(arr), nbtypes.int64, nbtypes.float64,
                                nbtypes.FunctionType(select_signature(full)))
            k = compiled["k"] = njit(sig, _nrt=False, pipeline_class=RunStateCompiler)(g["_kernel"])
        return k(cfg, st, met, arr, np.int64(first), until, select)
    return kernel


_KERNELS: dict = {}


def first_class_kernel(spec, full: bool = True, direct: bool = False, closed: bool = False):
    """Stands in for lbbench.engine.specialise.compiled_kernel (strategies without an on_complete
    hook, open-loop runs), once per strategy and switches in a process, as that does."""
    from lbbench.engine.specialise import _jit
    if spec.on_complete is not None:
        sys.exit(f"calling.py: {spec.name} has an on_complete hook, which this comparison does not pass")
    if spec.params:
        sys.exit(f"calling.py: {spec.name} reads declared parameters (view.params, a named tuple typed per "
                 "strategy), which one kernel's View type for every strategy cannot carry")
    if closed:
        sys.exit(f"calling.py: {spec.name} on a closed loop (workload.mode closed or sessions), which this "
                 "comparison does not run")
    key = (spec.name, full, direct)
    if key not in _KERNELS:
        _KERNELS[key] = shared_kernel(_jit(spec.select, spec.boundscheck), full, direct, spec.load_index,
                                      spec.reads_work)
    return _KERNELS[key]


def plugin_compile_time(strategy: str) -> float:
    """Seconds to compile the plugin's select alone for the first-class signature."""
    import time

    from numba import njit

    from lbbench.strategy import resolve
    spec = resolve(strategy)
    fresh = njit(boundscheck=spec.boundscheck)(getattr(spec.select, "py_func", spec.select))
    t = time.perf_counter()
    fresh.compile(select_signature().args)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", default="round_robin,least_load")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    for strategy in a.strategies.split(","):
        res = {"inlined": [], "first-class": []}
        for r in range(a.rounds):
            for variant in (("inlined", "first-class") if r % 2 == 0 else ("first-class", "inlined")):
                cache = tempfile.mkdtemp(prefix="lbbench-calling-")
                try:
                    out = subprocess.run([sys.executable, "-c", CHILD, strategy, variant, here], capture_output=True,
                                         text=True, env={**os.environ, "NUMBA_CACHE_DIR": cache})
                finally:
                    shutil.rmtree(cache, ignore_errors=True)
                if out.returncode:
                    sys.exit(f"{strategy} {variant} failed:\n{out.stderr[-2000:]}")
                first, ns, plugin, lat = out.stdout.split()
                res[variant].append((float(first), float(ns), float(plugin), lat))
        lats = {x[3] for v in res.values() for x in v}
        if len(lats) != 1:
            sys.exit(f"{strategy}: the two kernels gave different mean latencies: {sorted(lats)}")
        med = {v: [statistics.median(x[i] for x in res[v]) for i in range(3)] for v in res}
        print(f"{strategy}: inlined {med['inlined'][1]:.1f} ns/request, first run {med['inlined'][0]:.2f} s; "
              f"first-class {med['first-class'][1]:.1f} ns/request ({med['first-class'][1] / med['inlined'][1]:.2f}x), "
              f"first run {med['first-class'][0]:.2f} s, the plugin alone compiles in {med['first-class'][2]:.2f} s "
              f"(medians of {a.rounds} rounds; mean latency identical)", flush=True)


if __name__ == "__main__":
    main()
