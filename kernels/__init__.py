"""Triton kernels for worldplay's hot paths, each with a torch reference beside it.

- attention.py: fused attention of fresh queries over a segmented KV (cache | memory | current),
  read in place, online softmax (flash style); attention_reference.py: the same in plain torch;
  attention_check.py: the shape checks both share; attention_split.py: the split over the keys
  for small grids and the exact merge of the splits; attention_tune.py: CUDA autotuning configs.
- dispatch.py: Triton on CUDA, the torch reference elsewhere; WORLDPLAY_KERNELS forces either.
- bench.py: `python -m kernels.bench` prints timings (needs CUDA for real numbers).
- aot.py: `python -m kernels.aot` compiles every kernel for sm_80 / sm_90 on a machine without a GPU.
- gpu_check.py (+ gpu_summary.py): `make gpu-check`, everything a lent GPU should measure, in 4 minutes.
- jit.py: kernels decorated lazily (compiled on CUDA, interpreted on CPU) and launched.

Triton is optional (the `dev` extra, Linux only): the kernel modules import it at their top,
guarded, and the dispatcher imports them only when a Triton path is taken, so the CPU torch path
(`make play`) never needs it. The z-buffered splat and the KV-cache append that DESIGN §7 also
lists run in torch only (memory/splat.py, model/kv_cache.py): their Triton kernels were never
called and are gone; a cache write is one copy per layer, and the splat's cost is the projection
around it, not the z-buffer.

This package depends on nothing in worldplay (worldplay calls into it), so its one error type is
its own: `KernelError`, a ValueError with a one-line message naming the input and the fix.
Submodules are not imported here, so `import kernels` stays cheap and never imports Triton.
"""

from __future__ import annotations

import importlib.util
import os

INTERPRET_ENV = "TRITON_INTERPRET"
TRUE_WORDS = ("1", "true", "yes", "on")


class KernelError(ValueError):
    """Bad input to a kernel launcher, or a kernel path asked for that cannot run here."""


def triton_available() -> bool:
    """Triton is installed (without importing it: that takes a while)."""
    return importlib.util.find_spec("triton") is not None


def interpreter_requested() -> bool:
    """TRITON_INTERPRET=1 in the environment now (Triton reads it when decorating a kernel)."""
    return os.environ.get(INTERPRET_ENV, "").strip().lower() in TRUE_WORDS


__all__ = ["INTERPRET_ENV", "KernelError", "interpreter_requested", "triton_available"]
