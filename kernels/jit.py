"""Kernels decorated on their first launch: compiled on CUDA, interpreted on CPU.

Triton decides between compiling and interpreting when each function is decorated, from
TRITON_INTERPRET at that moment. Decorating at the first launch means a test can set
TRITON_INTERPRET=1 and get interpreted kernels for CPU tensors, whatever was imported before it.

Triton's own library functions (tl.zeros, tl.sum, ...) are decorated when triton is imported,
and torch imports it by itself (torch.utils.flop_counter does), often before a test sets the
variable. The interpreter cannot call library functions decorated for compiling, so interpreted
launches run inside `_library_interpretable`, which lets it (it swaps JITFunction.__call__ for
the length of the launch; compiled launches never call it). So on CUDA kernels are compiled
(TRITON_INTERPRET unset at the first launch), on CPU they run in the interpreter (set), and
`check_launch` turns the other cases into one clear KernelError.

A kernel may also carry an autotuning spec (`jit(tune=...)`): a function returning
triton.autotune's keyword arguments, called on the first tuned launch (the configs are Triton
objects, so building them must wait until Triton is known to be there). Tuned launches are for
compiled kernels only; the interpreter always gets explicit tiles.

Triton is imported at the top, guarded: it is the `dev` extra, and only the kernel modules and
the tools around them (aot.py, bench.py) import this one. Kernel modules import
`triton.language as tl` themselves, the same way, and use `from __future__ import annotations`
so that `tl.constexpr` annotations stay strings until Triton reads them.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from kernels import INTERPRET_ENV, KernelError

try:  # Triton: the optional dev extra; without it a launch says what to install
    import triton
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction
except ImportError:
    triton = tl = InterpretedFunction = JITFunction = None


def _triton(what: str):
    if triton is None:
        raise KernelError(f"{what} needs Triton, which is not installed; `pip install triton` (Linux) "
                          f"or use the torch path (WORLDPLAY_KERNELS=torch)")
    return triton


def _is_interpreted(fn) -> bool:
    return isinstance(fn, InterpretedFunction)


class LazyKernel:
    """A Triton kernel function, decorated with triton.jit on first use; launch it through `Launch`."""

    def __init__(self, fn: Callable, tune: Callable[[], dict] | None = None):
        self.fn = fn
        self.tune = tune
        self.__name__ = fn.__name__
        self._kernel = None
        self._tuned = None

    @property
    def kernel(self):
        if self._kernel is None:
            self._kernel = _triton(self.__name__).jit(self.fn)
        return self._kernel

    @property
    def tuned(self):
        """The kernel wrapped in triton.autotune (its tuning cache lives as long as this object)."""
        if self.tune is None:
            raise KernelError(f"{self.__name__} has no autotuning configs; launch it with explicit tiles")
        if self._tuned is None:
            self._tuned = _triton(self.__name__).autotune(**self.tune())(self.kernel)
        return self._tuned

    @property
    def interpreted(self) -> bool:
        return _is_interpreted(self.kernel)


def jit(fn: Callable | None = None, *, tune: Callable[[], dict] | None = None):
    """@jit, or @jit(tune=spec) for a kernel that can also be launched autotuned."""
    if fn is None:
        return lambda f: LazyKernel(f, tune)
    return LazyKernel(fn, tune)


@contextmanager
def _library_interpretable() -> Iterator[None]:
    """Let the interpreter call Triton library functions that were decorated for compiling."""
    if _is_interpreted(tl.zeros):
        yield                                            # triton was imported in interpreter mode
        return
    compiled_call = JITFunction.__call__

    def interpreted_call(self, *args, **kwargs):
        fn = _INTERPRETED.get(self.fn)
        if fn is None:
            fn = _INTERPRETED[self.fn] = InterpretedFunction(self.fn)
        return fn(*args, **kwargs)

    JITFunction.__call__ = interpreted_call
    try:
        yield
    finally:
        JITFunction.__call__ = compiled_call


_INTERPRETED: dict[Callable, Any] = {}   # library function -> its interpreted twin


def check_launch(kernel: LazyKernel, device: torch.device) -> None:
    """Raise a KernelError saying how to fix it when `kernel` cannot run on `device` here."""
    name = kernel.__name__
    if device.type == "cpu" and not kernel.interpreted:  # imports and decorates on first call
        raise KernelError(f"{name}: Triton kernels run on CUDA; on CPU set {INTERPRET_ENV}=1 before the first "
                          f"launch (a slow interpreter, for tests) or use the torch path")
    if device.type not in ("cpu", "cuda"):
        raise KernelError(f"{name}: Triton kernels run on CUDA (or on CPU in the interpreter), "
                          f"not on {device.type}")


@dataclass
class Launch:
    """One kernel launch, prepared: what `run` does, and what kernels/aot.py compiles ahead of time."""
    kernel: LazyKernel
    grid: tuple[int, ...] | Callable[[dict], tuple[int, ...]]   # a callable of the tuned meta-parameters
    args: tuple                     # positional: tensors and runtime scalars
    constexprs: dict[str, Any]
    options: dict[str, int]         # num_warps / num_stages (compiled kernels only)
    tuned: bool = False             # autotuned: tiles, warps and stages come from the tuner

    def run(self) -> None:
        if self.tuned:
            self.kernel.tuned[self.grid](*self.args, **self.constexprs)
            return
        fn = self.kernel.kernel
        if not self.kernel.interpreted:
            fn[self.grid](*self.args, **self.constexprs, **self.options)
            return
        with _library_interpretable():
            fn[self.grid](*self.args, **self.constexprs)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)
