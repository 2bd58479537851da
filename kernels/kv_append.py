"""Write one chunk's K/V into the KV cache's storage in place (the sink or a ring slot).

The cache is allocated once (worldplay's stream/kv_cache.py): per layer a (B, H, cap, D) buffer
holding [sink chunks | ring slots], and a new chunk overwrites the oldest ring slot. Writing is a
strided copy of k, v (B, H, T, D) into tokens [offset, offset + T) of the K and V buffers; one
launch writes both, casting to the buffers' dtype on the way (e.g. fp32 activations into a bf16
cache). The buffers may be views (one layer of a (layers, B, H, cap, D) tensor): every stride is
passed, nothing is made contiguous, nothing is reallocated.

Which slot comes next, and the roll of the ring, stay the cache's business: this writes at the
token offset it is given (slot * chunk_tokens).
"""

from __future__ import annotations

from torch import Tensor

from kernels import KernelError
from kernels.jit import Launch, cdiv, check_launch, jit, next_pow2

tl = None   # triton.language, bound by the first launch (Triton is imported lazily: kernels/jit.py)

BLOCK_T = 32            # tokens per program on CUDA (x a whole head dim: 32 x 128 x 2 B = 8 KiB)
INTERPRET_BLOCK_T = 16  # the interpreter pays per program: few, small blocks


@jit
def _kv_append_kernel(K, V, BK, BV, s_kb, s_kh, s_kn, s_vb, s_vh, s_vn,
                      s_bkb, s_bkh, s_bkn, s_bvb, s_bvh, s_bvn, H, T, offset,
                      HEAD_DIM: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)      # int64: all layers of a big cache pass 2^31 elements
    h = (pid_bh % H).to(tl.int64)
    offs_t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_d = tl.arange(0, BLOCK_D)
    ok = (offs_t < T)[:, None] & (offs_d < HEAD_DIM)[None, :]
    dst_t = (offset + offs_t).to(tl.int64)
    k = tl.load(K + b * s_kb + h * s_kh + offs_t[:, None] * s_kn + offs_d[None, :], mask=ok)
    v = tl.load(V + b * s_vb + h * s_vh + offs_t[:, None] * s_vn + offs_d[None, :], mask=ok)
    tl.store(BK + b * s_bkb + h * s_bkh + dst_t[:, None] * s_bkn + offs_d[None, :],
             k.to(BK.dtype.element_ty), mask=ok)
    tl.store(BV + b * s_bvb + h * s_bvh + dst_t[:, None] * s_bvn + offs_d[None, :],
             v.to(BV.dtype.element_ty), mask=ok)


def _check(buf_k: Tensor, buf_v: Tensor, k: Tensor, v: Tensor, offset: int) -> None:
    for name, t in (("buf_k", buf_k), ("buf_v", buf_v), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise KernelError(f"kv_append: {name} must be (B, H, N, D), got {tuple(t.shape)}")
        if t.shape[-1] > 1 and t.stride(-1) != 1:
            raise KernelError(f"kv_append: {name} needs a contiguous head dim (stride 1), got {t.stride(-1)}")
    if buf_k.shape != buf_v.shape:
        raise KernelError(f"kv_append: buf_k {tuple(buf_k.shape)} and buf_v {tuple(buf_v.shape)} differ")
    if k.shape != v.shape:
        raise KernelError(f"kv_append: k {tuple(k.shape)} and v {tuple(v.shape)} differ")
    B, H, cap, D = buf_k.shape
    if k.shape[0] != B or k.shape[1] != H or k.shape[3] != D:
        raise KernelError(f"kv_append: k must be (B={B}, H={H}, T, D={D}) to fit the buffers, got {tuple(k.shape)}")
    T = k.shape[2]
    if not 0 <= offset <= cap - T:
        raise KernelError(f"kv_append: tokens [{offset}, {offset + T}) do not fit a buffer of {cap}; "
                          f"offset must lie in [0, {cap - T}]")
    if len({buf_k.device, buf_v.device, k.device, v.device}) != 1:
        raise KernelError("kv_append: buffers and k, v must be on one device")


def kv_append(buf_k: Tensor, buf_v: Tensor, k: Tensor, v: Tensor, offset: int) -> None:
    """Triton launcher: buf_k[:, :, offset:offset + T] = k and the same for v, in place."""
    _check(buf_k, buf_v, k, v, offset)
    check_launch(_kv_append_kernel, k.device)
    launch = kv_append_launch(buf_k, buf_v, k, v, offset, _kv_append_kernel.interpreted)
    if launch is not None:
        launch.run()


def kv_append_launch(buf_k: Tensor, buf_v: Tensor, k: Tensor, v: Tensor, offset: int,
                     interpreted: bool) -> Launch | None:
    """The kernel's arguments without launching (see kernels/aot.py); None when there is nothing to copy."""
    _check(buf_k, buf_v, k, v, offset)
    B, H, T, D = k.shape
    if T == 0 or B * H == 0 or D == 0:
        return None
    block_t = INTERPRET_BLOCK_T if interpreted else BLOCK_T
    block_d = next_pow2(D)
    args = (k, v, buf_k, buf_v, *k.stride()[:3], *v.stride()[:3], *buf_k.stride()[:3], *buf_v.stride()[:3],
            H, T, offset)
    consts = dict(HEAD_DIM=D, BLOCK_T=block_t, BLOCK_D=block_d)
    return Launch(_kv_append_kernel, (cdiv(T, block_t), B * H), args, consts, {})


def kv_append_reference(buf_k: Tensor, buf_v: Tensor, k: Tensor, v: Tensor, offset: int) -> None:
    """The same write in torch: two in-place slice copies."""
    _check(buf_k, buf_v, k, v, offset)
    T = k.shape[2]
    buf_k[:, :, offset:offset + T].copy_(k)
    buf_v[:, :, offset:offset + T].copy_(v)
