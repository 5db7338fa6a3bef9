"""Three numba intrinsics the dispatch loop uses where numba's own lowering adds work the loop
does not need, and `RunStateCompiler`, the numba pipeline of every compiled function that takes
the run state (docs/architecture.md, "The engine's modules"); `inlined`, for the helpers LLVM
inlines into the kernels; `apart`, for the functions compiled apart, and `call_native`, the call
both it and the kernel's entry make."""
import functools
import hashlib
import importlib
import inspect

from llvmlite import binding as ll
from numba import types as nbtypes
from numba import njit
from numba.core import cgutils, ir, lowering
from numba.core.analysis import compute_cfg_from_blocks, compute_use_defs, must_use_alloca
from numba.core.compiler import CompileResult, CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import register_pass
from numba.core.typed_passes import NativeLowering
from numba.extending import intrinsic


@intrinsic
def _view(typingctx, a, start, n):
    """a[start:start + n] of a 1-d C array, for 0 <= start <= start + n <= len(a) (the caller
    knows): the same view as the slice, without the slice's clamping of its bounds."""
    if isinstance(a, nbtypes.Array) and a.ndim == 1 and a.layout == "C":
        def codegen(context, builder, signature, args):
            from numba.core.imputils import impl_ret_borrowed
            from numba.np.arrayobj import make_array, populate_array
            aryty = signature.args[0]
            src = make_array(aryty)(context, builder, args[0])
            st = context.cast(builder, args[1], signature.args[1], nbtypes.intp)
            ln = context.cast(builder, args[2], signature.args[2], nbtypes.intp)
            out = make_array(aryty)(context, builder)
            populate_array(out, data=builder.gep(src.data, [st]), shape=[ln], strides=[src.itemsize],
                           itemsize=src.itemsize, meminfo=src.meminfo, parent=src.parent)
            return impl_ret_borrowed(context, builder, aryty, out._getvalue())
        return a(a, start, n), codegen
    return None


@intrinsic
def _f64_bits(typingctx, x):
    """The IEEE-754 bits of a float64 as an int64 (a register move, no call)."""
    if isinstance(x, nbtypes.Float) and x.bitwidth == 64:
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(nbtypes.int64))
        return nbtypes.int64(nbtypes.float64), codegen
    return None


@intrinsic
def _fdiv(typingctx, x, y):
    """x / y of two float64 without numba's test for a zero divisor (a compare and a branch
    per division), for a divisor the caller knows to be nonzero: the same IEEE division."""
    if all(isinstance(v, nbtypes.Float) and v.bitwidth == 64 for v in (x, y)):
        def codegen(context, builder, signature, args):
            return builder.fdiv(args[0], args[1])
        return nbtypes.float64(nbtypes.float64, nbtypes.float64), codegen
    return None


# For x = m * 2**e with m in [0.5, 1) (frexp), the IEEE exponent field is e + 1022 and the top
# bits of the fraction are (m - 0.5) * 2 * SUB: a bucket index is two shifts and a mask.


# --------------------------------------------------------------------------------------------
# The run state's named tuples without a stack slot.
#
# numba lowers a variable used in more than one block to a stack slot (alloca) and every use to
# a load of the whole value: each `st.x` in the kernel loads all of State (about 45 arrays, 300
# machine words) to extract one field, and LLVM's SROA must take those loads apart again (the
# kernel had 265 such loads of Config, State or Metrics: 2.3 s of LLVM's function passes and
# 2.3 s of numba's lowering on a first run). A tuple assigned once (the arguments, the copies
# numba's inlining makes of them) has one value, so this lowering keeps it as that SSA value
# when its definition dominates every use and is lowered before them: each `st.x` is then one
# extractvalue. LLVM's result is the same code (SROA made those values SSA anyway).

_WIDE = 8   # tuples with at least this many members are kept out of stack slots


