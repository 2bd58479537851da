"""Which implementation runs each kernel: Triton on CUDA, the torch reference elsewhere.

WORLDPLAY_KERNELS picks the policy (`use_kernels` overrides it inside a with-block, which is what
`worldplay bench --kernels` does):

- auto (default): Triton when the inputs are CUDA tensors, Triton is installed, no gradient is
  needed (the kernels are forward-only, training keeps torch's autograd) and the kernel takes the
  shapes; torch otherwise. If a Triton kernel fails to build or launch on this machine, auto warns
  once and uses torch for that kernel from then on, so play never stops on a kernel problem.
- triton: always Triton, and a KernelError saying why when it cannot run (CPU tensors without
  TRITON_INTERPRET=1, no Triton, gradients needed, an unsupported shape).
- torch: always the torch reference.

Nothing here imports Triton until a Triton path is taken: the kernel module (which imports it)
is imported then, so CPU play never pays for Triton, installed or not.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor

from kernels import KernelError, interpreter_requested, triton_available
from kernels.attention_check import kernel_limits
from kernels.attention_reference import segmented_attention_reference

ENV_VAR = "WORLDPLAY_KERNELS"
MODES = ("auto", "triton", "torch")
_override: list[str] = []          # stack of use_kernels() modes, innermost last
_broken: dict[str, str] = {}        # kernel name -> why auto stopped using Triton for it


def kernel_mode() -> str:
    """The policy in force: the innermost use_kernels(), else WORLDPLAY_KERNELS, else auto."""
    if _override:
        return _override[-1]
    mode = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise KernelError(f"{ENV_VAR}={mode!r} is not a kernel policy; use one of {', '.join(MODES)}")
    return mode


@contextmanager
def use_kernels(mode: str) -> Iterator[None]:
    """Force a policy (auto, triton or torch) inside the block, whatever the environment says."""
    if mode not in MODES:
        raise KernelError(f"kernels {mode!r} is not a kernel policy; use one of {', '.join(MODES)}")
    _override.append(mode)
    try:
        yield
    finally:
        _override.pop()


def _needs_grad(tensors: list[Tensor | None]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def choose(name: str, tensors: list[Tensor | None], unsupported: str | None = None) -> str:
    """'triton' or 'torch' for kernel `name` on these inputs; unsupported: why the kernel cannot
    take them (None if it can)."""
    mode = kernel_mode()
    if mode == "torch":
        return "torch"
    device = next(t.device for t in tensors if t is not None)
    grad = _needs_grad(tensors)
    if mode == "auto":
        ok = (device.type == "cuda" and not grad and unsupported is None and name not in _broken
              and triton_available())
        return "triton" if ok else "torch"
    if grad:
        raise KernelError(f"{name}: the Triton kernels are forward-only and these inputs need gradients; "
                          f"use {ENV_VAR}=torch (or auto) for training")
    if unsupported:
        raise KernelError(f"{name}: {unsupported}")
    if device.type == "cpu" and not interpreter_requested():
        raise KernelError(f"{name}: Triton was forced but the inputs are on the CPU; use CUDA tensors, set "
                          f"TRITON_INTERPRET=1 for Triton's (slow) interpreter, or {ENV_VAR}=auto")
    return "triton"


def _run(name: str, tensors: list[Tensor | None], unsupported: str | None, fast, slow, *args, **kw):
    if choose(name, tensors, unsupported) == "torch":
        return slow(*args, **kw)
    if kernel_mode() == "triton":
        return fast(*args, **kw)
    try:
        return fast(*args, **kw)
    except KernelError:
        raise
    except Exception as e:  # auto: a kernel that cannot build here must not stop the program
        _broken[name] = f"{type(e).__name__}: {e}"
        warnings.warn(f"Triton {name} failed on this machine ({_broken[name]}); using torch for it from now on",
                      RuntimeWarning, stacklevel=3)
        return slow(*args, **kw)


def _triton_attention(*args, **kw) -> Tensor:
    from kernels.attention import segmented_attention  # Triton: imported with the kernel, on its first use
    return segmented_attention(*args, **kw)


def attention(q: Tensor, k: Tensor | None = None, v: Tensor | None = None, **segments) -> Tensor:
    """Segmented attention (kernels/attention.py for the arguments), by the policy in force."""
    kv = [segments.get(n) for n in ("cache_k", "cache_v", "mem_k", "mem_v")] + [k, v]
    why = kernel_limits(q, kv)
    return _run("attention", [q, *kv], why, _triton_attention, segmented_attention_reference, q, k, v, **segments)
