"""PRoPE: cameras as relative positional encoding (Li et al. 2025, arXiv 2507.10496).

Every token carries a camera P = lift(K_norm) . w2c (4x4, image <- world). On the PRoPE block
of each head (groups of 4 dims) attention runs in a projective frame:

    q <- P^T q,   k <- P^-1 k,   v <- P^-1 v,   out <- P o

so q_i . k_j = q_i^T (P_i P_j^-1) k_j depends only on the *relative* projective transform of the
two cameras, and the output is brought back into the query's own frame. Moving every camera
by the same rigid transform G (w2c -> w2c G^-1) leaves P_i P_j^-1, hence attention, unchanged.
This matches the reference code (prope/per_token_camera.py): intrinsics normalised by the image
size with the principal point shifted to the centre, P^-1 built analytically from c2w and K^-1.

Cameras are given as c2w (the project's pose convention) and inverted here, so nobody has to
remember that PRoPE wants w2c. K = None gives GTA (P = w2c: relative pose without intrinsics).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from worldplay.camera import invert_se3
from worldplay.errors import WorldplayError

BLOCK = 4   # homogeneous 4-vectors


def normalize_intrinsics(K: Tensor, width: float, height: float) -> Tensor:
    """Pixel K (..., 3, 3) -> K of an image of size 1 x 1 centred at the principal origin."""
    Kn = torch.zeros_like(K)
    Kn[..., 0, 0] = K[..., 0, 0] / width
    Kn[..., 1, 1] = K[..., 1, 1] / height
    Kn[..., 0, 2] = K[..., 0, 2] / width - 0.5
    Kn[..., 1, 2] = K[..., 1, 2] / height - 0.5
    Kn[..., 2, 2] = 1.0
    return Kn


def invert_intrinsics(K: Tensor) -> Tensor:
    """Inverse of skew-free pinhole K (..., 3, 3), without a general matrix inverse."""
    Ki = torch.zeros_like(K)
    Ki[..., 0, 0] = 1.0 / K[..., 0, 0]
    Ki[..., 1, 1] = 1.0 / K[..., 1, 1]
    Ki[..., 0, 2] = -K[..., 0, 2] / K[..., 0, 0]
    Ki[..., 1, 2] = -K[..., 1, 2] / K[..., 1, 1]
    Ki[..., 2, 2] = 1.0
    return Ki


def lift(K: Tensor) -> Tensor:
    """(..., 3, 3) -> (..., 4, 4) acting on homogeneous points (w passes through)."""
    out = torch.zeros(*K.shape[:-2], 4, 4, dtype=K.dtype, device=K.device)
    out[..., :3, :3] = K
    out[..., 3, 3] = 1.0
    return out


@dataclass
class ProjCams:
    """Per-token PRoPE matrices: P (B, N, 4, 4) and its inverse."""
    P: Tensor
    P_inv: Tensor

    def __getitem__(self, idx) -> "ProjCams":
        """Slice tokens: cams[:, a:b] style indexing on the (B, N) dims."""
        return ProjCams(self.P[idx], self.P_inv[idx])

    @staticmethod
    def cat(parts: list["ProjCams"], dim: int = 1) -> "ProjCams":
        return ProjCams(torch.cat([p.P for p in parts], dim), torch.cat([p.P_inv for p in parts], dim))


def projective_cameras(c2w: Tensor, K: Tensor | None, width: float, height: float) -> ProjCams:
    """c2w (..., 4, 4) and pixel K (..., 3, 3) (or None for GTA) -> ProjCams of the same batch shape."""
    if c2w.shape[-2:] != (4, 4):
        raise WorldplayError(f"PRoPE cameras must be (..., 4, 4) c2w poses, got {tuple(c2w.shape)}")
    w2c = invert_se3(c2w)
    if K is None:
        return ProjCams(w2c, c2w.clone())
    Kn = normalize_intrinsics(K.to(c2w.dtype).expand(*c2w.shape[:-2], 3, 3), width, height)
    return ProjCams(lift(Kn) @ w2c, c2w @ lift(invert_intrinsics(Kn)))


def apply_projective(x: Tensor, M: Tensor) -> Tensor:
    """Multiply every 4-dim group of x (B, H, N, D) by its token's matrix M (B, N, 4, 4)."""
    B, H, N, D = x.shape
    if D % BLOCK:
        raise WorldplayError(f"PRoPE block has {D} dims; it must be a multiple of {BLOCK}")
    if M.shape[-3] != N:
        raise WorldplayError(f"PRoPE: {N} tokens but cameras for {M.shape[-3]}")
    # the 4x4 products in at least float32: a bf16 matrix would round a 100 m translation to 0.5 m
    ct = torch.promote_types(x.dtype, torch.float32)
    xg = x.reshape(B, H, N, D // BLOCK, BLOCK).to(ct)                         # (B, H, N, G, 4)
    out = torch.einsum("bnij,bhngj->bhngi", M.to(ct), xg)
    return out.reshape(B, H, N, D).to(x.dtype)                              # (B, H, N, D)


def prope_q(x: Tensor, cams: ProjCams) -> Tensor:
    return apply_projective(x, cams.P.transpose(-1, -2))


def prope_kv(x: Tensor, cams: ProjCams) -> Tensor:
    return apply_projective(x, cams.P_inv)


def prope_o(x: Tensor, cams: ProjCams) -> Tensor:
    return apply_projective(x, cams.P)


def recentred(c2w: Tensor, origin: Tensor) -> Tensor:
    """c2w (..., 4, 4) in a world whose origin sits at `origin` (3,), in float64. Attention does
    not change (a common rigid move), but coordinates near 0 keep bf16 K/V exact far from the start."""
    out = c2w.to(torch.float64).clone()
    out[..., :3, 3] -= origin.to(out.device, torch.float64)
    return out


def translation(d: Tensor) -> Tensor:
    """(4, 4) homogeneous translation by d (3,): the matrix that moves cached PRoPE K/V when the
    world origin moves by -d (KVCache.rebase)."""
    T = torch.eye(4, dtype=torch.float64)
    T[:3, 3] = d.to(torch.float64).cpu()
    return T