class _RunStateLower(lowering.Lower):
    def _find_singly_assigned_variable(self):
        super()._find_singly_assigned_variable()
        if self.func_ir.func_id.is_generator or self._disable_sroa_like_opt:
            return
        blocks = self.func_ir.blocks
        defs: dict = {}
        uses: dict = {}
        for label, blk in blocks.items():
            for stmt in blk.body:
                if isinstance(stmt, ir.Assign):
                    defs.setdefault(stmt.target.name, []).append(label)
                elif isinstance(stmt, ir.Del):
                    uses.setdefault(stmt.value, set()).add(label)
        for label, names in compute_use_defs(blocks).usemap.items():
            for name in names:
                uses.setdefault(name, set()).add(label)
        in_alloca = must_use_alloca(blocks)
        dom = None
        for name, labels in defs.items():
            if len(labels) != 1 or name in in_alloca or name in self._singly_assigned_vars:
                continue
            ty = self.typeof(name)
            if not (isinstance(ty, nbtypes.BaseTuple) and len(ty) >= _WIDE):
                continue
            if dom is None:
                dom = compute_cfg_from_blocks(blocks).dominators()
            d = labels[0]
            # (blocks are lowered in label order: a use in a later label the definition
            # dominates sees the value already made)
            if all(u > d and d in dom[u] for u in uses.get(name, ())):
                self._singly_assigned_vars.add(name)


@register_pass(mutates_CFG=True, analysis_only=False)
class _RunStateLowering(NativeLowering):
    _name = "lbbench_run_state_lowering"

    @property
    def lowering_class(self):
        return _RunStateLower


class RunStateCompiler(CompilerBase):
    """numba's nopython pipeline with `_RunStateLower` (above): `njit(pipeline_class=...)` of the
    kernel and of the shared functions that take Config, State or Metrics."""

    lowering = _RunStateLowering

    def define_pipelines(self):
        pm = DefaultPassBuilder.define_nopython_pipeline(self.state)
        pm.passes = [(self.lowering if cls is NativeLowering else cls, doc) for cls, doc in pm.passes]
        return [pm]


class _InlinedLower(_RunStateLower):
    def post_lower(self):
        super().post_lower()
        # LLVM inlines the function into every caller its code is linked into (see `inlined`)
        self.function.attributes.add("alwaysinline")


@register_pass(mutates_CFG=True, analysis_only=False)
class _InlinedLowering(_RunStateLowering):
    _name = "lbbench_inlined_lowering"

    @property
    def lowering_class(self):
        return _InlinedLower


class _InlinedCompiler(RunStateCompiler):
    lowering = _InlinedLowering


def inlined(fn=None, *, python: bool = False):
    """A helper of the per-request path, compiled once (per argument types, cached on disk) and
    inlined by LLVM into each function that calls it, instead of by numba: numba's inlining
    would type and lower its body again in each of the specialised kernels (docs/architecture.md,
    "Specialisation per strategy"). Not for a function returning an array (a kernel without NRT
    cannot call it). Callable from compiled code only, unless `python=True` (a Python entry
    point: for helpers of scalars only; one that unboxes the run state costs seconds of compile)."""
    if fn is None:
        return lambda f: inlined(f, python=python)
    return njit(cache=True, no_cpython_wrapper=not python, no_cfunc_wrapper=True, pipeline_class=_InlinedCompiler)(fn)


# --------------------------------------------------------------------------------------------
# Functions compiled apart: called by symbol, not linked into their callers.
#
# numba links the machine-independent code (LLVM IR) of every function a compiled function
# calls into that function's own module, and optimises and emits machine code for the whole:
# a call chain kernel -> control_step -> _schedule_step -> _stop -> _kill -> ps_crash emits the
# control code once per level of the chain, in every strategy's kernel again (after the
# deployments and the nodes' control code joined it, 80 % of a cold least_load run's 130 s of
# compile). `apart` gives a function's callers an external call instead: the function is
# compiled (or loaded from numba's disk cache) on its own, once per argument types, and the
# process's JIT resolves the call to it by a symbol named after the function and those types.
# A caller loaded from the disk cache re-registers the symbol first (numba runs a compiled
# function's `reload_init` before loading it). For code run per control event, not per
# request: the call passes the run state by value (its arrays' fields, some hundreds of words).

