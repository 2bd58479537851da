"""DiT building blocks: an adaLN transformer block over *groups* of tokens, and the output head.

Tokens come in groups that share one conditioning vector: a frame's tokens share that frame's
timestep (per-frame adaLN), and all memory tokens share the clean (t = 0) conditioning. A group
is (B, S, n, W): S conditioning slots of n tokens each, with conditioning (B, S, W). The block
does not know how attention is masked or cached: it hands raw per-head q, k, v of all its
groups' tokens (concatenated in group order) to an `attend` callback supplied by the DiT, which
owns positions, cameras, the KV cache and the mask.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldplay.model.presets import DiTConfig

NORM_EPS = 1e-6      # LayerNorm / RMSNorm epsilon (DiT / Wan use 1e-6)
MODS = 6             # adaLN outputs per block: shift, scale, gate for attention and for the MLP

# attend(q, k, v) with q, k, v (B, H, N, Dh) raw -> attention output (B, H, N, Dh)
Attend = Callable[[Tensor, Tensor, Tensor], Tensor]


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x (B, S, n, W) with per-slot shift/scale (B, S, 1, W)."""
    return x * (1.0 + scale) + shift


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        W, self.heads, self.head_dim = cfg.width, cfg.heads, cfg.head_dim
        self.norm1 = nn.LayerNorm(W, elementwise_affine=False, eps=NORM_EPS)
        self.qkv = nn.Linear(W, 3 * W)
        # RMSNorm per head on q and k: bounded logits however long the rollout (Wan's qk-norm)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=NORM_EPS) if cfg.qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.head_dim, eps=NORM_EPS) if cfg.qk_norm else nn.Identity()
        self.proj = nn.Linear(W, W)
        self.norm2 = nn.LayerNorm(W, elementwise_affine=False, eps=NORM_EPS)
        self.mlp = nn.Sequential(nn.Linear(W, cfg.ffn), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn, W))
        self.ada = nn.Linear(W, MODS * W)

    def qkv_heads(self, groups: list[Tensor], mods: list[tuple[Tensor, ...]]) -> tuple[Tensor, Tensor, Tensor]:
        """Normed per-head q, k and raw v (B, H, N, Dh) of all the groups' tokens, in group order."""
        h = torch.cat([modulate(self.norm1(x), m[0], m[1]).flatten(1, 2)
                       for x, m in zip(groups, mods)], dim=1)                        # (B, N, W)
        B, N, _ = h.shape
        qkv = self.qkv(h).reshape(B, N, 3, self.heads, self.head_dim)                # (B, N, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                               # (B, H, N, Dh) each
        return self.q_norm(q), self.k_norm(k), v

    def modulations(self, conds: list[Tensor]) -> list[tuple[Tensor, ...]]:
        return [self.ada(F.silu(c))[:, :, None].chunk(MODS, dim=-1) for c in conds]   # 6 x (B, S, 1, W)

    def forward(self, groups: list[Tensor], conds: list[Tensor], attend: Attend) -> list[Tensor]:
        """groups[i] (B, S_i, n_i, W), conds[i] (B, S_i, W) -> updated groups, same shapes."""
        mods = self.modulations(conds)
        q, k, v = self.qkv_heads(groups, mods)
        o = attend(q, k, v)                                                          # (B, H, N, Dh)
        B, H, N, Dh = o.shape
        o = self.proj(o.transpose(1, 2).reshape(B, N, H * Dh))                       # (B, N, W)
        W = H * Dh
        out, start = [], 0
        for x, m in zip(groups, mods):
            S, n = x.shape[1], x.shape[2]
            x = x + m[2] * o[:, start:start + S * n].reshape(B, S, n, W)             # (B, S, n, W)
            x = x + m[5] * self.mlp(modulate(self.norm2(x), m[3], m[4]))
            out.append(x)
            start += S * n
        return out


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm then a linear map to one latent patch per token."""

    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=NORM_EPS)
        self.ada = nn.Linear(width, 2 * width)
        self.linear = nn.Linear(width, out_dim)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x (B, S, n, W), c (B, S, W) -> (B, S, n, out_dim)."""
        shift, scale = self.ada(F.silu(c))[:, :, None].chunk(2, dim=-1)              # (B, S, 1, W) each
        return self.linear(modulate(self.norm(x), shift, scale))
