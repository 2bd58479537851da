"""Colour features: a memory made of pixel colours, and turning a colour canvas back into an image.

Before a model exists (and as a baseline beside it) the client can fill memory with each
patch's colours instead of latents and show the warp canvas: a "memory only" view. A feature
is the patch averaged down to sub x sub colours in [-1, 1], flattened as (sub_y, sub_x, rgb).
Frames are padded above and below to whole patches, as MemoryConfig and the VAE do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from worldplay.errors import WorldplayError

RGB = 3
UINT8_MAX = 255.0


def colour_sub(dim: int) -> int | None:
    """`sub` of colour features with `dim` = 3 * sub * sub channels; None if `dim` is not that."""
    sub = round(math.sqrt(dim / RGB))
    return sub if sub * sub * RGB == dim else None


def _padding(height: int, padded: int) -> tuple[int, int]:
    top = (padded - height) // 2
    return top, padded - height - top


def rgb_features(rgb: Tensor, patch_px: int = 32, sub: int = 1, padded_height: int = 0) -> Tensor:
    """uint8 (H, W, 3) -> (h, w, 3 * sub * sub) float32 in [-1, 1], one row per patch.

    padded_height: 0 rounds H up to whole patches (360 -> 384 for 32-px patches).
    """
    if rgb.dtype != torch.uint8 or rgb.dim() != 3 or rgb.shape[-1] != RGB:
        raise WorldplayError(f"rgb_features wants a uint8 (H, W, 3) image, got {rgb.dtype} {tuple(rgb.shape)}")
    H, W = rgb.shape[:2]
    if patch_px % sub or W % patch_px:
        raise WorldplayError(f"rgb_features: patch_px={patch_px} must divide the width {W} and be a "
                             f"multiple of sub={sub}")
    padded = padded_height or math.ceil(H / patch_px) * patch_px
    top, bottom = _padding(H, padded)
    x = rgb.permute(2, 0, 1)[None].float() / (UINT8_MAX / 2) - 1.0              # (1, 3, H, W)
    x = F.pad(x, (0, 0, top, bottom), mode="replicate")                        # (1, 3, Hp, W)
    x = F.avg_pool2d(x, patch_px // sub)                                        # (1, 3, h*sub, w*sub)
    h, w = padded // patch_px, W // patch_px
    x = x[0].reshape(RGB, h, sub, w, sub).permute(1, 3, 2, 4, 0)               # (h, w, sub, sub, 3)
    return x.reshape(h, w, sub * sub * RGB)


def render_canvas(canvas: Tensor, mask: Tensor | None = None, width: int = 640, height: int = 360,
                  background: tuple[int, int, int] = (0, 0, 0)) -> Tensor:
    """Colour canvas (3 * sub * sub, h, w) (+ mask (1, h, w)) -> uint8 image (height, width, 3).

    Cells are drawn as blocks (nearest neighbour) over the padded frame, then the padding is
    cropped; cells the mask marks empty show `background`.
    """
    D, h, w = canvas.shape
    sub = colour_sub(D)
    if sub is None:
        raise WorldplayError(f"render_canvas needs colour features (3 * sub * sub channels), got {D}")
    if width % (w * sub):
        raise WorldplayError(f"render_canvas: width {width} is not a whole multiple of the canvas "
                             f"width {w} x {sub} colours per cell")
    px = width // (w * sub)                                                     # pixels per colour
    x = canvas.float().permute(1, 2, 0).reshape(h, w, sub, sub, RGB)            # (h, w, sub, sub, 3)
    x = x.permute(4, 0, 2, 1, 3).reshape(RGB, h * sub, w * sub)                # (3, h*sub, w*sub)
    if mask is not None:
        bg = torch.tensor(background, dtype=torch.float32, device=x.device) / (UINT8_MAX / 2) - 1.0
        m = mask.reshape(h, 1, w, 1).expand(h, sub, w, sub).reshape(1, h * sub, w * sub) > 0
        x = torch.where(m, x, bg[:, None, None])
    x = F.interpolate(x[None], scale_factor=px, mode="nearest")[0]             # (3, Hp, W)
    if x.shape[1] < height:
        raise WorldplayError(f"render_canvas: canvas covers {x.shape[1]} rows, fewer than height {height}")
    top, _ = _padding(height, x.shape[1])
    x = x[:, top:top + height]                                                  # (3, H, W)
    return ((x.clamp(-1.0, 1.0) + 1.0) * (UINT8_MAX / 2)).round().to(torch.uint8).permute(1, 2, 0).contiguous()
