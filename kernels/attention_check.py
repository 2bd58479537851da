"""Shape checks for segmented attention, shared by the Triton launcher and the torch reference.

Both take the same arguments (see attention.py); the reference accepts any head dim and dtype
torch does, the kernel only what it was written for (`kernel_limits`). Every failure is a
KernelError naming the argument, what it got and what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kernels import KernelError

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
KERNEL_HEAD_DIMS = (16, 32, 64, 128)   # powers of two: tl.arange needs them, tl.dot needs >= 16
MIN_BLOCK = 16                          # tl.dot's smallest tile side
INTERPRET_BLOCK = MIN_BLOCK             # the interpreter runs numpy per block: its tiles stay smallest


@dataclass(frozen=True)
class AttentionShapes:
    batch: int
    heads: int
    n_q: int
    head_dim: int
    n_cache: int       # valid cache tokens (cache_len)
    n_mem: int
    n_cur: int


def _shape(t: Tensor) -> tuple:
    return tuple(t.shape)


def _pair(name: str, k: Tensor | None, v: Tensor | None, q: Tensor) -> int:
    """Token count of one (k, v) segment, after checking it against q (B, H, Nq, D)."""
    if k is None and v is None:
        return 0
    if k is None or v is None:
        raise KernelError(f"attention: give both {name} k and v or neither (got only one)")
    B, H, _, D = q.shape
    for what, t in (("k", k), ("v", v)):
        if t.dim() != 4 or t.shape[0] != B or t.shape[1] != H or t.shape[3] != D:
            raise KernelError(f"attention: {name} {what} must be (B={B}, H={H}, N, D={D}) like q, "
                              f"got {_shape(t)}")
        if t.device != q.device or t.dtype != q.dtype:
            raise KernelError(f"attention: {name} {what} is {t.dtype} on {t.device} but q is {q.dtype} "
                              f"on {q.device}; put every segment on q's device and dtype")
    if k.shape[2] != v.shape[2]:
        raise KernelError(f"attention: {name} k has {k.shape[2]} tokens but v has {v.shape[2]}")
    return int(k.shape[2])


def _valid(name: str, valid: Tensor | None, batch: int, n: int) -> None:
    if valid is None:
        return
    if valid.dtype != torch.bool or _shape(valid) != (batch, n):
        raise KernelError(f"attention: {name} must be a bool tensor of shape (B={batch}, {n}), "
                          f"got {valid.dtype} {_shape(valid)}")


def check_attention(q: Tensor, k: Tensor | None, v: Tensor | None, *, cache_k: Tensor | None,
                    cache_v: Tensor | None, cache_len: int | None, mem_k: Tensor | None,
                    mem_v: Tensor | None, mem_valid: Tensor | None, cur_valid: Tensor | None,
                    kernel: bool = False, block_m: int | None = None,
                    block_n: int | None = None) -> AttentionShapes:
    """Check everything the attention needs and return its sizes; kernel=True adds the kernel's limits."""
    if q.dim() != 4:
        raise KernelError(f"attention: q must be (B, H, Nq, D), got {_shape(q)}")
    B, H, Nq, D = q.shape
    cap = _pair("cache", cache_k, cache_v, q)
    n_cache = cap if cache_len is None else int(cache_len)
    if not 0 <= n_cache <= cap:
        raise KernelError(f"attention: cache_len={cache_len} must lie in [0, {cap}] (the cache buffers' length)")
    n_mem = _pair("memory", mem_k, mem_v, q)
    n_cur = _pair("current", k, v, q)
    _valid("mem_valid", mem_valid, B, n_mem)
    if mem_valid is not None and mem_k is None:
        raise KernelError("attention: mem_valid was given without memory k and v")
    _valid("cur_valid", cur_valid, B, n_cur)
    if cur_valid is not None and n_cur != Nq:
        raise KernelError(f"attention: cur_valid needs the queries to be the current tokens "
                          f"(Nq={Nq} == Nc={n_cur}), since padding tokens attend to themselves")
    for name, t in (("mem_valid", mem_valid), ("cur_valid", cur_valid)):
        if t is not None and t.device != q.device:
            raise KernelError(f"attention: {name} is on {t.device} but q is on {q.device}")
    sh = AttentionShapes(B, H, Nq, D, n_cache, n_mem, n_cur)
    if kernel:
        reason = kernel_limits(q, [cache_k, cache_v, mem_k, mem_v, k, v], block_m, block_n)
        if reason:
            raise KernelError(f"attention kernel: {reason}")
    return sh


def kernel_limits(q: Tensor, kv: list[Tensor | None], block_m: int | None = None,
                  block_n: int | None = None) -> str | None:
    """Why the Triton kernel cannot take these inputs (None: it can). The torch path takes them all."""
    D = q.shape[-1]
    if q.dtype not in KERNEL_DTYPES:
        return f"dtype {q.dtype} is not supported; use one of {', '.join(map(str, KERNEL_DTYPES))}"
    if D not in KERNEL_HEAD_DIMS:
        return f"head dim {D} is not supported; use one of {KERNEL_HEAD_DIMS} or the torch path"
    for t in [q, *kv]:
        if t is not None and t.shape[-1] > 1 and t.stride(-1) != 1:
            return "every tensor needs a contiguous last (head) dim; call .contiguous() first"
    for name, blk in (("block_m", block_m), ("block_n", block_n)):
        if blk is not None and (blk < MIN_BLOCK or blk & (blk - 1)):
            return f"{name}={blk} must be a power of two >= {MIN_BLOCK}"
    return None
