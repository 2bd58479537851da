"""Splat memory entries into a target view's grid, nearest surface wins per cell.

A feature canvas (D, h, w) plus its validity mask (1, h, w): over colour features this is the
client's "memory only" view (see rgb.py), and the depth canvas answers "what is under this
pixel" for edits. The DiT's Warped Latent is made from the keyframes instead (views.py): a
whole-token splat lands content up to half a token (16 px) off.
"""

from __future__ import annotations

import torch
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.memory.config import MemoryConfig
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
