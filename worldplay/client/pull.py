"""Frames straight from a source, on demand: the app's path for sources that do not generate ahead.

The world renderer (chunk = 1) renders the camera's pose now; a chunked source without
look-ahead gets a chunk of future poses at 1/fps (held keys rolled out; the tick's mouse look
is already in the camera). The call blocks, and its time per frame feeds the HUD's ms/frame.
Sources that generate ahead (the model) go through pacing.ChunkFeed instead.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
from torch import Tensor

from worldplay.controls import FirstPersonCamera, InputFrame
from worldplay.frame import Frame
from worldplay.sources.protocol import FrameSource, checked
from worldplay.timing import WarmAverage

SOURCE_MS_EMA = 0.2      # weight of the newest source timing in the HUD's ms/frame
WARMUP_PULLS = 2         # source calls shown raw before the ms/frame EMA starts


class DirectPull:
    def __init__(self, source: FrameSource, interval: float):
        self.source, self.interval = source, interval
        self.n = max(1, int(source.chunk))
        self.ms = WarmAverage(SOURCE_MS_EMA, WARMUP_PULLS)   # the source's time per frame

    @property
    def source_ms(self) -> float:
        return self.ms.value

    def poses(self, camera: FirstPersonCamera, inp: InputFrame, sim_t: float,
              path: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """c2w (n, 4, 4) and times (n,) of the next call; `path` overrides the rollout (booth)."""
        n = self.n
        if n == 1:
            return camera.c2w()[None], torch.tensor([sim_t], dtype=torch.float32)    # (1, 4, 4), (1,)
        if path is None:   # mouse motion is per tick and already applied: only held keys continue
            path = camera.rollout(replace(inp, mouse_dx=0.0, mouse_dy=0.0), self.interval, n)   # (n, 4, 4)
        return path, sim_t + self.interval * torch.arange(1, n + 1, dtype=torch.float32)

    def pull(self, camera: FirstPersonCamera, inp: InputFrame, sim_t: float,
             path: Tensor | None = None) -> list[Frame]:
        c2w, times = self.poses(camera, inp, sim_t, path)
        t0 = time.perf_counter()
        frames = checked(self.source.frames(c2w, times), self.source, self.n)
        self.ms.add((time.perf_counter() - t0) * 1000.0 / len(frames))
        return frames
