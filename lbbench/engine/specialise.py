"""One kernel per strategy: `specialise` binds a plugin's hooks into a copy of the dispatch
loop, `compiled_kernel` keeps one per process, and `Entry` is Python's way into it, once per
chunk (docs/architecture.md, "Specialisation per strategy").
"""
from __future__ import annotations

import hashlib
import types

import numpy as np
from numba import njit
from numba import types as nbtypes
from numba.extending import intrinsic

from . import kernel
from .lowlevel import RunStateCompiler, call_native, inlined
from .. import jitcache  # noqa: F401  (stamps the functions cached below: lbbench/jitcache.py)



@njit(cache=True)
def _warm(x):
    return x + 1


def warm_up() -> None:
    """Initialise numba's compiler (its target context, about 0.7 s) by loading a tiny cached
    function: done once in the process the sweep workers are forked from, inherited by each."""
    _warm(1)


def engine_hash() -> str:
    """Hash of the engine's source and of what plugins compile into it (the random streams, the
    kit of docs/strategies.md): part of every specialised kernel's cache name (jitcache.COMPILED)."""
    return jitcache.SOURCE_HASH[:10]


def specialise(key: str, select, on_complete=None, full: bool = True, direct: bool = False, params=None,
               load_index: bool = False, closed: bool = False, reads_work: bool = False):
    """A `_kernel` whose strategy hooks are `select` / `on_complete` (jitted functions).

    `key` names the specialisation in numba's disk cache; it must change whenever the
    plugin's code changes (the registry passes a hash of the plugin's source). `full=False`
    compiles without failures and client retries (the kernel then must not be given a run
    that has either); `direct`: the direct path (see DIRECT), for runs simulate finds eligible;
    `closed`: a closed loop's users send the requests (see CLOSED).
    `params`: the `_params` the hooks' View is built with (`kernel.param_maker`; the key must
    name the parameters, as the registry's source hash does). `load_index`: the kernel keeps
    the load index up to date (loadindex.py; runs of such a kernel must allocate it).
    `reads_work`: the strategy reads view.work, filled per decision under `work` information.
    """
    switches = {"FULL": bool(full), "DIRECT": bool(direct), "LOAD_INDEX": bool(load_index), "CLOSED": bool(closed),
                "READS_WORK": bool(reads_work)}
    key = (f"{key}|full{int(bool(full))}|direct{int(bool(direct))}|index{int(bool(load_index))}"
           + ("|closed" if closed else "") + ("|work" if reads_work else ""))
    g = dict(vars(kernel), **switches)
    g["_select"] = select
    if params is not None:
        g["_params"] = params
    g["HAS_COMPLETE"] = on_complete is not None
    if on_complete is not None:
        g["_on_complete"] = on_complete
    shared = _shared(switches)
    names = kernel.SHARED_FUNCS + (() if on_complete is not None else kernel.HOOKLESS_FUNCS)
    for name in names:
        g[name] = shared[name]
    _copy_into(g, [n for n in kernel.KERNEL_FUNCS if n not in names], f"{key}|{engine_hash()}")
    return Entry(g["_kernel"])


SWITCHES = ("FULL", "DIRECT", "LOAD_INDEX", "CLOSED", "READS_WORK")
_SHARED: dict = {}      # (function name, the switches it reads and their values) -> compiled function
_READS: dict = {}       # function name -> (switches it reads, shared functions it calls), from its source


def _reads() -> dict:
    """For each of kernel.py's functions: the switches it reads, itself or through the kernel.py
    functions it calls, and the shared functions (SHARED_FUNCS, HOOKLESS_FUNCS) it calls. (A
    shared function calls no other specialised one but under `if HAS_COMPLETE:`, which its
    shared copy prunes: tests/test_engine_structure.py.)"""
    if not _READS:
        import ast
        import inspect
        tree = ast.parse(inspect.getsource(kernel))
        names = {n.name: {x.id for x in ast.walk(n) if isinstance(x, ast.Name)}
                 for n in tree.body if isinstance(n, ast.FunctionDef)}

        def reached(name, seen):
            seen.add(name)
            out = names[name] & set(SWITCHES)
            for callee in names[name] & set(names) - seen:
                out |= reached(callee, seen)
            return out
        for name in names:
            _READS[name] = (frozenset(reached(name, set())),
                            names[name] & set(kernel.SHARED_FUNCS + kernel.HOOKLESS_FUNCS) - {name})
    return _READS


