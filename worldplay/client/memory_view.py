"""The memory view (M): a top-down minimap of what the mosaic memory holds, around the player.

North-up (world -z points up, +x right), centred on the camera, a fixed span of metres so the
scale never jumps as memory grows. Each entry is a dot at its centre's (x, z), in its stored
colour for colour memories, or brighter the newer it is for latent memories. Dots are drawn
into a numpy image in one vectorised pass (at most `max_points` of them, evenly subsampled),
lowest first so walls and objects sit on top of the floor; then the camera's view wedge and
the edit-mode aim circle are drawn over it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from worldplay.devices import torch_threads
from worldplay.memory import MosaicMemory
from worldplay.memory.colour import MEMORY_THREADS
from worldplay.memory.rgb import RGB, colour_sub

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

BG_RGB = (18, 18, 24)
BORDER_RGB = (200, 200, 200)
CAMERA_RGB = (255, 70, 70)
AIM_RGB = (255, 210, 90)           # same yellow as the crosshair
UINT8_MAX = 255.0
AGE_FLOOR = 60.0                   # grey of the oldest latent entries: still visible on BG_RGB
CAMERA_DOT_PX = 3                  # camera marker radius at scale 1
MIN_AIM_PX = 2                     # the aim circle stays visible when the sphere is tiny on the map


@dataclass(frozen=True)
class MinimapConfig:
    size_px: int = 200            # square side at scale 1: a corner of 640x360, scene still visible
    max_height_frac: float = 0.6  # never more of the window's height (small windows, tests)
    span_m: float = 40.0          # metres across: most of a scene, a 0.2 m dot pitch
    max_points: int = 5000        # dots drawn per frame; more only costs time, the map looks the same
    dot_px: int = 2               # dot side at scale 1
    wedge_m: float = 6.0          # length of the view-wedge lines
    margin_px: int = 8            # from the window edge
    top_px: int = 30              # below the REC indicator in the top-right corner
    age_tau: float = 20.0         # seconds; latent memories: dots fade with age on this scale


def entry_colours(memory: MosaicMemory, ids: torch.Tensor, cfg: MinimapConfig) -> np.ndarray:
    """(n, 3) uint8 dot colours: mean stored colour, or a grey ramp by age for latent features."""
    s = memory.store
    sub = colour_sub(memory.cfg.feature_dim)
    if sub is not None:
        feat = s.feat[ids].float().reshape(-1, sub * sub, RGB).mean(1)      # (n, 3) in [-1, 1]
        rgb = (feat.clamp(-1, 1) + 1.0) * (UINT8_MAX / 2)
    else:
        age = (s.now - s.time[ids]).clamp_min(0).float()
        level = AGE_FLOOR + (UINT8_MAX - AGE_FLOOR) * torch.exp(-age / cfg.age_tau)  # (n,)
        rgb = level[:, None].expand(-1, RGB)
    return rgb.round().to(torch.uint8).cpu().numpy()


class Minimap:
    def __init__(self, cfg: MinimapConfig = MinimapConfig(), scale: int = 1):
        self.cfg, self.scale = cfg, scale
        self.drawn = 0            # dots drawn last time (tests, and a hint of the cost)
        self.resize(cfg.size_px * scale)

    def resize(self, size: int) -> None:
        self.size = max(int(size), 1)
        self.m_per_px = self.cfg.span_m / self.size

    def to_px(self, x: float, z: float, cx: float, cz: float) -> tuple[int, int]:
        return (int(round(self.size / 2 + (x - cx) / self.m_per_px)),
                int(round(self.size / 2 + (z - cz) / self.m_per_px)))

    def image(self, memory: MosaicMemory | None, cam: torch.Tensor) -> np.ndarray:
        """(size, size, 3) uint8 top-down picture of memory around camera position cam (3,)."""
        S = self.size
        img = np.empty((S, S, RGB), dtype=np.uint8)
        img[:] = BG_RGB
        self.drawn = 0
        if memory is None or len(memory) == 0:
            return img
        s = memory.store
        ids = s.valid_ids()
        c = s.centre[ids].cpu()                                              # (n, 3)
        half = S / 2
        px = (c[:, 0] - float(cam[0])) / self.m_per_px + half                # (n,)
        py = (c[:, 2] - float(cam[2])) / self.m_per_px + half
        dot = self.cfg.dot_px * self.scale
        inside = (px >= 0) & (px < S - dot) & (py >= 0) & (py < S - dot)
        keep = inside.nonzero()[:, 0]
        if keep.numel() > self.cfg.max_points:       # evenly spaced: deterministic, covers all ages
            keep = keep[torch.linspace(0, keep.numel() - 1, self.cfg.max_points).long()]
        keep = keep[torch.argsort(c[keep, 1], stable=True)]                  # low first, tall on top
        colours = entry_colours(memory, ids[keep.to(ids.device)], self.cfg)  # (k, 3)
        x = px[keep].long().numpy()
        y = py[keep].long().numpy()
        for dy in range(dot):
            for dx in range(dot):
                img[y + dy, x + dx] = colours
        self.drawn = int(keep.numel())
        return img

    def draw(self, surf: pygame.Surface, memory: MosaicMemory | None, c2w: torch.Tensor,
             fov_x_deg: float, aim: tuple[torch.Tensor, float] | None = None) -> pygame.Rect:
        """Blit the map into the top-right corner of `surf`; returns where it went."""
        self.resize(min(self.cfg.size_px * self.scale, surf.get_height() * self.cfg.max_height_frac))
        c2w = c2w.detach().cpu().float()
        cam = c2w[:3, 3]
        with torch_threads(MEMORY_THREADS):
            img = self.image(memory, cam)
        map_surf = pygame.image.frombuffer(img.tobytes(), (self.size, self.size), "RGB")
        rect = pygame.Rect(surf.get_width() - self.size - self.cfg.margin_px * self.scale,
                           self.cfg.top_px * self.scale, self.size, self.size)
        surf.blit(map_surf, rect.topleft)
        clip = surf.get_clip()
        surf.set_clip(rect)          # the wedge and aim circle must not spill over the frame
        cx, cz = float(cam[0]), float(cam[2])
        o = self.to_px(cx, cz, cx, cz)
        origin = (rect.x + o[0], rect.y + o[1])
        fwd = c2w[:3, 2]
        heading = math.atan2(float(fwd[0]), float(fwd[2]))                  # angle in the x-z plane
        for side in (-1.0, 1.0):
            a = heading + side * math.radians(fov_x_deg) / 2
            end = self.to_px(cx + self.cfg.wedge_m * math.sin(a), cz + self.cfg.wedge_m * math.cos(a), cx, cz)
            pygame.draw.line(surf, CAMERA_RGB, origin, (rect.x + end[0], rect.y + end[1]), self.scale)
        pygame.draw.circle(surf, CAMERA_RGB, origin, CAMERA_DOT_PX * self.scale)
        if aim is not None:
            point, radius = aim
            p = self.to_px(float(point[0]), float(point[2]), cx, cz)
            r = max(MIN_AIM_PX, int(round(radius / self.m_per_px)))
            pygame.draw.circle(surf, AIM_RGB, (rect.x + p[0], rect.y + p[1]), r, self.scale)
        surf.set_clip(clip)
        pygame.draw.rect(surf, BORDER_RGB, rect, 1)
        return rect
