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

Few queries (the tiny model's 960-token chunks on 4 heads) make too few programs to fill a big
GPU, so the launcher can also split the keys (attention_split.py, flash-decoding style): each
program walks one run of the segments laid end to end and leaves its partial softmax state, and
a small second kernel merges the runs exactly. On CUDA it splits when the grid would fall short
of TARGET_PROGRAMS_PER_SM and autotunes the tiles (attention_tune.py); the interpreter keeps
INTERPRET_BLOCK tiles and splits only when asked (`splits=`), as the tests do.

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

from kernels import KernelError
from kernels.attention_check import INTERPRET_BLOCK, check_attention
from kernels.attention_split import KEY_ALIGN, choose_splits, combine_launch, split_buffers, split_keys
from kernels.attention_tune import autotune_spec, sm_count
from kernels.jit import Launch, cdiv, check_launch, jit

try:  # Triton: the optional dev extra; dispatch.py imports this module only when a Triton path runs
    import triton.language as tl
except ImportError:
    tl = None   # the kernel's annotations stay strings; a launch says that Triton is missing

LOG2E = 1.0 / math.log(2.0)   # the kernel works in base 2: exp(x) = exp2(x * log2(e))
# (BLOCK_M, BLOCK_N, num_warps, num_stages) on CUDA when a config is forced untuned (kernels/aot.py,
# `python -m kernels.bench --sweep`), by input width and head dim: the Triton tutorial's usual
# winners on Hopper / Ampere. They also size the split decision of tuned launches.
CUDA_CONFIG_HALF = {16: (128, 64, 4, 3), 32: (128, 64, 4, 3), 64: (128, 64, 4, 3), 128: (128, 64, 8, 3)}
CUDA_CONFIG_FP32 = (64, 32, 4, 2)     # fp32 tiles are twice the bytes: smaller, or shared memory overflows


@jit(tune=autotune_spec)
def _segmented_attention_kernel(
        Q, CK, CV, MK, MV, MVALID, K, V, KVALID, Out, PACC, PM, PDEN,
        s_qb, s_qh, s_qn, s_ckb, s_ckh, s_ckn, s_cvb, s_cvh, s_cvn,
        s_mkb, s_mkh, s_mkn, s_mvb, s_mvh, s_mvn, s_kb, s_kh, s_kn, s_vb, s_vh, s_vn,
        s_ob, s_oh, s_on, s_mvalid, s_kvalid, s_as, s_ab, s_ah, s_an, s_ms, s_mb, s_mh, s_mn,
        H, n_q, n_cache, n_mem, n_cur, keys_per_split, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        HAS_MEM_VALID: tl.constexpr, HAS_CUR_VALID: tl.constexpr, SPLIT: tl.constexpr,
        UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    split = tl.program_id(2)
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
    # A split owns keys [split_lo, split_lo + keys_per_split) of [cache | memory | current].
    split_lo = split * keys_per_split
    # The three segments, unrolled at compile time; each branch only rebinds where keys live.
    for seg in tl.static_range(3):
        if seg == 0:
            k_base = CK + b * s_ckb + h * s_ckh
            v_base = CV + b * s_cvb + h * s_cvh
            sk = s_ckn
            sv = s_cvn
            n_keys = n_cache
            seg_start = 0
        elif seg == 1:
            k_base = MK + b * s_mkb + h * s_mkh
            v_base = MV + b * s_mvb + h * s_mvh
            sk = s_mkn
            sv = s_mvn
            n_keys = n_mem
            seg_start = n_cache
        else:
            k_base = K + b * s_kb + h * s_kh
            v_base = V + b * s_vb + h * s_vh
            sk = s_kn
            sv = s_vn
            n_keys = n_cur
            seg_start = n_cache + n_mem
        if SPLIT:   # this split's part of the segment, in the segment's own indices (may be empty)
            lo = tl.maximum(split_lo - seg_start, 0)
            hi = tl.minimum(split_lo + keys_per_split - seg_start, n_keys)
        else:
            lo = 0
            hi = n_keys
        for start in range(lo, hi, BLOCK_N):
            offs_n = start + tl.arange(0, BLOCK_N)
            col_ok = offs_n < hi
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
    if SPLIT:   # the partial state, unnormalised: attention_split.py merges the splits
        sp = split.to(tl.int64)
        tl.store(PACC + sp * s_as + b * s_ab + h * s_ah + offs_m[:, None] * s_an + offs_d[None, :],
                 acc, mask=row_ok[:, None])
        state = sp * s_ms + b * s_mb + h * s_mh + offs_m * s_mn
        tl.store(PM + state, m_i, mask=row_ok)
        tl.store(PDEN + state, l_i, mask=row_ok)
    else:
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
                        config: Config | None = None, splits: int | None = None) -> Tensor:
    """Triton launcher: softmax(q K^T * scale) V over [cache[:cache_len] | memory | current].

    q (B, H, Nq, D); k, v: the current segment (B, H, Nc, D) or None; see the module docstring
    for the segments. scale defaults to 1 / sqrt(D). Returns (B, H, Nq, D) in q's dtype.
    config forces (BLOCK_M, BLOCK_N, num_warps, num_stages), tiles powers of two >= 16 (default:
    autotuned on CUDA, INTERPRET_BLOCK in the interpreter). splits: key splits (1: none; default:
    chosen from the grid size on CUDA, none in the interpreter); fewer run when the keys run out.
    """
    launches, out = attention_launches(q, k, v, cache_k=cache_k, cache_v=cache_v, cache_len=cache_len,
                                       mem_k=mem_k, mem_v=mem_v, mem_valid=mem_valid, cur_valid=cur_valid,
                                       scale=scale, config=config, splits=splits)
    if out.numel():
        for launch in launches:
            launch.run()
    return out


def planned_splits(q: Tensor, n_keys: int, config: Config | None, splits: int | None,
                   interpreted: bool) -> tuple[int, int]:
    """(keys per split, splits) the launcher runs: asked for, or by the grid size on CUDA."""
    tuned = config is None and not interpreted
    bm, bn, _, _ = config or default_config(q.dtype, q.shape[-1], interpreted)
    if splits is None:
        programs = cdiv(q.shape[2], bm) * q.shape[0] * q.shape[1]
        splits = 1 if interpreted else choose_splits(programs, n_keys, sm_count(q.device))
    return split_keys(n_keys, splits, KEY_ALIGN if tuned else bn)


def attention_launches(q: Tensor, k: Tensor | None, v: Tensor | None, *, cache_k: Tensor | None,
                       cache_v: Tensor | None, cache_len: int | None, mem_k: Tensor | None,
                       mem_v: Tensor | None, mem_valid: Tensor | None, cur_valid: Tensor | None,
                       scale: float | None, config: Config | None, splits: int | None = None,
                       interpreted: bool | None = None) -> tuple[list[Launch], Tensor]:
    """Checked launches (the attention; with a split, then the merge) and the output buffer, not run.
    interpreted None: as the kernel will run here (checked, so shape errors come before Triton's);
    kernels/aot.py passes False and a config. Tuned (config None, compiled) launches need CUDA."""
    sh = check_attention(q, k, v, cache_k=cache_k, cache_v=cache_v, cache_len=cache_len, mem_k=mem_k,
                         mem_v=mem_v, mem_valid=mem_valid, cur_valid=cur_valid, kernel=True,
                         block_m=config and config[0], block_n=config and config[1])
    if interpreted is None:
        check_launch(_segmented_attention_kernel, q.device)
        interpreted = _segmented_attention_kernel.interpreted
    tuned = config is None and not interpreted
    if tuned and q.device.type != "cuda":
        raise KernelError("attention: autotuned launches run on CUDA; pass config= to prepare one elsewhere")
    bm, bn, warps, stages = config or default_config(q.dtype, sh.head_dim, interpreted)
    keys_per_split, n_splits = planned_splits(q, sh.n_cache + sh.n_mem + sh.n_cur, config, splits, interpreted)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if n_splits > 1:
        acc, m, denom = split_buffers(q, n_splits)
        part = (*acc.stride()[:4], *m.stride())
    else:   # unused: the unsplit kernel stores straight into out
        acc = m = denom = out
        part = (0,) * 8
    # Absent segments get a stand-in tensor and length 0, so the kernel never reads them.
    ck, cv = (cache_k, cache_v) if sh.n_cache else (q, q)
    mk, mv = (mem_k, mem_v) if sh.n_mem else (q, q)
    kk, vv = (k, v) if sh.n_cur else (q, q)
    mval = mem_valid.contiguous().view(torch.uint8) if mem_valid is not None else out
    kval = cur_valid.contiguous().view(torch.uint8) if cur_valid is not None else out
    scale = 1.0 / math.sqrt(sh.head_dim) if scale is None else scale
    args = (q, ck, cv, mk, mv, mval, kk, vv, kval, out, acc, m, denom,
            *q.stride()[:3], *ck.stride()[:3], *cv.stride()[:3], *mk.stride()[:3], *mv.stride()[:3],
            *kk.stride()[:3], *vv.stride()[:3], *out.stride()[:3], mval.stride(0), kval.stride(0), *part,
            sh.heads, sh.n_q, sh.n_cache, sh.n_mem, sh.n_cur, keys_per_split, scale * LOG2E)
    consts = dict(HEAD_DIM=sh.head_dim, HAS_MEM_VALID=mem_valid is not None,
                  HAS_CUR_VALID=cur_valid is not None, SPLIT=n_splits > 1,
                  UPCAST=interpreted and q.dtype == torch.bfloat16,
                  PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    n_bh = sh.batch * sh.heads
    if tuned:
        launch = Launch(_segmented_attention_kernel, lambda meta: (cdiv(sh.n_q, meta["BLOCK_M"]), n_bh, n_splits),
                        args, consts, {}, tuned=True)
    else:
        launch = Launch(_segmented_attention_kernel, (cdiv(sh.n_q, bm), n_bh, n_splits), args,
                        dict(consts, BLOCK_M=bm, BLOCK_N=bn), dict(num_warps=warps, num_stages=stages))
    if n_splits == 1:
        return [launch], out
    return [launch, combine_launch(acc, m, denom, out, interpreted)], out
