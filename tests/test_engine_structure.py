"""The engine's structure holds what docs/architecture.md says of it: the specialised functions
are all those that read a hook or a switch, the run state is allocated and grown from its one
declaration, and the control-event queue gives the earliest timer by (time, id)."""
from __future__ import annotations

import ast
import inspect
import numpy as np
import pytest
from numba import njit
from hypothesis import given, settings
from hypothesis import strategies as st_

from lbbench.engine import control, kernel, state

SWITCHES = {"FULL", "DIRECT", "HAS_COMPLETE", "_select", "_on_complete", "_params"}


def _functions():
    """kernel.py's compiled functions (those with an njit decorator)."""
    tree = ast.parse(inspect.getsource(kernel))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)
            and any("njit" in ast.unparse(d) for d in n.decorator_list)}


def test_every_function_that_reads_a_hook_or_switch_is_specialised():
    """A function of kernel.py that reads a hook or a compile-time switch, or calls one that is
    specialised, must itself be specialised (KERNEL_FUNCS): else the strategy's copy of the loop
    would call a version bound to the defaults."""
    funcs = _functions()
    special = set(kernel.KERNEL_FUNCS)
    assert special <= set(funcs)
    reads = {name: {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} for name, node in funcs.items()}
    needed = set()
    changed = True
    while changed:      # what reads a switch or hook, or calls a function that does
        changed = False
        for name, names in reads.items():
            if name not in needed and names & (SWITCHES | needed):
                needed.add(name)
                changed = True
    assert needed - special == set(), f"read a switch or call a specialised function: {sorted(needed - special)}"
    assert "_kernel" in special



def test_the_functions_shared_by_every_strategys_kernel_read_no_hook():
    """kernel.SHARED_FUNCS are compiled once per set of switches for every strategy, and
    HOOKLESS_FUNCS once for every strategy without on_complete (specialise._shared): one that
    read `_select` (or, for SHARED_FUNCS, the completion hook), directly or through a function
    it calls, would run the default hook instead of the strategy's."""
    funcs = _functions()
    reads = {name: {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} for name, node in funcs.items()}

    def reached(name, seen=None):
        seen = set() if seen is None else seen
        if name in seen:
            return set()
        seen.add(name)
        out = set(reads[name])
        for callee in reads[name] & set(funcs):
            out |= reached(callee, seen)
        return out
    assert set(kernel.SHARED_FUNCS) | set(kernel.HOOKLESS_FUNCS) <= set(kernel.KERNEL_FUNCS) - {"_kernel"}
    for name in kernel.SHARED_FUNCS:
        assert not reached(name) & {"_select", "_on_complete", "_params", "HAS_COMPLETE", "_retire"}, name
    for name in kernel.HOOKLESS_FUNCS:
        # the completion hook only under `if HAS_COMPLETE:`, which a hookless strategy's copy prunes
        assert "_select" not in reached(name), name
        assert "HAS_COMPLETE" in reached(name) or not reached(name) & {"_on_complete", "_params"}, name

def test_a_shared_function_is_compiled_once_per_value_of_the_switches_it_reads():
    """specialise._shared keys each shared function by the switches it reads (through the
    functions it calls too): switch sets that differ only in another switch share its compiled
    copy, and a copy never reads a switch its key leaves out (it would see the default)."""
    from lbbench.engine import specialise
    base = dict(FULL=False, DIRECT=False, LOAD_INDEX=False, CLOSED=False, READS_WORK=False)
    a = specialise._shared(base)
    funcs = _functions()
    reads = {name: {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} for name, node in funcs.items()}
    for switch in specialise.SWITCHES:
        b = specialise._shared(dict(base, **{switch: True}))
        for name in a:
            assert (a[name] is b[name]) == (switch not in specialise._reads()[name][0]), (switch, name)
            if switch in reads[name]:
                assert a[name] is not b[name], (switch, name)
    # READS_WORK is the kernel's alone: a strategy reading view.work shares every function
    assert all(a[n] is specialise._shared(dict(base, READS_WORK=True))[n] for n in a)


def _sizes(slots=4):
    return dict(tasks=5, workers=7, nodes=3, balancers=2, balancer_services=4, state_size=3, strategy_tasks=5,
                task_state=2, connections=6, local_balancers=2, local_tasks=5, piggy_balancers=0, piggy_tasks=0,
                timer_tree=16, index_rows=1, index_len=0,
                services=2, slots=slots)


def test_state_is_its_declaration():
    st = state.new_state(_sizes())
    assert st._fields == tuple(a.name for a in state.STATE_ARRAYS)
    for a in state.STATE_ARRAYS:
        arr = getattr(st, a.name)
        assert arr.dtype == a.dtype and arr.flags.c_contiguous, a.name
    assert st.local_out.shape == (2, 5) and st.bal_task_state.shape == (2, 5, 2) and st.tr_key.shape == (4 + state.HEAP_PAD,)
    assert st.heap_key.shape == (2 * 7 + state.HEAP_PAD,) and st.wq_head.shape == (7,)     # one entry per worker, room for stale ones
    assert list(st.free_slots) == [3, 2, 1, 0] and st.ctr[state.FREE_N] == 4
    with pytest.raises(ValueError, match="shape"):
        state.new_state(_sizes(), bal_rng=np.zeros((3, 1), dtype=np.uint64))
    with pytest.raises(ValueError, match="not state arrays"):
        state.new_state(_sizes(), nonsense=np.zeros(1))


