"""The one njit configuration every Greeks kernel is compiled with.

`error_model="numpy"` turns division by zero into inf/NaN instead of a
Python exception: the exception branch would stop LLVM vectorising the loops.
`contract` lets LLVM fuse a*b+c into FMA (more accurate, never less);
no other fast-math flag is set, so NaN and inf keep their IEEE meaning.
"""
from numba import njit

JIT_OPTIONS = dict(cache=True, error_model="numpy", fastmath={"contract"})


def kernel(function):
    """Compile a scalar building block (inlined by LLVM into the array loops)."""
    return njit(**JIT_OPTIONS)(function)


def array_kernel(parallel):
    """Compile an array loop, threaded with prange when `parallel`."""
    return njit(parallel=parallel, **JIT_OPTIONS)
