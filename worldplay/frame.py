"""One rendered or generated frame, as every part of the program exchanges it."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

SKY_DEPTH = 100.0   # metres assigned to sky pixels: far beyond the fog, still finite for lifting


@dataclass
class Frame:
    rgb: Tensor        # (H, W, 3) uint8
    depth: Tensor      # (H, W) float32, z-depth in metres (SKY_DEPTH for sky)
    dynamic: Tensor    # (H, W) bool, True on moving objects
    c2w: Tensor        # (4, 4) the pose it was rendered/generated at
    t: float = 0.0     # seconds since the session started
