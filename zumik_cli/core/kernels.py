"""Loops written once in plain Python, compiled by numba only where an input is large enough to repay it.

Compiling a kernel costs seconds on a fresh install, and loading a compiled one from numba's cache a third of a
second in every process (importing numba and starting LLVM); for a trace of a few tens of thousands of blocks the
interpreter runs the same loop over Python lists in less. So a kernel is a plain function, in a module that does not
import numba, marked with ``kernel``: calling it runs the interpreter, and ``compiled(kernel)``, built on first use,
is numba's form of the same code. One source, so no second statement of the math can drift. In the compiled form
every name that refers to another kernel of the same module refers to that kernel's compiled form, or to the
``compiled_as`` replacement a kernel names, for work only compiled code has use for (a prefetch hint) or does its
own way (a hash table of its own where the interpreter has ``dict``). numba is imported here and nowhere else.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

Function = TypeVar("Function", bound=Callable[..., Any])


@dataclass
class _Marked:
    compiled_as: str | Callable[[], Any] | None
    compiled: Any = None


_kernels: dict[str, dict[str, _Marked]] = {}  # module name -> kernel name -> its compiled form, once built
_compiling = threading.Lock()


def kernel(func: Function | None = None, *, compiled_as: str | Callable[[], Any] | None = None) -> Any:
    """Mark a kernel (returned as it is). ``compiled_as``, where the compiled code calls something else in its
    place: the name of another kernel of the module, or a function returning a numba callable (an intrinsic)."""

    def mark(f: Function) -> Function:
        _kernels.setdefault(f.__module__, {})[f.__name__] = _Marked(compiled_as)
        return f

    return mark if func is None else mark(func)


def compiled(func: Callable[..., Any]) -> Any:
    """numba's form of a kernel (``njit``, cached on disk, releasing the GIL); a module's kernels are built together."""
    marked = _kernels[func.__module__][func.__name__]
    if marked.compiled is None:
        with _compiling:
            if marked.compiled is None:
                _compile_module(func.__module__)
    return marked.compiled


def _compile_module(name: str) -> None:
    import numba

    module = vars(sys.modules[name])
    kernels = _kernels[name]
    # numba reads a function's globals when it compiles (at its first call): a copy of the module's in which each
    # kernel is its compiled form lets the same code objects call compiled code only
    namespace = dict(module)
    for key, marked in kernels.items():
        if marked.compiled_as is None:
            func = module[key]
            rebound = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
            rebound.__qualname__ = func.__qualname__
            namespace[key] = numba.njit(cache=True, nogil=True)(rebound)
    for key, marked in kernels.items():
        instead = marked.compiled_as
        if instead is not None:
            namespace[key] = namespace[instead] if isinstance(instead, str) else instead()
    for key, marked in kernels.items():
        marked.compiled = namespace[key]
