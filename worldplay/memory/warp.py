"""Warped Latent: splat memory features into a target view's grid, nearest surface wins per cell.

The canvas (D, h, w) plus its validity mask (1, h, w) is what the DiT concatenates to its noisy
latent's channels, so the model starts each frame from what memory says is there. With the
token grid (tiny: 12x20) every cell receives one whole token feature; the streamer unpacks it
to the latent grid with its own patch layout. The same splat, over colour features, is the
client's "memory only" view (see rgb.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.memory.config import MemoryConfig
from worldplay.camera import invert_se3, unproject
from worldplay.memory.splat import as_targets, project_candidates, zbuffer
from worldplay.memory.store import EntryStore


def splat_view(store: EntryStore, cfg: MemoryConfig, c2w: Tensor, K: Tensor, grid: tuple[int, int],
               ids: Tensor | None = None, min_age: float = 0.0) -> tuple[Tensor, Tensor]:
    """Entry id (h*w,) shown in each cell of one view (-1: empty) and its depth (h*w,) (+inf)."""
    c2w, K = as_targets(c2w, K)
    if c2w.shape[0] != 1:
        raise WorldplayError(f"memory: warp_canvas takes one target pose (4, 4), got {c2w.shape[0]}")
    h, w = grid
    if h < 1 or w < 1:
        raise WorldplayError(f"memory: warp grid must be positive (h, w), got {grid}")
    if ids is not None:
        ids = ids[(ids >= 0) & (ids < store.n_used)].to(store.device)    # padding rows are -1
    c = project_candidates(store, cfg, c2w, K, grid, min_age, subset=ids)
    n_cells = h * w
    if len(c) == 0:
        return (torch.full((n_cells,), -1, dtype=torch.long, device=store.device),
                torch.full((n_cells,), float("inf"), device=store.device))
    zmin, best = zbuffer(c, 1, grid, cfg.max_footprint, want_winner=True)  # (h*w,) each
    shown = torch.where(best >= 0, c.ids[best.clamp_min(0)], best)
    return shown, zmin


def warp_view(store: EntryStore, cfg: MemoryConfig, c2w: Tensor, K: Tensor,
              grid: tuple[int, int] | None = None, ids: Tensor | None = None,
              min_age: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """warp_canvas's canvas and mask, plus the depth (h, w) of the surface shown in each cell
    (+inf where empty), for callers that show the canvas as a frame with depth."""
    h, w = grid or cfg.grid_hw
    shown, zmin = splat_view(store, cfg, c2w, K, (h, w), ids, min_age)
    hit = shown >= 0
    canvas = torch.zeros(h * w, cfg.feature_dim, device=store.device)
    canvas[hit] = store.feat[shown[hit]].float()
    canvas = canvas.T.reshape(cfg.feature_dim, h, w)                        # (D, h, w)
    mask = hit.float().reshape(1, h, w)                                     # (1, h, w)
    return canvas, mask, zmin.reshape(h, w)


def warp_canvas(store: EntryStore, cfg: MemoryConfig, c2w: Tensor, K: Tensor,
                grid: tuple[int, int] | None = None, ids: Tensor | None = None,
                min_age: float = 0.0) -> tuple[Tensor, Tensor]:
    """Canvas (D, h, w) float32 of the nearest memory feature per cell, and mask (1, h, w) float32.

    grid defaults to the token grid; ids restricts the splat to those entries (e.g. the ones
    retrieve() returned) instead of all of memory.
    """
    canvas, mask, _ = warp_view(store, cfg, c2w, K, grid, ids, min_age)
    return canvas, mask


def depth_canvas(store: EntryStore, cfg: MemoryConfig, c2w: Tensor, K: Tensor,
                 grid: tuple[int, int] | None = None) -> Tensor:
    """Depth (h, w) of the nearest memory surface per cell (+inf where memory has nothing)."""
    h, w = grid or cfg.grid_hw
    _, zmin = splat_view(store, cfg, c2w, K, (h, w))
    return zmin.reshape(h, w)


def warp_latent(store: EntryStore, cfg: MemoryConfig, c2w: Tensor, K: Tensor, latent_grid: tuple[int, int],
                patch: int, ids: Tensor | None = None, min_age: float = 0.0) -> tuple[Tensor, Tensor]:
    """The Warped Latent at the latent grid, resampled: canvas (C, h, w) and mask (1, h, w).

    A token entry holds a patch x patch block of latent cells. Splatting whole tokens puts
    content up to half a token (16 px at tiny) off; here every target latent cell instead looks
    up the entry the z-buffer shows there, lifts its own centre to that entry's depth, projects
    it into the camera that saw the entry, and samples the entry's latent block bilinearly at
    that spot. Each surface is taken as a plane facing the target at its entry's depth.
    """
    h, w = latent_grid
    C = cfg.feature_dim // (patch * patch)
    shown, zmin = splat_view(store, cfg, c2w, K, (h, w), ids, min_age)         # (h*w,) each
    cells = (shown >= 0).nonzero()[:, 0]
    canvas = torch.zeros(C, h * w, device=store.device)
    mask = torch.zeros(1, h * w, device=store.device)
    if cells.numel():
        e, z = shown[cells], zmin[cells]
        cell_h, cell_w = cfg.padded_h / h, cfg.image_width / w
        uv = torch.stack([(cells % w + 0.5) * cell_w, (cells // w + 0.5) * cell_h - cfg.pad_top], -1)
        c2w_t, K_t = as_targets(c2w, K)
        X = unproject(uv.float(), z, c2w_t[0].to(store.device), K_t[0].to(store.device))   # (n, 3)
        src = torch.cat([X, store.centre.index_select(0, e)])                    # (2n, 3) spot, entry centre
        w2c = invert_se3(store.c2w.index_select(0, e)).repeat(2, 1, 1)          # (2n, 4, 4)
        pc = (w2c[:, :3, :3] @ src[:, :, None])[:, :, 0] + w2c[:, :3, 3]        # (2n, 3) in the source camera
        intr = store.intr.index_select(0, e).repeat(2, 1).float()               # (2n, 4) fx fy cx cy
        z_s = pc[:, 2].clamp_min(cfg.min_depth)
        us, vs = intr[:, 0] * pc[:, 0] / z_s + intr[:, 2], intr[:, 1] * pc[:, 1] / z_s + intr[:, 3]
        n, sub = cells.numel(), cfg.patch_px / patch                            # pixels per latent cell
        fx = ((us[:n] - us[n:]) / sub + (patch - 1) / 2).clamp(0, patch - 1)    # (n,) column in the block
        fy = ((vs[:n] - vs[n:]) / sub + (patch - 1) / 2).clamp(0, patch - 1)
        x0, y0 = fx.floor().clamp(max=patch - 2).long(), fy.floor().clamp(max=patch - 2).long()
        ax, ay = fx - x0, fy - y0
        block = store.feat.index_select(0, e).float().view(n, C, patch, patch)   # (n, C, p, p)
        rows = torch.arange(n, device=store.device)

        def at(dy: int, dx: int) -> Tensor:
            return block[rows, :, y0 + dy, x0 + dx]                              # (n, C)

        val = ((1 - ay)[:, None] * ((1 - ax)[:, None] * at(0, 0) + ax[:, None] * at(0, 1))
               + ay[:, None] * ((1 - ax)[:, None] * at(1, 0) + ax[:, None] * at(1, 1)))
        canvas[:, cells] = val.T
        mask[:, cells] = 1.0
    return canvas.reshape(C, h, w), mask.reshape(1, h, w)
