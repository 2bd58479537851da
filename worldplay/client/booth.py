"""Booth mode: an unattended demo that loops a scripted walk until someone plays.

After `idle_seconds` without input the app picks a fresh scene (the next visitor gets a new
world) and flies the attract path; any key, click or mouse motion hands control back to the
player at the pose the path had reached. Esc alone never quits a booth; the quit combo
(Ctrl+Shift+Q by default) does. The app owns the scene and the camera; this class only
keeps the idle timer and the path.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from worldplay.camera import yaw_pitch_of, yaw_pitch_pose
from worldplay.errors import WorldplayError
from worldplay.world.trajectories import make_trajectory

ATTRACT_PATH = "orbit"        # circles the scene centre: shows the whole world, loops seamlessly
ATTRACT_SECONDS = 60.0        # length of one lap before the path repeats
FALLBACK_TURN_RATE = 0.25     # rad/s pan in place when a source has no scene to orbit
EPS = 1e-6                    # float slack when turning world time into a frame index
BOOTH_DISABLED = frozenset({"screenshot", "record", "fullscreen"})  # visitors must not fill the
#   disk or leave fullscreen; the operator uses Ctrl+Shift+Q and restarts without --booth


def attract_path(scene, fps: float, start_c2w: Tensor) -> Tensor:
    """Poses (N, 4, 4) of one lap of the attract loop for `scene` (or a pan if scene is None)."""
    if scene is not None:
        n = int(round(ATTRACT_SECONDS * fps))
        traj = make_trajectory(ATTRACT_PATH, scene, n, fps=fps, seed=int(scene.seed),
                               with_revisits=False)   # revisit search is eval-only, O(N^2)
        return torch.as_tensor(traj.c2w, dtype=torch.float32)
    yaw, _ = yaw_pitch_of(start_c2w)
    n = int(round(2 * math.pi / FALLBACK_TURN_RATE * fps))    # one full turn, so it loops cleanly
    pos = start_c2w[:3, 3].tolist()
    return torch.stack([yaw_pitch_pose(pos, yaw + 2 * math.pi * k / n, 0.0) for k in range(n)])


class Booth:
    def __init__(self, idle_seconds: float, fps: float):
        if idle_seconds <= 0:
            raise WorldplayError(f"booth idle time {idle_seconds} s must be > 0; try --idle-seconds 30")
        self.idle_seconds = idle_seconds
        self.fps = fps
        self.idle = 0.0              # seconds since the last input
        self.attract = False
        self.visitors = 0            # attract loops started (each ends a visit)
        self._t = 0.0                # seconds into the attract path
        self._poses: Tensor | None = None    # (N, 4, 4)

    def tick(self, activity: bool, dt: float) -> str | None:
        """Update the idle timer. Returns "start" when the attract loop should begin (the app
        then picks a new scene and calls `begin`), "stop" when input ends it, else None."""
        if activity:
            self.idle = 0.0
            if self.attract:
                self.attract = False
                return "stop"
            return None
        self.idle += dt
        if self.attract:
            self._t += dt
        elif self.idle >= self.idle_seconds:
            return "start"
        return None

    def begin(self, scene, start_c2w: Tensor) -> None:
        self._poses = attract_path(scene, self.fps, start_c2w)
        self._t = 0.0
        self.attract = True
        self.visitors += 1

    def _index(self) -> int:
        return int(self._t * self.fps + EPS)

    def pose(self) -> Tensor:
        """Where the attract path is now (4, 4)."""
        return self._poses[self._index() % len(self._poses)]

    def poses(self, n: int) -> Tensor:
        """The next n path poses (n, 4, 4), one frame apart, for chunked sources."""
        idx = (self._index() + 1 + torch.arange(n)) % len(self._poses)
        return self._poses[idx]
