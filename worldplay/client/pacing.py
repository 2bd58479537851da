"""How frames go up in the client: one interface, one strategy per kind of source.

Each tick the app asks its `Pacing` how far world time moves and whether a frame goes up now
(`advance`), then takes that frame (`next`). The strategies:

- `pull.OnDemand`, for sources that make frames when asked (the renderer; chunked sources
  without look-ahead): the camera moves with real time, and a frame goes up every 1/fps of world
  time, pulled from the source when the small queue of a chunk's frames is empty.
- `feed.LookAhead`, for sources that generate ahead (the model streamer): the next chunk
  generates while this one is shown, frames go up at a steady 1/fps when the model keeps up and
  as soon as they are ready when it does not, world time moves one 1/fps step per frame shown
  (a slow model slows the world instead of teleporting the player), and the camera is where the
  shown frame was made.

Headless runs step exactly 1/fps of world time per tick and wait for every frame, so they are
deterministic. `Pacer` and `RateMeter` take the clock as an argument, so tests drive them with
a fake one.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from worldplay.client.booth import Booth
from worldplay.controls import CameraState, InputFrame
from worldplay.frame import Frame

EPS = 1e-6              # s; float slack when comparing clock readings to the cadence
RATE_WINDOW_S = 2.0     # s of history in a rate: spans a few chunks, so bursts average out


@dataclass(frozen=True)
class Advance:
    """What one tick does to the session: world seconds it moves (0: the world waits) and
    whether a frame goes up now."""
    world_dt: float
    show: bool


class Pacing(Protocol):
    source_ms: float     # the source's time per frame when pulled on demand (0 for look-ahead)

    def advance(self, inp: InputFrame, dt: float, single: bool, force: bool) -> Advance:
        """This tick's input after `dt` wall (or headless) seconds. `single`: one paused step;
        `force`: a frame must go up now (a reset, or none shown yet)."""

    def next(self, inp: InputFrame, sim_t: float) -> Frame:
        """The frame to show now, at world time `sim_t`."""

    def reset(self, start: CameraState, t: float = 0.0) -> None:
        """Forget what is queued: the session restarts from pose `start` at world time `t`."""

    def settle(self) -> None:
        """Finish any frames being made, so the source's state is whole (before a save or an edit)."""


def attract_path(booth: Booth | None, n: int) -> Tensor | None:
    """The booth's next n attract poses (n, 4, 4) for a chunked source, while it attracts."""
    if booth is None or not booth.attract or n == 1:
        return None
    return booth.poses(n)


class Pacer:
    """Show-time cadence: `due(now)` before showing, `shown(now)` after."""

    def __init__(self, interval: float):
        self.interval = interval
        self._next: float | None = None      # clock time the next frame is due

    def reset(self) -> None:
        self._next = None

    def due(self, now: float) -> bool:
        return self._next is None or now + EPS >= self._next

    def shown(self, now: float) -> None:
        if self._next is None or now - self._next + EPS >= self.interval:
            self._next = now + self.interval   # it came late (queue ran dry): restart the cadence
        else:
            self._next += self.interval        # on time: keep the cadence exact, no drift


class RateMeter:
    """Events per second over the last `window` seconds of a clock (bursty arrivals average out)."""

    def __init__(self, window: float = RATE_WINDOW_S):
        self.window = window
        self._times: deque[float] = deque()

    def tick(self, now: float | None = None, count: int = 1) -> None:
        now = time.perf_counter() if now is None else now
        self._times.extend([now] * count)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(now - self._times[0], EPS)

    def reset(self) -> None:
        self._times.clear()
