"""The encodings of attention's q, k and v: PRoPE on the leading dims of each head, RoPE on the rest.

The DiT encodes its fresh tokens here (encode_qkv), caches K and V already encoded (the
encodings are per token), and brings each query's output back into its own camera frame
(decode_o); the attention itself is kernels/dispatch.py's. tests/segment_reference.py holds
the plain-torch attention over [sink | window | memory | current] with the mask rules, which the
tests check PRoPE / RoPE / cache invariances through.
"""

from __future__ import annotations

import torch
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.model.prope import ProjCams, prope_kv, prope_o, prope_q
from worldplay.model.rope import DEFAULT_BASE, HeadLayout, apply_rope, rope_angles


def encode_qkv(q: Tensor, k: Tensor, v: Tensor, layout: HeadLayout, cams: ProjCams | None,
               pos: Tensor | None, rope_base: float = DEFAULT_BASE) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v (..., head_dim) of tokens that share cameras and positions, encoded: PRoPE on all three
    (q <- P^T q, k and v <- P^-1 .), RoPE on q and k only, its angles computed once."""
    rope = _angles(layout, pos, rope_base)
    return (_encode(q, layout, cams, rope, prope_q), _encode(k, layout, cams, rope, prope_kv),
            _encode(v, layout, cams, None, prope_kv))


def decode_o(o: Tensor, layout: HeadLayout, cams: ProjCams | None) -> Tensor:
    """Bring the PRoPE block of the output back into each query's camera frame."""
    if cams is None or not layout.prope_dims:
        return o
    p = layout.prope_dims
    return torch.cat([prope_o(o[..., :p], cams), o[..., p:]], dim=-1)


def _angles(layout: HeadLayout, pos: Tensor | None, rope_base: float) -> tuple[Tensor, Tensor] | None:
    """(cos, sin) of the RoPE block, or None when there is no RoPE to apply."""
    if pos is None or not layout.rope_total:
        return None
    return rope_angles(pos, layout.rope_dims, rope_base)


def _encode(x: Tensor, layout: HeadLayout, cams, rope: tuple[Tensor, Tensor] | None, prope_fn) -> Tensor:
    if x.shape[-1] != layout.head_dim:
        raise WorldplayError(f"attention: head_dim {x.shape[-1]} does not match the layout's {layout.head_dim}")
    p = layout.prope_dims
    head, tail = x[..., :p], x[..., p:]
    if cams is not None and p:
        head = prope_fn(head, cams)
    if rope is not None:
        tail = apply_rope(tail, *rope)
    return torch.cat([head, tail], dim=-1)
