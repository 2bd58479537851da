"""The "floor" source: ground truth averaged over 32-px cells, each cell one flat colour.

This is what a model that knows only the layout would show: where the sky, the ground and the
big shapes are, and no detail at all. On these scenes (large flat sky and ground) such frames
score a respectable PSNR and SSIM, so every eval table carries this row: a method is only
showing detail where it beats `floor`. Depth and the moving-object mask stay the renderer's
(the layout is known exactly; only the image is reduced).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from worldplay.config import ImageConfig
from worldplay.frame import Frame
from worldplay.sources.protocol import check_chunk
from worldplay.sources.world import OverWorld, WorldSource

UINT8_MAX = 255


@dataclass(frozen=True)
class FloorConfig:
    cell_px: int = 32     # one DiT token's patch at 640x360 (16x VAE, patch 2): the layout at token scale
    image: ImageConfig = field(default_factory=ImageConfig)   # output size (the product's 640x360)


def cell_means(rgb: Tensor, cell: int) -> Tensor:
    """uint8 (H, W, 3) -> uint8 (H, W, 3) where every cell x cell block is its mean colour; the
    blocks of the last row and column may be cut short by the frame edge (360 = 11.25 cells)
    and are averaged over the pixels they have."""
    H, W = rgb.shape[:2]
    x = rgb.permute(2, 0, 1)[None].float()                                           # (1, 3, H, W)
    m = F.avg_pool2d(x, cell, ceil_mode=True)                                        # (1, 3, ceil(H/c), ceil(W/c))
    up = m.repeat_interleave(cell, 2).repeat_interleave(cell, 3)[..., :H, :W]       # (1, 3, H, W)
    return up[0].permute(1, 2, 0).round().clamp(0, UINT8_MAX).to(torch.uint8).contiguous()


class FloorSource(OverWorld):
    """FrameSource "floor" (chunk = 1). Capabilities: HasScene."""

    name = "floor"
    chunk = 1

    def __init__(self, seed: int = 0, prompt: str | None = None, device: str = "cpu",
                 cfg: FloorConfig = FloorConfig()):
        self.cfg = cfg
        self.world = WorldSource(seed, prompt, device, cfg.image)

    def frames(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        """c2w (F, 4, 4), times (F,) -> the ground truth at each pose, one colour per cell."""
        check_chunk("FloorSource", c2w, times)
        return [Frame(rgb=cell_means(f.rgb, self.cfg.cell_px), depth=f.depth, dynamic=f.dynamic, c2w=f.c2w, t=f.t)
                for f in self.world.frames(c2w, times)]

    def hud(self) -> dict[str, str]:
        return {"source": self.name, "scene": self.scene.prompt, "seed": str(self.seed),
                "view": f"ground truth in {self.cfg.cell_px}-px cells (layout only)"}
