"""Segmented attention in plain torch: the reference the Triton kernel (attention.py) is held to.

Also the torch path of the dispatch (what runs on CPU and without Triton), so it stays what
worldplay's DiT did before the kernels: concatenate the segments, mask, SDPA, and no mask at all
unless some key is invalid (SDPA's fused paths need attn_mask=None). The arguments and the
visibility rules are attention.py's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kernels.attention_check import AttentionShapes, check_attention


def segmented_attention_reference(q: Tensor, k: Tensor | None = None, v: Tensor | None = None, *,
                                  cache_k: Tensor | None = None, cache_v: Tensor | None = None,
                                  cache_len: int | None = None, mem_k: Tensor | None = None,
                                  mem_v: Tensor | None = None, mem_valid: Tensor | None = None,
                                  cur_valid: Tensor | None = None, scale: float | None = None) -> Tensor:
    """softmax(q K^T * scale) V over [cache[:cache_len] | memory | current], (B, H, Nq, D)."""
    sh = check_attention(q, k, v, cache_k=cache_k, cache_v=cache_v, cache_len=cache_len, mem_k=mem_k,
                         mem_v=mem_v, mem_valid=mem_valid, cur_valid=cur_valid)
    ks, vs = [], []
    if sh.n_cache:
        ks.append(cache_k[:, :, :sh.n_cache])
        vs.append(cache_v[:, :, :sh.n_cache])
    if sh.n_mem:
        ks.append(mem_k)
        vs.append(mem_v)
    if sh.n_cur:
        ks.append(k)
        vs.append(v)
    if not ks:
        return torch.zeros_like(q)
    keys = ks[0] if len(ks) == 1 else torch.cat(ks, dim=2)                   # (B, H, Nk, D)
    vals = vs[0] if len(vs) == 1 else torch.cat(vs, dim=2)
    mask = _key_mask(q, sh, mem_valid, cur_valid)                            # (B, 1, Nq, Nk) or None
    if mask is None:
        return F.scaled_dot_product_attention(q, keys, vals, scale=scale)
    seen = mask.any(dim=-1, keepdim=True)                                    # (B, 1, Nq, 1)
    out = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask | ~seen, scale=scale)
    return torch.where(seen, out, torch.zeros((), dtype=out.dtype, device=out.device))


def _key_mask(q: Tensor, sh: AttentionShapes, mem_valid: Tensor | None, cur_valid: Tensor | None):
    """(B, 1, Nq, Nk) bool, True = visible, or None when every key is visible."""
    if mem_valid is None and cur_valid is None:
        return None
    n_keys = sh.n_cache + sh.n_mem + sh.n_cur
    ok = torch.ones(sh.batch, n_keys, dtype=torch.bool, device=q.device)
    if mem_valid is not None and sh.n_mem:
        ok[:, sh.n_cache:sh.n_cache + sh.n_mem] = mem_valid.to(q.device)
    if cur_valid is not None:
        ok[:, n_keys - sh.n_cur:] = cur_valid.to(q.device)
    mask = ok[:, None, None, :].expand(sh.batch, 1, sh.n_q, n_keys).clone()  # (B, 1, Nq, Nk)
    if cur_valid is not None:
        diag = torch.arange(sh.n_q, device=q.device)
        mask[:, 0, diag, n_keys - sh.n_cur + diag] = True    # a padding token sees itself
    return mask
