"""Split over the keys (flash-decoding): how many splits, and the exact merge of their partials.

The attention kernel gives each program BLOCK_M queries of one (batch, head). At the tiny model's
shapes (960 queries, 4 heads, batch 1) that is 32 programs for an H100's 132 SMs: most of the GPU
idles. With a split, each program also takes one slice of the keys (the segments laid end to end,
[cache | memory | current], cut into equal runs) and writes its partial softmax state instead of
an output: the unnormalised accumulator sum_j exp2(s_j - m) v_j, the running max m (base-2
logits) and the denominator sum_j exp2(s_j - m). `_combine_splits_kernel` merges the splits' states
with the same rescaling the online softmax uses between key blocks, so the result is the
unsplit attention up to float rounding. A split (or the whole row) that saw no visible key has
m = -inf, denominator 0 and weighs nothing; a row that saw none at all stays 0, as without a split.

`choose_splits` is the launcher's policy (only on CUDA, only when the grid is small);
`combine_reference` is the merge in torch, what the combine kernel is tested against.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kernels import KernelError
from kernels.attention_check import INTERPRET_BLOCK
from kernels.jit import Launch, cdiv, jit

try:  # Triton: the optional dev extra; imported by the attention launcher, never by worldplay itself
    import triton.language as tl
except ImportError:
    tl = None

TARGET_PROGRAMS_PER_SM = 2   # ~2 resident attention programs per SM hide memory latency; fewer idles it
MIN_KEYS_PER_SPLIT = 256     # below this a split's partial write and merge cost more than its keys
MAX_SPLITS = 16              # the merge reads every split's (BLOCK_M, D) state: keep it a small loop
KEY_ALIGN = 128              # tuned launches: runs of keys are whole tiles of the largest BLOCK_N
COMBINE_BLOCK_M = 64         # rows per merge program on CUDA: (64, D) fp32 states, memory bound
COMBINE_WARPS = 4


def choose_splits(programs: int, n_keys: int, sms: int) -> int:
    """How many key splits to launch when the unsplit grid has `programs` programs on `sms` SMs."""
    target = TARGET_PROGRAMS_PER_SM * sms
    if programs >= target or n_keys < 2 * MIN_KEYS_PER_SPLIT:
        return 1
    return max(1, min(cdiv(target, programs), MAX_SPLITS, n_keys // MIN_KEYS_PER_SPLIT))


def split_keys(n_keys: int, splits: int, align: int) -> tuple[int, int]:
    """(keys per split, splits): runs of whole `align` tiles; fewer splits when the keys run out.
    Always a multiple of `align` (the one run of an unsplit launch too), so the kernel argument
    keeps one Triton specialisation (divisible by 16) whatever the key count."""
    if splits < 1:
        raise KernelError(f"attention: splits={splits} must be at least 1 (1: no split over the keys)")
    per = cdiv(cdiv(n_keys, splits), align) * align
    return (per, cdiv(n_keys, per)) if per else (0, 1)


def combine_reference(acc: Tensor, m: Tensor, denom: Tensor) -> Tensor:
    """The splits' states merged in torch: acc (S, B, H, N, D), m and denom (S, B, H, N), fp32 -> (B, H, N, D)."""
    top = m.amax(dim=0)                                                     # (B, H, N)
    top = torch.where(top == float("-inf"), torch.zeros_like(top), top)     # no key anywhere: shift by 0
    w = torch.exp2(m - top)                                                 # (S, B, H, N); 0 where m = -inf
    total = (denom * w).sum(dim=0)                                              # (B, H, N)
    out = (acc * w[..., None]).sum(dim=0)                                   # (B, H, N, D)
    return out / torch.where(total == 0, torch.ones_like(total), total)[..., None]


@jit
def _combine_splits_kernel(
        PACC, PM, PDEN, Out,
        s_as, s_ab, s_ah, s_an, s_ms, s_mb, s_mh, s_mn, s_ob, s_oh, s_on,
        H, n_q, n_splits,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < n_q
    # The split index only ever advances the pointers, so S x stride never meets int32 arithmetic.
    acc_ptr = PACC + b * s_ab + h * s_ah + offs_m[:, None] * s_an + offs_d[None, :]
    m_ptr = PM + b * s_mb + h * s_mh + offs_m * s_mn
    den_ptr = PDEN + b * s_mb + h * s_mh + offs_m * s_mn
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    for _ in range(n_splits):
        m_s = tl.load(m_ptr, mask=row_ok, other=float("-inf"))
        den_s = tl.load(den_ptr, mask=row_ok, other=0.0)
        acc_s = tl.load(acc_ptr, mask=row_ok[:, None], other=0.0)
        m_new = tl.maximum(m_i, m_s)
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)   # as in the kernel: never -inf - -inf
        alpha = tl.math.exp2(m_i - m_use)
        beta = tl.math.exp2(m_s - m_use)
        l_i = l_i * alpha + den_s * beta
        acc = acc * alpha[:, None] + acc_s * beta[:, None]
        m_i = m_new
        acc_ptr += s_as
        m_ptr += s_ms
        den_ptr += s_ms
    o = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    tl.store(Out + b * s_ob + h * s_oh + offs_m[:, None] * s_on + offs_d[None, :],
             o.to(Out.dtype.element_ty), mask=row_ok[:, None])


def split_buffers(q: Tensor, splits: int) -> tuple[Tensor, Tensor, Tensor]:
    """Empty fp32 partial states for `splits` splits of q's attention: acc, m, denom."""
    B, H, N, D = q.shape
    acc = torch.empty(splits, B, H, N, D, dtype=torch.float32, device=q.device)   # (S, B, H, N, D)
    m = torch.empty(splits, B, H, N, dtype=torch.float32, device=q.device)        # (S, B, H, N)
    return acc, m, torch.empty_like(m)


def combine_launch(acc: Tensor, m: Tensor, denom: Tensor, out: Tensor, interpreted: bool) -> Launch:
    """The merge of (acc, m, denom) into out (B, H, N, D); m and denom share their strides."""
    S, B, H, N, D = acc.shape
    if m.shape != (S, B, H, N) or denom.shape != m.shape or denom.stride() != m.stride() or out.shape != (B, H, N, D):
        raise KernelError(f"attention combine: states acc {tuple(acc.shape)}, m {tuple(m.shape)}, "
                          f"denom {tuple(denom.shape)} and out {tuple(out.shape)} do not match")
    if acc.stride(-1) != 1 or out.stride(-1) != 1:
        raise KernelError("attention combine: acc and out need a contiguous last (head) dim")
    bm = INTERPRET_BLOCK if interpreted else COMBINE_BLOCK_M
    args = (acc, m, denom, out, *acc.stride()[:4], *m.stride(), *out.stride()[:3], H, N, S)
    return Launch(_combine_splits_kernel, (cdiv(N, bm), B * H), args, dict(HEAD_DIM=D, BLOCK_M=bm),
                  dict(num_warps=COMBINE_WARPS, num_stages=1))