def _shared(switches: dict) -> dict:
    """The kernel's functions that read the switches but not the strategy (kernel.SHARED_FUNCS,
    and kernel.HOOKLESS_FUNCS as a strategy without on_complete has them), each compiled once
    per value of the switches it reads (a set of switches that differs only in others shares
    it) and shared by every strategy's kernel: numba types and lowers them once (and caches
    them on disk), LLVM inlines them into each kernel (lowlevel.inlined)."""
    reads = _reads()
    out: dict = {}

    def get(name):
        if name not in out:
            sub = tuple(sorted((k, switches[k]) for k in reads[name][0]))
            f = _SHARED.get((name, sub))
            if f is None:
                g = dict(vars(kernel), **dict(sub), HAS_COMPLETE=False)
                for callee in reads[name][1]:
                    g[callee] = get(callee)
                _copy_into(g, [name], f"shared|{name}|{sub}|{engine_hash()}", shared=True)
                f = _SHARED[(name, sub)] = g[name]
            out[name] = f
        return out[name]
    for name in kernel.SHARED_FUNCS + kernel.HOOKLESS_FUNCS:
        get(name)
    return out


def _copy_into(g: dict, names, key: str, shared: bool = False) -> None:
    """Compile a copy of each of kernel's functions `names` whose globals are `g`, into g, under
    a cache name made from `key` (numba's disk cache tells the copies apart by it)."""
    tag = hashlib.sha1(key.encode()).hexdigest()[:16]
    for name in names:
        f0 = getattr(kernel, name)
        py = getattr(f0, "py_func", f0)
        f = types.FunctionType(py.__code__, g, py.__name__, py.__defaults__, py.__closure__)
        f.__qualname__ = f"{name}__{tag}"
        f.__module__ = kernel.__name__
        f.__doc__ = py.__doc__
        if shared:
            g[name] = inlined(f)
            continue
        # numba's default error model, not numpy's: the plugin's code compiles under the
        # kernel's, and a plugin dividing by zero must stop with an error, not go on with inf
        # or 0 (the engine's own division per request skips the zero test through _fdiv)
        opts = ({"inline": "always"} if name != "_kernel" else
                {"_nrt": False, "no_cpython_wrapper": True, "no_cfunc_wrapper": True, "pipeline_class": RunStateCompiler})
        g[name] = njit(cache=True, **opts)(f)


@intrinsic
def _call_at(typingctx, addr, cfg, st, met, arr, first, until):
    """Call the compiled kernel at machine address `addr` (numba's own calling convention, so an
    exception raised inside it, a plugin's included, propagates as from any numba call)."""
    sig = nbtypes.int64(addr, cfg, st, met, arr, first, until)

    def codegen(context, builder, signature, args):
        argtys = signature.args[1:]
        fnty = context.call_conv.get_function_type(nbtypes.int64, argtys)
        fnptr = builder.inttoptr(args[0], fnty.as_pointer())
        return call_native(context, builder, fnptr, nbtypes.int64, argtys, args[1:])
    return sig, codegen


def _enter(addr, cfg, st, met, arr, first, until):
    return _call_at(addr, cfg, st, met, arr, first, until)


_ENTERS: dict = {}      # argument types -> the compiled _enter's entry point for them
_TUPLE_TYPES: dict = {}  # what a run-state tuple's numba type depends on -> that type


def _field_key(x):
    if isinstance(x, np.ndarray):
        return _array_key(x)
    if isinstance(x, (float, np.int64, np.float64, bool)):
        return type(x)
    return None


def _tuple_type(obj):
    """numba's type of a run-state named tuple (cfg, st, met). Each run builds new ones, and
    numba's typeof walks every field (about 1 ms a tuple, a sweep of short runs' largest fixed
    cost), so the type is kept by what it depends on: the tuple's class and, per field, an
    array's dtype, dimensions and flags or a scalar's class. A field of any other kind is typed
    by numba each time."""
    key = (type(obj), *map(_field_key, obj))
    t = _TUPLE_TYPES.get(key) if None not in key else None
    if t is None:
        from numba import typeof
        t = typeof(obj)
        if None not in key:
            _TUPLE_TYPES[key] = t
    return t


def _array_key(a):
    # what numba's type of an array depends on
    f = a.flags
    return a.dtype.str, a.ndim, f.c_contiguous, f.f_contiguous, f.aligned, f.writeable


