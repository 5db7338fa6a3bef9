"""Three numba intrinsics the dispatch loop uses where numba's own lowering adds work the loop
does not need (docs/architecture.md, "The engine")."""
from numba import types as nbtypes
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
