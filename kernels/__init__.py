"""Triton kernels for worldplay's hot paths, each with a torch reference beside it.

- attention.py: fused attention of fresh queries over a segmented KV (cache | memory | current),
  read in place, online softmax (flash style); attention_check.py: its shape checks.
- splat.py: z-buffered splat of candidate features into a canvas (the Warped Latent).
- kv_append.py: write a chunk's K/V into the cache's ring / sink buffers in place.
- dispatch.py: Triton on CUDA, the torch reference elsewhere; WORLDPLAY_KERNELS forces either.
- bench.py: `python -m kernels.bench` prints timings (needs CUDA for real numbers).
- aot.py: `python -m kernels.aot` compiles every kernel for sm_80 / sm_90 on a machine without a GPU.
- jit.py: Triton imported and kernels decorated lazily; compiled on CUDA, interpreted on CPU.

This package depends on nothing in worldplay (worldplay calls into it), so its one error type is
its own: `KernelError`, a ValueError with a one-line message naming the input and the fix.
Submodules are not imported here, so `import kernels` stays cheap and never imports Triton.
"""


class KernelError(ValueError):
    """Bad input to a kernel launcher, or a kernel path asked for that cannot run here."""


__all__ = ["KernelError"]
