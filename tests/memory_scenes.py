"""Analytic scenes for the memory tests: depth at patch centres from ray casting simple shapes."""

from __future__ import annotations

import math

import torch

from worldplay.camera import camera_rays, look_at, scale_intrinsics, yaw_pitch_pose
from worldplay.memory.config import MemoryConfig

ROOM_RADIUS, CEILING, WALK_RADIUS, EYE = 8.0, 4.0, 3.0, 1.6   # metres
FPS = 16.0


def facing(z: float = 0.0, x: float = 0.0) -> torch.Tensor:
    """Eye-height camera at (x, z) looking along world -z."""
    return look_at((x, EYE, z), (x, EYE, z - 5.0))


def patch_rays(cfg: MemoryConfig, c2w: torch.Tensor, K: torch.Tensor):
    """Ray origin (3,) and directions (h, w, 3) through the patch centres (t along a ray = z-depth)."""
    Kp = K.clone()
    Kp[1, 2] += cfg.pad_top                      # pixel rows of the padded frame
    h, w = cfg.grid_hw
    return camera_rays(c2w, scale_intrinsics(Kp, 1.0 / cfg.patch_px), h, w)


def plane_z_depth(cfg: MemoryConfig, c2w, K, plane_z: float) -> torch.Tensor:
    """Per-patch depth (h, w) of the plane world-z = plane_z (inf where it is not in front)."""
    o, d = patch_rays(cfg, c2w, K)
    t = (plane_z - o[2]) / d[..., 2]
    return torch.where(t > 0, t, torch.full_like(t, float("inf")))


def room_depth(cfg: MemoryConfig, c2w, K) -> torch.Tensor:
    """Per-patch depth inside a cylindrical room with floor and ceiling."""
    o, d = patch_rays(cfg, c2w, K)
    a = d[..., 0] ** 2 + d[..., 2] ** 2
    b = o[0] * d[..., 0] + o[2] * d[..., 2]
    c = o[0] ** 2 + o[2] ** 2 - ROOM_RADIUS ** 2
    wall = (-b + torch.sqrt(b * b - a * c)) / a
    inf = torch.full_like(a, float("inf"))
    floor = torch.where(d[..., 1] < 0, -o[1] / d[..., 1].clamp(max=-1e-9), inf)
    ceil = torch.where(d[..., 1] > 0, (CEILING - o[1]) / d[..., 1].clamp(min=1e-9), inf)
    return torch.minimum(wall, torch.minimum(floor, ceil))


def loop_pose(i: int, frames_per_loop: int) -> torch.Tensor:
    """Walking a circle inside the room, looking along the direction of travel."""
    th = 2 * math.pi * i / frames_per_loop
    return yaw_pitch_pose((WALK_RADIUS * math.cos(th), EYE, WALK_RADIUS * math.sin(th)), th + math.pi, 0.0)
