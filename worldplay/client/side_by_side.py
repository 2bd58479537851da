"""Side-by-side view (B, or --side-by-side): the shown frame next to ground truth at its pose.

The right half is the MosaicWorld renderer's frame of the source's scene at exactly the pose and
time of the frame on the left, at the same size, so generation and truth compare pixel for
pixel. The ground-truth renderer is the view's own (a source's renderer may be busy in its
generation thread) and is rebuilt when the source's scene changes. A source without a scene
(not HasScene) gets a black right half and says so in its label.
"""

from __future__ import annotations

import os

import numpy as np

from worldplay.config import ImageConfig
from worldplay.frame import Frame
from worldplay.sources.capabilities import HasScene
from worldplay.sources.protocol import FrameSource
from worldplay.world.render import Renderer

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

GT_LABEL = "ground truth"
NO_GT_LABEL = "no ground truth (source has no scene)"
HALVES = 2


class SideBySide:
    def __init__(self, source: FrameSource, image: ImageConfig, on: bool = False):
        self.source, self.image, self.on = source, image, on
        self._renderer = None
        self._key: tuple | None = None         # (id of scene, width, height) the renderer is for
        self._last: tuple[Frame, np.ndarray] | None = None   # (frame, its composite): one render per frame

    def width_factor(self) -> int:
        return HALVES if self.on else 1

    def _gt_renderer(self, width: int, height: int):
        if not isinstance(self.source, HasScene):
            return None
        scene = self.source.scene
        key = (id(scene), width, height)
        if key != self._key:
            device = self.source.renderer.device
            self._renderer = Renderer(scene, ImageConfig(width=width, height=height, fov_x_deg=self.image.fov_x_deg,
                                                         fps=self.image.fps), device=device)
            self._key = key
        return self._renderer

    def ground_truth(self, frame: Frame) -> np.ndarray | None:
        """The renderer's RGB (H, W, 3) uint8 at the frame's pose and time, or None without a scene."""
        h, w = frame.rgb.shape[:2]
        r = self._gt_renderer(w, h)
        if r is None:
            return None
        return r.render(frame.c2w.detach().cpu().float(), float(frame.t)).rgb.detach().cpu().numpy()

    def image_of(self, frame: Frame) -> np.ndarray:
        """What the screen and a recording show for `frame`: the frame (H, W, 3), or with the view
        on, frame | ground truth (H, 2W, 3)."""
        rgb = frame.rgb.detach().cpu().numpy()
        if not self.on:
            return rgb
        if self._last is not None and self._last[0] is frame:
            return self._last[1]
        gt = self.ground_truth(frame)
        both = np.concatenate([rgb, np.zeros_like(rgb) if gt is None else gt], axis=1)   # (H, 2W, 3)
        self._last = (frame, both)
        return both

    def draw_labels(self, surf: pygame.Surface, hud) -> None:
        """Tag each half at its bottom-left corner (the HUD panel owns the top-left)."""
        if not self.on:
            return
        half = surf.get_width() // HALVES
        right = GT_LABEL if isinstance(self.source, HasScene) else NO_GT_LABEL
        hud.draw_tag(surf, self.source.name, 0)   # the spec as typed, e.g. model@off
        hud.draw_tag(surf, right, half)

    def left(self, surf: pygame.Surface) -> pygame.Surface:
        """The part of the canvas that shows the frame: overlays aimed at the frame draw here."""
        if not self.on:
            return surf
        return surf.subsurface(pygame.Rect(0, 0, surf.get_width() // HALVES, surf.get_height()))
