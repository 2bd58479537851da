"""Edit mode (E): aim with a crosshair and erase, copy or paste memory around what it points at.

The aim point is what the screen centre shows: the shown frame's depth there (a small median,
so an edge pixel does not aim past the object), or, where the frame has nothing (sky, a hole
in the memory-only view), the nearest surface memory itself holds under the crosshair. The
region is a sphere of `radius_m` around it. A paste moves the copied patches rigidly by the
translation from the copied region's centre to the new aim point. Every action returns a
one-line message for the player.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.frame import Frame
from worldplay.memory import MosaicMemory, Region, region_at
from worldplay.memory.store import Patches

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

CROSS_RGB = (255, 210, 90)
SHADOW_RGB = (0, 0, 0)
LABEL_PX = 18          # label text height at scale 1, as the HUD's
CROSS_PX = 10          # crosshair arm length at scale 1
OUTLINE_PX = 3         # dark outline under the crosshair: visible on snow and on night alike
LABEL_GAP_PX = 4       # between the crosshair and its key legend
NOTHING = "nothing under the crosshair: aim at a surface the memory has seen"


@dataclass(frozen=True)
class EditConfig:
    radius_m: float = 1.5        # sphere erased / copied around the aim point: about one object
    aim_window_px: int = 2       # depth is the median of a (2n+1)^2 window at the screen centre


@dataclass
class Aim:
    c2w: Tensor                  # (4, 4) pose of the shown frame
    uv: tuple[float, float]      # screen centre in the memory's pixels
    depth: float                 # z-depth of the aimed surface, metres
    region: Region               # sphere of radius_m around the aimed point

    @property
    def point(self) -> Tensor:
        return torch.tensor(self.region.centre)


def centre_depth(frame: Frame, window: int) -> float:
    """Median z-depth over the (2w+1)^2 pixels at the frame's centre (nan if none is finite)."""
    d = frame.depth.detach().cpu().float()
    H, W = d.shape
    cy, cx = H // 2, W // 2
    patch = d[max(cy - window, 0):cy + window + 1, max(cx - window, 0):cx + window + 1].reshape(-1)
    patch = patch[torch.isfinite(patch)]
    return float(patch.median()) if patch.numel() else float("nan")


class EditMode:
    def __init__(self, cfg: EditConfig = EditConfig()):
        if not cfg.radius_m > 0:
            raise WorldplayError(f"EditConfig.radius_m={cfg.radius_m} must be > 0 metres")
        self.cfg = cfg
        self.active = False
        self.clipboard: Patches | None = None
        self.clip_centre: Tensor | None = None    # (3,) where the clipboard was copied from
        self._font: pygame.font.Font | None = None
        self._font_scale = 0

    def aim(self, memory: MosaicMemory | None, frame: Frame | None, K: Tensor | None) -> Aim | None:
        """What the crosshair points at, or None (no frame, or neither frame nor memory has a surface)."""
        if memory is None or frame is None or K is None:
            return None
        cfg = memory.cfg
        uv = (cfg.image_width / 2.0, cfg.image_height / 2.0)
        c2w = frame.c2w.detach().cpu().float()
        z = centre_depth(frame, self.cfg.aim_window_px)
        if not (math.isfinite(z) and cfg.min_depth <= z <= cfg.max_depth):   # sky or a hole
            z = memory.pick(c2w, K, uv)
            if z is None:
                return None
        return Aim(c2w, uv, z, region_at(c2w, K, uv, z, self.cfg.radius_m))

    def erase(self, memory, frame, K) -> str:
        a = self.aim(memory, frame, K)
        if a is None:
            return NOTHING
        n = memory.erase(a.region)
        return f"erased {n} memory patches within {self.cfg.radius_m:g} m of {_fmt(a.point)}"

    def copy(self, memory, frame, K) -> str:
        a = self.aim(memory, frame, K)
        if a is None:
            return NOTHING
        patches = memory.copy(a.region)
        if len(patches) == 0:
            return f"nothing in memory within {self.cfg.radius_m:g} m of {_fmt(a.point)}; clipboard unchanged"
        self.clipboard, self.clip_centre = patches, a.point
        return f"copied {len(patches)} memory patches from {_fmt(a.point)}; V pastes them at the crosshair"

    def paste(self, memory, frame, K) -> str:
        if self.clipboard is None:
            return "nothing copied yet: aim at something and press Y first"
        a = self.aim(memory, frame, K)
        if a is None:
            return NOTHING
        T = torch.eye(4)
        T[:3, 3] = a.point - self.clip_centre                      # translation only: keeps it upright
        try:
            n = memory.paste(self.clipboard, T)
        except WorldplayError as e:      # e.g. copied from another kind of memory
            return f"cannot paste: {e}"
        return f"pasted {n} memory patches at {_fmt(a.point)}"

    def draw(self, surf: pygame.Surface, aim: Aim | None, K: Tensor | None, mem_width: int) -> None:
        """Crosshair at the centre, the edit sphere's outline on screen, and a short key legend."""
        s = max(1, surf.get_width() // max(mem_width, 1))
        cx, cy = surf.get_width() // 2, surf.get_height() // 2
        arm = CROSS_PX * s
        for colour, width in ((SHADOW_RGB, OUTLINE_PX * s), (CROSS_RGB, s)):
            pygame.draw.line(surf, colour, (cx - arm, cy), (cx + arm, cy), width)
            pygame.draw.line(surf, colour, (cx, cy - arm), (cx, cy + arm), width)
        if aim is not None and K is not None:
            r = int(round(self.cfg.radius_m * float(K[0, 0]) / aim.depth * surf.get_width() / mem_width))
            if arm < r < surf.get_width():
                pygame.draw.circle(surf, CROSS_RGB, (cx, cy), r, s)
        if self._font_scale != s:
            self._font, self._font_scale = pygame.font.Font(None, LABEL_PX * s), s
        text = "EDIT  X erase  Y copy  V paste  E done" + ("  [clipboard]" if self.clipboard is not None else "")
        label = self._font.render(text, True, CROSS_RGB)
        shadow = self._font.render(text, True, SHADOW_RGB)
        pos = (cx - label.get_width() // 2, cy + arm + LABEL_GAP_PX * s)
        surf.blit(shadow, (pos[0] + s, pos[1] + s))
        surf.blit(label, pos)


def _fmt(p: Tensor) -> str:
    return "(" + ", ".join(f"{float(v):.1f}" for v in p) + ")"
