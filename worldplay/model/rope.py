"""RoPE at continuous positions over (t, y, x), on the head dims PRoPE does not use.

Each head's dims are laid out [PRoPE block | RoPE block]. The RoPE block of R dims is split
into halves (x1 | x2) ("NeoX" layout: no interleaving, so kernels read contiguous halves);
pair i = (x1[i], x2[i]) rotates by angle_i = pos[axis(i)] * freq_i. The R/2 pairs are shared
among the axes t, y, x (y and x get the larger shares: most tokens of a chunk differ in space).

Positions are floats: memory tokens sit at their *reprojected, fractional* (y, x) in the target
view (Warped RoPE), so nothing here rounds. Only q and k are rotated (v and the output are not),
so scores depend on position differences only: <R(a) q, R(b) k> = <q, R(b - a) k>.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from worldplay.errors import WorldplayError

AXES = ("t", "y", "x")
DEFAULT_BASE = 100.0   # as PRoPE's reference: positions are tens of tokens / frames, not 10k words


@dataclass(frozen=True)
class HeadLayout:
    """How one attention head's dims are shared between PRoPE and RoPE."""
    head_dim: int
    prope_dims: int                      # leading dims in 4x4 projective blocks (0: no PRoPE)
    rope_dims: tuple[int, int, int]      # (t, y, x) dims of the trailing RoPE block, each even

    @classmethod
    def split(cls, head_dim: int, prope_dims: int) -> "HeadLayout":
        """Give `prope_dims` to PRoPE and share the rest among (t, y, x)."""
        rest = head_dim - prope_dims
        if prope_dims % 4 or rest < 0 or rest % 2:
            raise WorldplayError(f"head layout: prope_dims={prope_dims} must be a multiple of 4 and leave an "
                                 f"even number of the head's {head_dim} dims for RoPE")
        pairs = rest // 2
        spatial = math.ceil(pairs / 3)
        spatial = min(spatial, pairs // 2)
        return cls(head_dim, prope_dims, (2 * (pairs - 2 * spatial), 2 * spatial, 2 * spatial))

    @property
    def rope_total(self) -> int:
        return sum(self.rope_dims)


def rope_frequencies(dims: tuple[int, ...], base: float = DEFAULT_BASE, device=None) -> Tensor:
    """Frequencies (R/2,) for pairs in axis order: base^(-i/k), i < k = dims[axis] / 2."""
    parts = []
    for d in dims:
        k = d // 2
        parts.append(base ** (-torch.arange(k, dtype=torch.float64, device=device) / max(k, 1)))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64, device=device)


def rope_angles(pos: Tensor, dims: tuple[int, int, int], base: float = DEFAULT_BASE) -> tuple[Tensor, Tensor]:
    """pos (..., N, 3) as (t, y, x) floats -> (cos, sin), each (..., N, R/2) in pos's dtype."""
    if pos.shape[-1] != len(AXES):
        raise WorldplayError(f"rope_angles: positions must end in 3 values (t, y, x), got {tuple(pos.shape)}")
    if any(d % 2 for d in dims):
        raise WorldplayError(f"rope_angles: every axis needs an even number of dims, got {dims}")
    freqs = rope_frequencies(dims, base, pos.device)                          # (R/2,)
    axis = torch.repeat_interleave(torch.arange(len(dims), device=pos.device),
                                   torch.tensor([d // 2 for d in dims], device=pos.device))  # (R/2,)
    angles = pos.double()[..., axis] * freqs                                 # (..., N, R/2)
    return torch.cos(angles).to(pos.dtype), torch.sin(angles).to(pos.dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (B, H, N, R) by per-token angles; cos/sin (B, N, R/2) or (N, R/2).

    Pass -sin to undo a rotation.
    """
    half = x.shape[-1] // 2
    if cos.shape[-1] != half:
        raise WorldplayError(f"apply_rope: x has {x.shape[-1]} dims but cos/sin cover {2 * cos.shape[-1]}")
    if cos.dim() == 3:                      # per-batch positions: broadcast over heads
        cos, sin = cos[:, None], sin[:, None]                                # (B, 1, N, R/2)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
