"""Lift one frame's patches to 3D: a feature grid + depth + pose -> `Patches`.

Each patch is placed at its centre ray with a robust depth: the median of its valid pixels when
full-resolution depth is given (a patch straddling an edge lands on its majority surface), or the
given per-patch depth. Patches whose depth is invalid, nearer than `min_depth` or beyond
`max_depth` (sky, which the renderer puts at SKY_DEPTH) are skipped, and so are patches mostly
on moving objects (`dynamic_max`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from worldplay.camera import unproject
from worldplay.errors import WorldplayError
from worldplay.memory.config import MemoryConfig, patch_centres_uv
from worldplay.memory.store import K_to_intr, Patches


def check_pose(c2w: Tensor, K: Tensor) -> None:
    if tuple(c2w.shape) != (4, 4):
        raise WorldplayError(f"memory: c2w must be one (4, 4) camera-to-world pose, got {tuple(c2w.shape)}")
    if tuple(K.shape) != (3, 3):
        raise WorldplayError(f"memory: K must be (3, 3) full-resolution intrinsics, got {tuple(K.shape)}")


def per_patch(values: Tensor, cfg: MemoryConfig, name: str, reduce: str) -> Tensor:
    """(H, W) full-res or (h, w) per-patch map -> (h, w) per patch, reduced over valid pixels.

    reduce: "median" (depth: robust to edges) or "mean" (dynamic fraction). Padding and
    non-finite pixels do not count; a patch with none left is NaN.
    """
    h, w = cfg.grid_hw
    H, W = cfg.image_height, cfg.image_width
    values = values.float()
    if tuple(values.shape) == (h, w):
        return values
    if tuple(values.shape) != (H, W):
        raise WorldplayError(f"memory: {name} must be ({H}, {W}) full-res or ({h}, {w}) per patch, "
                             f"got {tuple(values.shape)}")
    p, top = cfg.patch_px, cfg.pad_top
    x = F.pad(values[None, None], (0, 0, top, cfg.padded_h - H - top), value=float("nan"))[0, 0]
    x = x.reshape(h, p, w, p).permute(0, 2, 1, 3).reshape(h, w, p * p)   # (h, w, P*P)
    x = torch.where(torch.isfinite(x), x, torch.full_like(x, float("nan")))
    return torch.nanmedian(x, dim=-1).values if reduce == "median" else torch.nanmean(x, dim=-1)


def lift_frame(features: Tensor, depth: Tensor, c2w: Tensor, K: Tensor, t: float,
               cfg: MemoryConfig, dynamic: Tensor | None = None) -> Patches:
    """Patches of one frame that have usable depth. features: (h, w, D); depth: metres."""
    h, w = cfg.grid_hw
    if tuple(features.shape) != (h, w, cfg.feature_dim):
        raise WorldplayError(f"memory: features must be ({h}, {w}, {cfg.feature_dim}) for this memory "
                             f"(token grid x feature_dim), got {tuple(features.shape)}")
    check_pose(c2w, K)
    c2w, K = c2w.float(), K.float()
    d = per_patch(depth, cfg, "depth", "median")                          # (h, w)
    d = torch.where(d > 0, d, torch.full_like(d, float("nan")))           # non-positive = invalid
    dyn = torch.zeros_like(d) if dynamic is None else per_patch(dynamic, cfg, "dynamic mask", "mean")
    dyn = torch.nan_to_num(dyn, nan=0.0).clamp(0.0, 1.0)
    keep = torch.isfinite(d) & (d >= cfg.min_depth) & (d <= cfg.max_depth) & (dyn <= cfg.dynamic_max)
    idx = keep.reshape(-1).nonzero()[:, 0]                                # (n,)
    uv = patch_centres_uv(cfg, device=features.device).reshape(-1, 2)[idx]  # (n, 2)
    z = d.reshape(-1)[idx].to(features.device)
    centre = unproject(uv, z, c2w.to(features.device), K.to(features.device))  # (n, 3)
    n = idx.numel()
    intr = K_to_intr(K).to(features.device)
    return Patches(
        feat=features.reshape(h * w, -1)[idx],                            # (n, D)
        centre=centre,
        c2w=c2w.to(features.device).expand(n, 4, 4).clone(),
        intr=intr.expand(n, 4).clone(),
        size=z * (cfg.patch_px / float(K[0, 0])),
        time=torch.full((n,), float(t), dtype=torch.float64, device=features.device),
        dynamic=dyn.reshape(-1)[idx].to(features.device),
    )
