"""Colour memories: a MosaicMemory of pixel colours on the model's token grid.

The client keeps one for sources without a memory of their own (it fills it from the frames it
shows), and the "memory" source is one. Each patch is stored as sub x sub colours (rgb.py), on
the same patch grid as the model's tokens, so the memory-only view and the minimap have
something to draw with no model at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worldplay.camera import intrinsics
from worldplay.errors import WorldplayError
from worldplay.memory.config import MemoryConfig
from worldplay.memory.memory import MosaicMemory
from worldplay.memory.rgb import RGB

TOKEN_COLS = 20   # the tiny model's token grid is 20 wide at 640 px: colour patches match it
MEMORY_THREADS = 1   # torch threads for the client's memory ops (devices.torch_threads): on a busy CPU,
                     # thread hand-offs made a 640x360 insert 10x slower with 2 threads than with 1


@dataclass(frozen=True)
class ColourMemoryConfig:
    sub: int = 4                  # 4x4 colours per patch: a recognisable mosaic at 48 numbers/entry
    capacity: int = 100_000       # ~23 MB; minutes of walking with dedup, oldest evicted past it
    insert_every: int = 2         # frames; lifting one 640x360 frame costs 8-14 ms on one CPU core,
                                  # so every 2nd frame keeps the memory's share of a frame under ~7 ms


def colour_memory_config(width: int, height: int, cfg: ColourMemoryConfig = ColourMemoryConfig()) -> MemoryConfig:
    """MemoryConfig for colour patches of a width x height frame: patch size nearest to the
    model's token patch (width / TOKEN_COLS) that divides the width into whole colours."""
    fits = [p for p in range(cfg.sub, width + 1, cfg.sub) if width % p == 0]
    if not fits:
        raise WorldplayError(f"colour memory: frame width {width} has no patch size that is a multiple "
                             f"of {cfg.sub} colours; use a width divisible by {cfg.sub} (e.g. 640)")
    patch = min(fits, key=lambda p: (abs(p - width / TOKEN_COLS), p))
    return MemoryConfig(feature_dim=RGB * cfg.sub * cfg.sub, capacity=cfg.capacity,
                        image_width=width, image_height=height, patch_px=patch)


def memory_intrinsics(memory: MosaicMemory, fov_x_deg: float) -> torch.Tensor:
    """K (3, 3) in the memory's own frame size (the frames it was filled from)."""
    return intrinsics(memory.cfg.image_width, memory.cfg.image_height, fov_x_deg)
