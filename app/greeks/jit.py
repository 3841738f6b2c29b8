"""The one njit configuration every Greeks kernel is compiled with.

`error_model="numpy"` turns division by zero into inf/NaN instead of a
Python exception: the exception branch would stop LLVM vectorising the loops.
`contract` lets LLVM fuse a*b+c into FMA (more accurate, never less);
no other fast-math flag is set, so NaN and inf keep their IEEE meaning.
"""
import hashlib
import types
from pathlib import Path

from numba import njit
from numba import types as numba_types
from numba.extending import intrinsic

JIT_OPTIONS = dict(cache=True, error_model="numpy", fastmath={"contract"})


def _package_digest():
    digest = hashlib.sha1()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# numba's on-disk cache checks only the file defining a function, not the
# kernels inlined into it, and keys entries by the function's qualified name,
# not by compile flags. Every compiled function therefore gets a copy named
# after the package's source digest (any edit invalidates the whole cache)
# and, for array loops, after its build (serial and parallel never collide).
PACKAGE_DIGEST = _package_digest()


def _renamed(function, suffix):
    copy = types.FunctionType(function.__code__, function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)
    copy.__qualname__ = f"{function.__qualname__}_{suffix}"
    copy.__doc__ = function.__doc__
    return copy


def kernel(function):
    """Compile a scalar building block that LLVM always inlines into its
    callers: a call left in a loop body would stop vectorisation, and LLVM's
    cost model alone declines numba's larger cross-module callees."""
    return njit(forceinline=True, **JIT_OPTIONS)(_renamed(function, PACKAGE_DIGEST))


def array_kernel(loop, parallel):
    """Compile an array loop, threaded with prange when `parallel`."""
    build = "parallel" if parallel else "serial"
    return njit(parallel=parallel, **JIT_OPTIONS)(_renamed(loop, f"{build}_{PACKAGE_DIGEST}"))


# LLVM keeps loops to 256-bit vectors on AVX-512 CPUs unless a function asks
# for more; the pricing loops are compute-bound, so 512-bit halves their work.
# Harmless where the CPU has no AVX-512 (the widest registers are used).
WIDE_VECTORS = '"prefer-vector-width"="512"'


@intrinsic
def prefer_wide_vectors(typingctx):
    """Mark the function being compiled (a loop body) to vectorise at 512 bits; emits no code."""
    def codegen(context, builder, signature, args):
        # llvmlite validates attribute names against a fixed list without
        # string attributes, so the set is extended directly.
        set.add(builder.function.attributes, WIDE_VECTORS)
        return context.get_dummy_value()
    return numba_types.none(), codegen