_APART: dict = {}        # "module.qualname" -> dispatcher


def call_native(context, builder, fn, restype, argtys, args):
    """Call compiled function `fn` (an LLVM function or function pointer) with numba's calling
    convention; an exception it raised propagates to the caller."""
    status, res = context.call_conv.call_function(builder, fn, restype, argtys, args)
    with cgutils.if_unlikely(builder, status.is_error):
        context.call_conv.return_status_propagate(builder, status)
    return res


def _rebuild(cls, target_context, libdata, fndesc, env, signature, objectmode, lifted, typeann, reload_init,
             referenced_envs):
    """numba's loading of a compiled function from its disk cache, which runs the function's
    `reload_init` (here: registering the symbols of the functions compiled apart it calls) but
    leaves the loaded library's own set empty. A function compiled later that links the loaded
    one inherits the set from the library, so it was cached without those reloads, and a later
    process loading it from the cache stopped in LLVM ("Symbol not found: lbbench_apart_...").
    The library keeps them here, as a library compiled in the process does."""
    cres = _REBUILD(cls, target_context, libdata, fndesc, env, signature, objectmode, lifted, typeann, reload_init,
                    referenced_envs)
    if reload_init:
        cres.library._reload_init.update(reload_init)
    return cres


_REBUILD = CompileResult._rebuild.__func__
CompileResult._rebuild = classmethod(_rebuild)


def _apart_symbol(key, argtys):
    return "lbbench_apart_" + hashlib.sha1(f"{key}|{argtys}".encode()).hexdigest()[:24]


def _apart_register(key, argtys):
    """Compile (or load) the function for these argument types and give the JIT its symbol:
    (compile result, symbol)."""
    disp = _APART[key]
    disp.compile(argtys)
    cres = disp.overloads[argtys]
    sym = _apart_symbol(key, argtys)
    ll.add_symbol(sym, cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name))
    return cres, sym


def _apart_reload(module, key, argtys):
    importlib.import_module(module)         # (defines and registers the function)
    _apart_register(key, argtys)


def _apart_type(t):
    # one compile per kind of argument: a constant as its type, a signed integer as int64
    t = nbtypes.unliteral(t)
    if isinstance(t, nbtypes.Integer) and t.signed and t.bitwidth < 64:
        return nbtypes.int64
    return t


def apart(disp):
    """`disp` (a numba dispatcher taking positional arguments) as its callers in compiled code
    call it: compiled apart, called by symbol (see above)."""
    py = disp.py_func
    module = py.__module__
    key = f"{module}.{py.__qualname__}"
    _APART[key] = disp
    n = len(inspect.signature(py).parameters)

    def typer(typingctx, *args):
        argtys = tuple(map(_apart_type, args))
        cres, sym = _apart_register(key, argtys)
        sig = cres.signature.return_type(*argtys)
        reload = functools.partial(_apart_reload, module, key, argtys)

        def codegen(context, builder, signature, llargs):
            fnty = context.call_conv.get_function_type(signature.return_type, signature.args)
            fn = cgutils.get_or_insert_function(builder.module, fnty, sym)
            context.active_code_library._reload_init.add(reload)
            return call_native(context, builder, fn, signature.return_type, signature.args, llargs)
        return sig, codegen

    names = ", ".join(f"a{i}" for i in range(n))
    ns = {"typer": typer}
    exec(f"def {py.__name__}(typingctx, {names}):\n    return typer(typingctx, {names})", ns)
    fn = ns[py.__name__]
    fn.__doc__ = py.__doc__
    wrapped = intrinsic(fn)
    wrapped.dispatcher = disp
    return wrapped
