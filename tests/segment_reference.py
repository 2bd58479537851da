"""Reference attention over the streamer's segments: [sink | window | memory | current], for tests.

Plain torch, straightforward on purpose: it states the encodings and mask rules in one place and
the tests check PRoPE / RoPE / cache invariances through it. The DiT uses only the encoders
(worldplay/model/encodings.py), with its own mask (dit.full_mask) and the attention dispatch of
kernels/ (whose torch reference is kernels/attention_reference.py).

The key sequence is the concatenation of the segments. The *fresh* tokens - the last
`q.shape[2]` of the sequence - come in raw (q, k, v) with their cameras and positions, and are
encoded (PRoPE on the leading dims, RoPE on the rest). Everything before them comes from the
cache already encoded: because the encodings are per token, K and V are cached after them.

Mask rules (True = may attend):
- current tokens see sink, window and memory; among themselves all (bidirectional) or frames
  up to their own (block_causal);
- memory tokens see sink, window and memory, never current (noisy) tokens - which is what
  makes their K/V independent of the denoising step, so they are computed once per chunk;
- sink / window tokens (if ever fresh) see only sink and window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.model.encodings import decode_o, encode_qkv
from worldplay.model.prope import ProjCams
from worldplay.model.rope import DEFAULT_BASE, HeadLayout

SINK, WINDOW, MEMORY, CURRENT = range(4)
MASK_MODES = ("bidirectional", "block_causal")


@dataclass(frozen=True)
class Segments:
    """Token counts of the key sequence, in order."""
    sink: int = 0
    window: int = 0
    memory: int = 0
    current: int = 0
    frames: int = 1      # frames in the current segment (block_causal masks by frame)

    @property
    def total(self) -> int:
        return self.sink + self.window + self.memory + self.current

    def segment_ids(self, device=None) -> Tensor:
        """(total,) long: SINK / WINDOW / MEMORY / CURRENT per key position."""
        counts = torch.tensor([self.sink, self.window, self.memory, self.current], device=device)
        return torch.repeat_interleave(torch.arange(4, device=device), counts)


def build_block_mask(seg: Segments, n_query: int, mode: str = "bidirectional", device=None) -> Tensor:
    """(n_query, total) bool mask for the last n_query positions attending to all positions."""
    if mode not in MASK_MODES:
        raise WorldplayError(f"attention mask_mode={mode!r}; use one of {MASK_MODES}")
    if not 0 < n_query <= seg.total:
        raise WorldplayError(f"attention: {n_query} query tokens for a sequence of {seg.total}")
    kid = seg.segment_ids(device)                                            # (Nk,)
    qid = kid[seg.total - n_query:]                                          # (Nq,)
    q_cur, k_cur = qid[:, None] == CURRENT, kid[None, :] == CURRENT
    q_mem = qid[:, None] == MEMORY
    cached = kid[None, :] <= WINDOW                                          # sink or window
    mask = cached | ((q_cur | q_mem) & (kid[None, :] == MEMORY)) | (q_cur & k_cur)
    if mode == "block_causal" and seg.current:
        if seg.current % seg.frames:
            raise WorldplayError(f"attention: {seg.current} current tokens do not split into {seg.frames} frames")
        per = seg.current // seg.frames
        start = seg.total - seg.current
        frame_k = (torch.arange(seg.total, device=device) - start).clamp_min(0) // per    # (Nk,)
        frame_q = frame_k[seg.total - n_query:]
        mask &= ~(q_cur & k_cur & (frame_k[None, :] > frame_q[:, None]))
    return mask


def encode_q(q: Tensor, layout: HeadLayout, cams: ProjCams | None, pos: Tensor | None,
             rope_base: float = DEFAULT_BASE) -> Tensor:
    """Queries encoded as the DiT encodes them (encode_qkv, with q standing in for k and v)."""
    return encode_qkv(q, q, q, layout, cams, pos, rope_base)[0]


def encode_kv(k: Tensor, v: Tensor, layout: HeadLayout, cams: ProjCams | None, pos: Tensor | None,
              rope_base: float = DEFAULT_BASE) -> tuple[Tensor, Tensor]:
    """K and V as they go into the cache: PRoPE on both, RoPE on K only."""
    return encode_qkv(k, k, v, layout, cams, pos, rope_base)[1:]


def segment_attention(q: Tensor, k: Tensor, v: Tensor, *, segments: Segments, layout: HeadLayout,
                      cams: ProjCams | None = None, pos: Tensor | None = None,
                      cache_k: Tensor | None = None, cache_v: Tensor | None = None,
                      mask_mode: str = "bidirectional", key_valid: Tensor | None = None,
                      rope_base: float = DEFAULT_BASE, return_kv: bool = False):
    """Attention of the fresh tokens over [cache | fresh].

    q, k, v: (B, H, Nf, Dh) raw, for the last Nf tokens of the sequence; cams: their PRoPE
    matrices (B, Nf, 4, 4) (None: no PRoPE); pos: their (t, y, x) positions (B, Nf, 3) or
    (Nf, 3) (None: no RoPE); cache_k / cache_v: (B, H, total - Nf, Dh) already encoded;
    key_valid: (B, total) bool, False for padding (e.g. unused memory slots).
    Returns out (B, H, Nf, Dh), plus the encoded fresh (k, v) if return_kv.
    """
    B, H, Nf, _ = q.shape
    n_cache = segments.total - Nf
    if k.shape[2] != Nf or v.shape[2] != Nf:
        raise WorldplayError(f"attention: q has {Nf} tokens but k/v have {k.shape[2]}/{v.shape[2]}")
    if n_cache and (cache_k is None or cache_k.shape[2] != n_cache or cache_v.shape[2] != n_cache):
        got = None if cache_k is None else cache_k.shape[2]
        raise WorldplayError(f"attention: segments {segments} need {n_cache} cached tokens, got {got}")
    qe, ke, ve = encode_qkv(q, k, v, layout, cams, pos, rope_base)
    keys = torch.cat([cache_k, ke], dim=2) if n_cache else ke                # (B, H, Nk, Dh)
    vals = torch.cat([cache_v, ve], dim=2) if n_cache else ve
    mask = build_block_mask(segments, Nf, mask_mode, q.device)[None, None]   # (1, 1, Nf, Nk)
    if key_valid is not None:
        diag = torch.zeros(Nf, segments.total, dtype=torch.bool, device=q.device)
        diag[torch.arange(Nf), n_cache + torch.arange(Nf)] = True            # a padded token sees itself
        mask = (mask & key_valid[:, None, None, :].to(q.device)) | diag      # (B, 1, Nf, Nk)
    out = F.scaled_dot_product_attention(qe, keys, vals, attn_mask=mask)
    out = decode_o(out, layout, cams)
    return (out, ke, ve) if return_kv else out