@pytest.mark.parametrize("features", [{}, {"retry": 1, "ps_tasks": 5}])
def test_growing_the_slot_pool_grows_every_slot_array_and_keeps_their_contents(features):
    """Every array sized by the pool grows and keeps its contents; the parts only some runs read
    (client retries, processor sharing) are empty in a run without them, and stay empty."""
    optional = (state.RETRY_SLOTS, state.RETRY_HEAP, state.PS_SLOTS)
    st = state.new_state(dict(_sizes(slots=4), **features))
    st.ctr[state.FREE_N] -= 3           # three slots taken off the free stack: 0, 1, 2 (free: 3)
    grows = [a for a in state.STATE_ARRAYS if any(d in state.GROWN for d in a.shape)]
    off = {a.name for a in grows if not features and any(d in optional for d in a.shape)}
    assert off == ({"slot_s", "slot_e0", "slot_client", "slot_jin", "slot_jout", "slot_try", "rt_key", "rt_slot",
                    "slot_ps_t0", "slot_ps_u0"} if not features else set())
    for a in grows:
        if a.name not in off and a.name != "free_slots":
            getattr(st, a.name)[:3] = 7
    grown = state.grow_slots(st, 10)
    for a in state.STATE_ARRAYS:
        old, new = getattr(st, a.name), getattr(grown, a.name)
        if a.name in off:
            assert len(old) == 0 and new is old, a.name
        elif a in grows:
            padded = "heap" in a.shape or state.RETRY_HEAP in a.shape
            assert len(new) == 10 + (state.HEAP_PAD if padded else 0), a.name
            if a.name != "free_slots":
                assert (new[:3] == 7).all() and (new[4:10] == a.fill).all(), a.name
        else:
            assert new is old, a.name
    free = grown.free_slots[:grown.ctr[state.FREE_N]]
    assert sorted(free.tolist()) == [3, 4, 5, 6, 7, 8, 9] and grown.ctr[state.FREE_N] == 7


def test_a_runs_state_is_freed_at_its_end(monkeypatch):
    """Nothing holds a finished run's state but the reuse cache, which keeps small ones only
    (made to keep none here): the kernel's entry forgets the last state it typed
    (specialise.Entry.forget), so that a run's 80 MB balancers x tasks table is not alive beside
    the next run's."""
    import gc
    import weakref
    import lbbench.engine.run as engine_run
    from lbbench import simulate
    refs = []
    keep = engine_run._release_state
    monkeypatch.setattr(engine_run, "_release_state", lambda run: (refs.append(weakref.ref(run.st.local_out)),
                                                                   keep(run)))
    ov = {"cluster.nodes": 4, "services.0.replicas": 8, "balancer.mode": "per_node", "balancer.info": "local",
          "run.requests": 2000}
    monkeypatch.setattr(engine_run, "_STATE_BYTES", 0)      # as for a large state: not kept
    simulate("reference", "least_load", overrides=ov, progress=False)
    gc.collect()
    assert refs[0]() is None


@njit
def _set(tree, i, t):
    # The engine's functions are called from compiled code only (no Python entry point), and
    # with the engine's own State: they are cached on disk, and a type from this module in their
    # cache index would make every later process fail to load it.
    control.timer_set(tree, i, t)


@njit
def _at(tree, i):
    return control.timer_at(tree, i)


@settings(max_examples=60, deadline=None)
@given(n=st_.integers(1, 40), ops=st_.lists(st_.tuples(st_.integers(0, 39), st_.sampled_from([0.5, 1.0, 2.0, 3.0, np.inf])),
                                          max_size=80))
def test_control_queue_root_is_the_earliest_timer_by_time_then_id(n, ops):
    t, ids = control.new_tree(n, {})
    tree = state.new_state(dict(_sizes(), timer_tree=len(t)), ctl_t=t, ctl_i=ids)
    times = [np.inf] * n
    for i, v in ops:
        i %= n
        _set(tree, np.int64(i), v)
        times[i] = v
        best = min(range(n), key=lambda j: (times[j], j))
        assert tree.ctl_t[1] == times[best]
        if times[best] < np.inf:
            assert tree.ctl_i[1] == best
        assert _at(tree, np.int64(best)) == times[best]


FIRST_TASK = '''
from numba import njit
from lbbench.strategy import Strategy


@njit
def select(cands, view, state, rng):
    return cands[0]


STRATEGY = Strategy(name="first_task", select=select, version="1", description="the first candidate {token}")
'''


def test_a_kernel_cached_after_linking_cached_code_loads_in_a_new_process(tmp_path):
    """A kernel compiled in a process that loaded the engine's shared functions from numba's disk
    cache, then loaded from the cache by a third process: the functions compiled apart that the
    shared code calls must be found there (lowlevel._rebuild). Without it the third process
    stopped in LLVM ("Symbol not found: lbbench_apart_...")."""
    import os
    import subprocess
    import sys
    import uuid
    # a new plugin source (a new kernel to compile) every time, in the suite's cache (round_robin's
    # engine on failover is compiled there by other tests)
    (tmp_path / "first_task.py").write_text(FIRST_TASK.format(token=uuid.uuid4().hex))
    env = dict(os.environ)

    def run(strategy):
        p = subprocess.run([sys.executable, "-m", "lbbench", "run", "failover", "--strategy", strategy, "--requests", "2000",
                            "--no-write"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
    run("round_robin")                      # the shared functions, cached
    run("./first_task.py:STRATEGY")         # a kernel linking them as loaded from the cache
    run("./first_task.py:STRATEGY")         # that kernel, loaded from the cache