class Entry:
    """Python's way into a specialised kernel, once per chunk of arrivals.

    - The kernels are compiled without a Python entry point: one would unbox the whole run state
      (about 90 arrays), 0.9 s of every kernel's compile. One small compiled function per
      run-state type (`_enter`, cached on disk and shared by every strategy) unboxes the
      arguments and calls the kernel at its address.
    - numba's dispatcher types every argument at every call. The run state's named tuples live
      for the whole run, so the type of the last cfg, st and met seen is kept (with the object,
      until the run's end: `forget`), the arrivals' types by their arrays'
      dtypes and flags, and `_enter`'s compiled entry point is called directly with the types
      it was compiled for. `_enter` releases the GIL: `simulate` draws the next chunk of
      arrivals on another thread meanwhile."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher        # the numba dispatcher (its overloads: the machine code)
        self._calls: dict = {}              # ids of the argument types -> (entry point, address, types)
        self._last = [(None, None)] * 3     # (object, its numba type) of the last cfg, st, met
        self._arrivals: dict = {}           # the arrivals' array keys -> numba type

    def forget(self) -> None:
        """Drop the last run's cfg, st and met (at a run's end: `_run_chunks`), so that they do
        not outlive it: the next run's state would otherwise be allocated beside the last one's
        (at 1,000 balancers x 10,000 tasks under `local`, an 80 MB table held twice)."""
        self._last = [(None, None)] * 3

    def _type(self, i, obj):
        last, t = self._last[i]
        if last is not obj:
            t = _tuple_type(obj)
            self._last[i] = (obj, t)
        return t

    def __call__(self, cfg, st, met, arr, first, until):
        key = tuple(_array_key(a) for a in arr)
        tarr = self._arrivals.get(key)
        if tarr is None:
            from numba import typeof
            tarr = self._arrivals[key] = typeof(arr)
        args = (self._type(0, cfg), self._type(1, st), self._type(2, met), tarr, nbtypes.int64, nbtypes.float64)
        ids = tuple(map(id, args[:4]))      # (hashing the types themselves walks them whole)
        call = self._calls.get(ids)
        if call is None or call[2] != args:
            self.dispatcher.compile(args)   # or loaded from the disk cache
            cres = self.dispatcher.overloads[args]
            if cres.signature.return_type != nbtypes.int64:
                raise TypeError(f"the kernel returns {cres.signature.return_type}, not int64")
            enter = _ENTERS.get(args)
            if enter is None:
                esig = nbtypes.int64(nbtypes.intp, *args)
                enter = _ENTERS[args] = njit(esig, cache=True, _nrt=False, nogil=True, pipeline_class=RunStateCompiler)(_enter).overloads[esig.args].entry_point
            address = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
            call = self._calls[ids] = (enter, address, args)
        enter, address, _ = call
        return enter(address, cfg, st, met, arr, np.int64(first), float(until))


# --------------------------------------------------------------------------------------------
# Compilation: one specialised engine per strategy and process, cached on disk by numba.

_COMPILED: dict = {}


def _jit(fn, boundscheck: bool):
    if fn is None:
        return None
    py = getattr(fn, "py_func", fn)
    if boundscheck:
        # Not inlined at numba's level: an inlined body would take the kernel's flags and lose
        # its bounds checks. LLVM may still inline the compiled function.
        return njit(boundscheck=True)(py)
    return njit(inline="always")(py)


def compiled_kernel(spec, full: bool = True, direct: bool = False, closed: bool = False):
    """The dispatch kernel with this strategy inlined (compiled once per process); `full`:
    with failures and client retries, `direct`: the direct path, `closed`: a closed loop (see
    engine.FULL, DIRECT, CLOSED)."""
    # The module is part of the key: a cached kernel refers to the plugin's module by name.
    module = getattr(getattr(spec.select, "py_func", spec.select), "__module__", "")
    key = f"{spec.name}|{spec.source_hash}|{module}|bc{int(spec.boundscheck)}"
    k = _COMPILED.get((key, full, direct, closed))
    if k is None:
        k = specialise(key, _jit(spec.select, spec.boundscheck), _jit(spec.on_complete, spec.boundscheck),
                       full=full, direct=direct, params=kernel.param_maker(spec.params_type),
                       load_index=spec.load_index, closed=closed, reads_work=spec.reads_work)
        _COMPILED[(key, full, direct, closed)] = k
    return k
