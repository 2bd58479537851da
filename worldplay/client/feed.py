"""Steady display of a look-ahead source: the next chunk generates while this one is shown.

`ChunkFeed` drives a chunked source that can `prefetch` (the model streamer): as soon as a chunk
is handed over it plans the next chunk's poses (the player's input rolled out at 1/fps from
where the last planned chunk ends) and asks the source to generate it in the background. The
planned poses form one continuous path, so the model never sees a jump between chunks; world
time advances one 1/fps step per frame. With `ahead=False` (headless runs) the feed plans the
same poses at the same moments but never starts a background generation: each chunk is
generated when it is handed over, so a headless run is exactly reproducible.

`LookAhead` is the client's pacing strategy (pacing.py) for such sources: the feed, plus the
`Pacer` that decides when the next frame goes up.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import replace

import torch
from torch import Tensor

from worldplay.client.booth import Booth
from worldplay.client.pacing import Advance, Pacer, attract_path
from worldplay.controls import CameraState, FirstPersonCamera, InputFrame
from worldplay.errors import WorldplayError
from worldplay.frame import Frame
from worldplay.sources.capabilities import Prefetching
from worldplay.sources.protocol import checked


class ChunkFeed:
    """Plans chunk poses one chunk ahead and keeps the source generating while frames are shown."""

    def __init__(self, source: Prefetching, interval: float, head: FirstPersonCamera, ahead: bool = True):
        self.source, self.interval, self.n = source, interval, int(source.chunk)
        self.ahead = ahead                    # False: no background generation (headless)
        self.head = head                      # where the planned path ends (not the shown pose)
        self.queue: deque[Frame] = deque()    # generated, not yet shown
        self.planned: tuple[Tensor, Tensor] | None = None   # requested, not yet handed over
        self.t = 0.0                          # world time of the last planned frame, s
        self._dx = self._dy = 0.0             # mouse look since the last plan, px

    def reset(self, start: CameraState, t: float = 0.0) -> None:
        """Drop what is queued and planned; the next plan starts after pose `start` at time `t`.
        The source must already have forgotten (or finished) any chunk in flight."""
        self.queue.clear()
        self.planned = None
        self.head.reset(start)
        self.t = float(t)
        self._dx = self._dy = 0.0

    def look(self, inp: InputFrame) -> None:
        """Collect this tick's mouse motion for the next plan (it turns the path once)."""
        self._dx += inp.mouse_dx
        self._dy += inp.mouse_dy

    def plan(self, inp: InputFrame, path: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Poses (n, 4, 4) and times (n,) continuing the planned path: `path` when given (the
        booth's attract loop), else the held keys rolled out at 1/fps after the collected look."""
        if path is None:
            self.head.update(InputFrame(mouse_dx=self._dx, mouse_dy=self._dy), 0.0)   # look only
            path = self.head.rollout(replace(inp, mouse_dx=0.0, mouse_dy=0.0), self.interval, self.n)
        if tuple(path.shape) != (self.n, 4, 4):
            raise WorldplayError(f"chunk path must be ({self.n}, 4, 4), got {tuple(path.shape)}")
        self._dx = self._dy = 0.0
        # the head restarts from the pose as the source will store it, so a resumed session
        # (which starts from its last stored pose) plans exactly the path this one would
        self.head.state = CameraState.from_c2w(path[-1].detach().cpu().float())
        times = self.t + self.interval * torch.arange(1, self.n + 1, dtype=torch.float64)   # (n,)
        self.t = float(times[-1])
        return path.detach().cpu().float(), times

    def _request(self, inp: InputFrame, path: Tensor | None) -> None:
        self.planned = self.plan(inp, path)
        if self.ahead:
            self.source.prefetch(*self.planned)

    def ready(self, inp: InputFrame, path: Tensor | None = None) -> bool:
        """True when `next` will not wait: a frame is queued, or the chunk in flight is done.
        With nothing queued or in flight, this starts generating the next chunk."""
        if self.queue:
            return True
        if self.planned is None:
            self._request(inp, path)
        return True if not self.ahead else bool(self.source.ready())

    def _hand_over(self) -> None:
        frames = checked(self.source.frames(*self.planned), self.source, self.n)
        self.planned = None
        self.queue.extend(frames)

    def next(self, inp: InputFrame, path: Tensor | None = None) -> Frame:
        """The next frame (waits for the chunk in flight if it is not done); then makes sure the
        chunk after is already being generated. A chunk planned in this very call is not followed
        by another until the next call: `path` (this tick's booth poses) would plan it twice."""
        fresh = not self.queue and self.planned is None
        if fresh:
            self._request(inp, path)
        if not self.queue:
            self._hand_over()
        frame = self.queue.popleft()
        if self.planned is None and not fresh:
            self._request(inp, path)
        return frame

    def settle(self) -> None:
        """Finish the chunk in flight and queue it, so the source's state is whole (before a save,
        a load, a freeze or an edit). The next `next` or `ready` plans the chunk after it."""
        if self.planned is not None:
            self._hand_over()


class LookAhead:
    """Pacing of a source that generates ahead: frames go up when due and done."""
    source_ms = 0.0      # the HUD shows the model's own generation rate instead

    def __init__(self, source: Prefetching, camera: FirstPersonCamera, head: FirstPersonCamera,
                 interval: float, booth: Booth | None, headless: bool):
        self.feed = ChunkFeed(source, interval, head, ahead=not headless)
        self.pacer = Pacer(interval)
        self.camera, self.interval, self.booth, self.headless = camera, interval, booth, headless
        self.clock = 0.0     # headless pacing clock: the sum of dt, never the wall

    def advance(self, inp: InputFrame, dt: float, single: bool, force: bool) -> Advance:
        self.feed.look(inp)
        self.clock += dt
        now = self.clock if self.headless else time.perf_counter()
        if not (force or self.pacer.due(now)):
            return Advance(0.0, False)
        if not (self.headless or single or self.feed.ready(inp, attract_path(self.booth, self.feed.n))):
            return Advance(0.0, False)      # the model is behind: keep drawing, show it when it lands
        self.pacer.shown(now)
        return Advance(self.interval, True)   # world time is frame time: a slow model slows the world

    def next(self, inp: InputFrame, sim_t: float) -> Frame:
        frame = self.feed.next(inp, attract_path(self.booth, self.feed.n))
        self.camera.state = CameraState.from_c2w(frame.c2w.detach().cpu().float())   # the player is where it shows
        return frame

    def reset(self, start: CameraState, t: float = 0.0) -> None:
        self.feed.reset(start, t)
        self.pacer.reset()

    def settle(self) -> None:
        self.feed.settle()
