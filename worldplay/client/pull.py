"""Frames straight from a source, on demand: the pacing of sources that do not generate ahead.

The world renderer (chunk = 1) renders the camera's pose now; a chunked source without
look-ahead gets a chunk of future poses at 1/fps (held keys rolled out; the tick's mouse look
is already in the camera). The call blocks, and its time per frame feeds the HUD's ms/frame.
`OnDemand` is the client's pacing strategy (pacing.py) for these sources: the camera moves with
real time and a frame goes up every 1/fps of world time. Sources that generate ahead (the
model) are paced by feed.LookAhead instead.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import replace

import torch
from torch import Tensor

from worldplay.client.booth import Booth
from worldplay.client.pacing import EPS, Advance, attract_path
from worldplay.controls import CameraState, FirstPersonCamera, InputFrame
from worldplay.frame import Frame
from worldplay.sources.protocol import FrameSource, checked
from worldplay.timing import WarmAverage

SOURCE_MS_EMA = 0.2      # weight of the newest source timing in the HUD's ms/frame
WARMUP_PULLS = 2         # source calls shown raw before the ms/frame EMA starts
MAX_DT = 0.5             # s; a stall (window drag, slow frame) must not teleport the player


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


class OnDemand:
    """Pacing of a source that makes frames when asked: the camera moves with real time (`dt`)
    and a frame goes up every 1/fps of world time, from a queue refilled one call at a time."""

    def __init__(self, source: FrameSource, camera: FirstPersonCamera, interval: float, booth: Booth | None):
        self.pull = DirectPull(source, interval)
        self.camera, self.interval, self.booth = camera, interval, booth
        self.queue: deque[Frame] = deque()
        self.since_frame = 0.0       # world seconds since the shown frame changed

    @property
    def source_ms(self) -> float:
        return self.pull.source_ms

    def advance(self, inp: InputFrame, dt: float, single: bool, force: bool) -> Advance:
        dt = self.interval if single else min(dt, MAX_DT)
        if self.booth is not None and self.booth.attract:
            self.camera.state = CameraState.from_c2w(self.booth.pose())
        else:
            self.camera.update(inp, dt)
        self.since_frame += dt
        show = force or self.since_frame + EPS >= self.interval
        if show:   # keep the remainder for a steady pace, but never bank more than one frame of lag
            self.since_frame = min(max(self.since_frame - self.interval, 0.0), self.interval)
        return Advance(dt, show)

    def next(self, inp: InputFrame, sim_t: float) -> Frame:
        if not self.queue:
            self.queue.extend(self.pull.pull(self.camera, inp, sim_t, attract_path(self.booth, self.pull.n)))
        return self.queue.popleft()

    def reset(self, start: CameraState, t: float = 0.0) -> None:
        self.queue.clear()
        self.since_frame = 0.0

    def settle(self) -> None:
        pass                         # nothing is ever in flight: every pull returns its frames
