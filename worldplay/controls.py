"""Input state -> camera motion. Pure Python/torch: no pygame here, so it is testable
and reusable by scripted paths and the headless client.

The client fills an `InputFrame` from its events each display tick; `FirstPersonCamera.update`
integrates it over `dt` seconds, so movement speed does not depend on the frame rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from worldplay.camera import yaw_pitch_of, yaw_pitch_pose
from worldplay.config import ControlsConfig


@dataclass
class InputFrame:
    """What the player asks for during one tick. Axes are in [-1, 1]."""
    forward: float = 0.0      # W = +1, S = -1
    strafe: float = 0.0       # D = +1, A = -1
    vertical: float = 0.0     # Space = +1, C = -1
    sprint: bool = False      # Shift
    mouse_dx: float = 0.0     # relative pixels this tick, + = right
    mouse_dy: float = 0.0     # relative pixels this tick, + = down
    turn: float = 0.0         # arrow keys: Right = +1, Left = -1
    look: float = 0.0         # arrow keys: Up = +1, Down = -1

    def is_idle(self) -> bool:
        return not (self.forward or self.strafe or self.vertical or self.mouse_dx
                    or self.mouse_dy or self.turn or self.look)


@dataclass
class CameraState:
    x: float = 0.0
    y: float = 1.6            # eye height of a standing person, metres
    z: float = 0.0
    yaw: float = 0.0          # radians, + turns right; 0 looks along -z
    pitch: float = 0.0        # radians, + looks up

    def c2w(self) -> Tensor:
        return yaw_pitch_pose((self.x, self.y, self.z), self.yaw, self.pitch)

    @classmethod
    def from_c2w(cls, c2w: Tensor) -> "CameraState":
        yaw, pitch = yaw_pitch_of(c2w)
        x, y, z = (float(v) for v in c2w[:3, 3])
        return cls(x, y, z, yaw, pitch)


class FirstPersonCamera:
    """WASD + mouse fly camera with clamped pitch and height."""

    def __init__(self, cfg: ControlsConfig = ControlsConfig(), start: CameraState | None = None):
        self.cfg = cfg
        self.start = replace(start) if start is not None else CameraState()
        self.state = replace(self.start)

    def reset(self, start: CameraState | None = None) -> None:
        if start is not None:
            self.start = replace(start)
        self.state = replace(self.start)

    def update(self, inp: InputFrame, dt: float) -> Tensor:
        """Advance by dt seconds under input `inp`; returns the new c2w (4, 4)."""
        c, s = self.cfg, self.state
        # Look: mouse is already "per tick" (pixels moved), arrows are rates (need dt).
        s.yaw += inp.mouse_dx * c.mouse_sensitivity + inp.turn * c.arrow_turn_rate * dt
        dpitch = -inp.mouse_dy * c.mouse_sensitivity + inp.look * c.arrow_turn_rate * dt
        s.pitch += -dpitch if c.invert_y else dpitch
        lim = math.radians(c.pitch_limit_deg)
        s.pitch = max(-lim, min(lim, s.pitch))
        s.yaw = math.remainder(s.yaw, 2 * math.pi)

        # Move along the view direction (W flies where you look) and the horizontal right vector.
        speed = c.walk_speed * (c.sprint_multiplier if inp.sprint else 1.0)
        cy, sy, cp, sp = math.cos(s.yaw), math.sin(s.yaw), math.cos(s.pitch), math.sin(s.pitch)
        fwd = (sy * cp, sp, -cy * cp)
        right = (cy, 0.0, sy)
        f, r = _clamp1(inp.forward), _clamp1(inp.strafe)
        s.x += (fwd[0] * f + right[0] * r) * speed * dt
        s.y += (fwd[1] * f) * speed * dt + _clamp1(inp.vertical) * c.vertical_speed * dt
        s.z += (fwd[2] * f + right[2] * r) * speed * dt
        s.y = max(c.min_height, min(c.max_height, s.y))
        return s.c2w()

    def c2w(self) -> Tensor:
        return self.state.c2w()

    def rollout(self, inp: InputFrame, dt: float, n: int) -> Tensor:
        """Poses (n, 4, 4) for the next n ticks if `inp` is held, without changing the state.
        The model streamer needs a chunk of future poses at once."""
        saved = replace(self.state)
        poses = torch.stack([self.update(inp, dt) for _ in range(n)])
        self.state = saved
        return poses


def _clamp1(v: float) -> float:
    return max(-1.0, min(1.0, float(v)))
