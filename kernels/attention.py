"""Fused attention of fresh queries over a segmented key sequence, read in place.

The streamer's queries (a chunk's tokens, or its memory tokens) attend over up to three key
segments that live in different buffers:

    cache    k, v (B, H, >= cache_len, D): the KV cache in storage order, first cache_len valid
    memory   k, v (B, H, M, D), validity (B, M) optional: the chunk's memory-token K/V
    current  k, v (B, H, Nc, D), validity (B, Nc) optional: the fresh tokens' own K/V

Once positions are encoded, attention does not care about key order, so nothing is concatenated:
one online-softmax pass (Flash Attention 2, as in Triton's fused-attention tutorial) walks the
segments in turn. Every key is visible except invalid memory / current keys; with a current
validity mask, query i always sees current key i (needs Nq == Nc: a padding token attends to
itself, so no row is empty - what worldplay's DiT does for padded memory tokens). A row that
sees no key at all gets zeros.

The same attention in plain torch, the dispatch's path without Triton, is attention_reference.py.

Encodings are applied outside: q, k, v arrive PRoPE/RoPE-encoded and the caller applies the PRoPE
output transform. DESIGN §7's stretch goal (RoPE at fractional positions and the PRoPE 4x4
transforms inside the kernel) is not done: the encoded K/V must be materialised anyway for the
cache write and the once-per-chunk memory K/V, so fusing would only save the q encode and the
output decode.

fp32 accumulation for fp32 / bf16 / fp16 inputs, head dims 16..128 (powers of two). fp32 inputs
use IEEE dots (no TF32), so they match the reference to float precision.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kernels.attention_check import check_attention
from kernels.jit import Launch, cdiv, check_launch, jit

try:  # Triton: the optional dev extra; dispatch.py imports this module only when a Triton path runs
    import triton.language as tl
except ImportError:
    tl = None   # the kernel's annotations stay strings; a launch says that Triton is missing

LOG2E = 1.0 / math.log(2.0)   # the kernel works in base 2: exp(x) = exp2(x * log2(e))
# (BLOCK_M, BLOCK_N, num_warps, num_stages) on CUDA, by input width and head dim; the Triton
# tutorial's usual winners on Hopper / Ampere. `python -m kernels.bench` sweeps alternatives.
CUDA_CONFIG_HALF = {16: (128, 64, 4, 3), 32: (128, 64, 4, 3), 64: (128, 64, 4, 3), 128: (128, 64, 8, 3)}
CUDA_CONFIG_FP32 = (64, 32, 4, 2)     # fp32 tiles are twice the bytes: smaller, or shared memory overflows
INTERPRET_BLOCK = 16                  # the interpreter runs numpy per block: the smallest tl.dot tile


@jit
def _segmented_attention_kernel(
        Q, CK, CV, MK, MV, MVALID, K, V, KVALID, Out,
        s_qb, s_qh, s_qn, s_ckb, s_ckh, s_ckn, s_cvb, s_cvh, s_cvn,
        s_mkb, s_mkh, s_mkn, s_mvb, s_mvh, s_mvn, s_kb, s_kh, s_kn, s_vb, s_vh, s_vn,
        s_ob, s_oh, s_on, s_mvalid, s_kvalid,
        H, n_q, n_cache, n_mem, n_cur, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        HAS_MEM_VALID: tl.constexpr, HAS_CUR_VALID: tl.constexpr, UPCAST: tl.constexpr,
        PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)          # int64 offsets: batch x stride of a big cache can pass 2^31
    h = (pid_bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < n_q
    q = tl.load(Q + b * s_qb + h * s_qh + offs_m[:, None] * s_qn + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)                           # (BLOCK_M, D)
    if UPCAST:  # the interpreter's bf16 dot is wrong (numpy has no bf16): do it in fp32 there
        q = q.to(tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)     # running max of base-2 logits
    l_i = tl.zeros([BLOCK_M], tl.float32)                   # running softmax denominator
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    # The three segments, unrolled at compile time; each branch only rebinds where keys live.
    for seg in tl.static_range(3):
        if seg == 0:
            k_base = CK + b * s_ckb + h * s_ckh
            v_base = CV + b * s_cvb + h * s_cvh
            sk = s_ckn
            sv = s_cvn
            n_keys = n_cache
        elif seg == 1:
            k_base = MK + b * s_mkb + h * s_mkh
            v_base = MV + b * s_mvb + h * s_mvh
            sk = s_mkn
            sv = s_mvn
            n_keys = n_mem
        else:
            k_base = K + b * s_kb + h * s_kh
            v_base = V + b * s_vb + h * s_vh
            sk = s_kn
            sv = s_vn
            n_keys = n_cur
        for start in range(0, n_keys, BLOCK_N):
            offs_n = start + tl.arange(0, BLOCK_N)
            col_ok = offs_n < n_keys
            kt = tl.load(k_base + offs_n[None, :] * sk + offs_d[:, None],
                         mask=col_ok[None, :], other=0.0)                  # (D, BLOCK_N)
            vb = tl.load(v_base + offs_n[:, None] * sv + offs_d[None, :],
                         mask=col_ok[:, None], other=0.0)                  # (BLOCK_N, D)
            if UPCAST:
                kt = kt.to(tl.float32)
                vb = vb.to(tl.float32)
            s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale     # (BLOCK_M, BLOCK_N)
            see = col_ok[None, :]
            if seg == 1:
                if HAS_MEM_VALID:
                    ok = tl.load(MVALID + b * s_mvalid + offs_n, mask=col_ok, other=0)
                    see = see & (ok != 0)[None, :]
            if seg == 2:
                if HAS_CUR_VALID:
                    ok = tl.load(KVALID + b * s_kvalid + offs_n, mask=col_ok, other=0)
                    own = col_ok[None, :] & (offs_n[None, :] == offs_m[:, None])
                    see = (see & (ok != 0)[None, :]) | own
            s = tl.where(see, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            # A row with nothing visible yet keeps max -inf; shift by 0 there so that
            # exp2(-inf - -inf) never makes a NaN (its p and alpha are then exactly 0).
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.math.exp2(s - m_use[:, None])
            alpha = tl.math.exp2(m_i - m_use)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None]
            acc = tl.dot(p.to(vb.dtype), vb, acc, input_precision=PRECISION)
            m_i = m_new
    o = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]      # rows that saw nothing stay 0
    tl.store(Out + b * s_ob + h * s_oh + offs_m[:, None] * s_on + offs_d[None, :],
             o.to(Out.dtype.element_ty), mask=row_ok[:, None])


Config = tuple[int, int, int, int]   # (BLOCK_M, BLOCK_N, num_warps, num_stages)


def default_config(dtype: torch.dtype, head_dim: int, interpreted: bool) -> Config:
    if interpreted:
        return INTERPRET_BLOCK, INTERPRET_BLOCK, 1, 1
    if dtype == torch.float32:
        return CUDA_CONFIG_FP32
    return CUDA_CONFIG_HALF[head_dim]


def segmented_attention(q: Tensor, k: Tensor | None = None, v: Tensor | None = None, *,
                        cache_k: Tensor | None = None, cache_v: Tensor | None = None,
                        cache_len: int | None = None, mem_k: Tensor | None = None,
                        mem_v: Tensor | None = None, mem_valid: Tensor | None = None,
                        cur_valid: Tensor | None = None, scale: float | None = None,
                        config: Config | None = None) -> Tensor:
    """Triton launcher: softmax(q K^T * scale) V over [cache[:cache_len] | memory | current].

    q (B, H, Nq, D); k, v: the current segment (B, H, Nc, D) or None; see the module docstring
    for the segments. scale defaults to 1 / sqrt(D). Returns (B, H, Nq, D) in q's dtype.
    config overrides (BLOCK_M, BLOCK_N, num_warps, num_stages); tiles are powers of two >= 16.
    """
    launch, out = attention_launch(q, k, v, cache_k=cache_k, cache_v=cache_v, cache_len=cache_len,
                                   mem_k=mem_k, mem_v=mem_v, mem_valid=mem_valid, cur_valid=cur_valid,
                                   scale=scale, config=config)
    if out.numel():
        launch.run()
    return out


def attention_launch(q: Tensor, k: Tensor | None, v: Tensor | None, *, cache_k: Tensor | None,
                     cache_v: Tensor | None, cache_len: int | None, mem_k: Tensor | None,
                     mem_v: Tensor | None, mem_valid: Tensor | None, cur_valid: Tensor | None,
                     scale: float | None, config: Config | None,
                     interpreted: bool | None = None) -> tuple[Launch, Tensor]:
    """Checked kernel arguments and the output buffer, without launching. interpreted None: as the
    kernel will run here (checked, so shape errors come before Triton's); kernels/aot.py passes False."""
    sh = check_attention(q, k, v, cache_k=cache_k, cache_v=cache_v, cache_len=cache_len, mem_k=mem_k,
                         mem_v=mem_v, mem_valid=mem_valid, cur_valid=cur_valid, kernel=True,
                         block_m=config and config[0], block_n=config and config[1])
    if interpreted is None:
        check_launch(_segmented_attention_kernel, q.device)
        interpreted = _segmented_attention_kernel.interpreted
    bm, bn, warps, stages = config or default_config(q.dtype, sh.head_dim, interpreted)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    # Absent segments get a stand-in tensor and length 0, so the kernel never reads them.
    ck, cv = (cache_k, cache_v) if sh.n_cache else (q, q)
    mk, mv = (mem_k, mem_v) if sh.n_mem else (q, q)
    kk, vv = (k, v) if sh.n_cur else (q, q)
    mval = mem_valid.contiguous().view(torch.uint8) if mem_valid is not None else out
    kval = cur_valid.contiguous().view(torch.uint8) if cur_valid is not None else out
    scale = 1.0 / math.sqrt(sh.head_dim) if scale is None else scale
    args = (q, ck, cv, mk, mv, mval, kk, vv, kval, out,
            *q.stride()[:3], *ck.stride()[:3], *cv.stride()[:3], *mk.stride()[:3], *mv.stride()[:3],
            *kk.stride()[:3], *vv.stride()[:3], *out.stride()[:3], mval.stride(0), kval.stride(0),
            sh.heads, sh.n_q, sh.n_cache, sh.n_mem, sh.n_cur, scale * LOG2E)
    consts = dict(HEAD_DIM=sh.head_dim, BLOCK_M=bm, BLOCK_N=bn, HAS_MEM_VALID=mem_valid is not None,
                  HAS_CUR_VALID=cur_valid is not None, UPCAST=interpreted and q.dtype == torch.bfloat16,
                  PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    grid = (cdiv(sh.n_q, bm), sh.batch * sh.heads)
    return Launch(_segmented_attention_kernel, grid, args, consts, dict(num_warps=warps, num_stages=stages)), out
