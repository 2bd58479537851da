"""Rendered training frames, a deterministic stream: item k is a function of k alone.

The world renderer is the data: 60+ frames/s with exact depth, so the VAE trains on a pool of
fresh renders instead of a dataset on disk. Item k of the stream is frame `k` of scene
`k // per_scene` (a training seed), seen from a random walkable pose at a random time, all drawn
from a generator seeded with k. A resumed run rebuilds its pool by rendering the last `size`
items again, so continuing is exact without storing frames.

Validation frames come from seeds at VALIDATION_SEED_START: training-split scenes the stream
never reaches, kept apart from the held-out evaluation seeds (world.dataset.HELDOUT_SEED_START).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from worldplay.config import ImageConfig
from worldplay.frame import Frame
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene
from worldplay.world.trajectories import poses_from
from worldplay.world.zones import CLEAR_INNER

VALIDATION_SEED_START = 900_000   # below the held-out seeds, far above any training stream


@dataclass(frozen=True)
class PoseSampler:
    inner: float = CLEAR_INNER + 0.05   # fraction of the scene radius: stay clear of the centrepiece
    outer: float = 0.95                 # and inside the walls
    pitch_deg: float = 20.0             # look up/down at most this much (players mostly look ahead)
    high_frac: float = 0.15             # share of poses lifted off eye height (players can fly)
    high_m: float = 4.0                 # how far up such a pose may go
    max_time: float = 60.0              # seconds into the scene: moving objects anywhere on their paths

    def sample(self, scene, g: torch.Generator) -> tuple[Tensor, float]:
        """A random (4, 4) c2w inside the scene's free ring and a time in seconds."""
        u = torch.rand(6, generator=g, dtype=torch.float64).tolist()
        r = scene.radius * math.sqrt(self.inner ** 2 + u[0] * (self.outer ** 2 - self.inner ** 2))
        a = 2 * math.pi * u[1]
        cx, cy, cz = (float(v) for v in scene.center)
        y = cy + (self.high_m * u[3] if u[2] < self.high_frac else 0.0)
        pos = torch.tensor([[cx + r * math.cos(a), y, cz + r * math.sin(a)]], dtype=torch.float32)
        yaw = torch.tensor([2 * math.pi * u[4]], dtype=torch.float32)
        pitch = torch.tensor([math.radians(self.pitch_deg) * (2 * u[5] - 1)], dtype=torch.float32)
        return poses_from(pos, yaw, pitch)[0], self.max_time * float(torch.rand(1, generator=g))


class FrameStream:
    """Item k -> one rendered Frame; consecutive items share a scene (one build per `per_scene`)."""

    def __init__(self, per_scene: int = 32, first_seed: int = 0, image: ImageConfig = ImageConfig(),
                 poses: PoseSampler = PoseSampler()):
        self.per_scene, self.first_seed, self.image, self.poses = per_scene, first_seed, image, poses
        self._seed: int | None = None
        self._renderer: Renderer | None = None

    def _scene(self, seed: int):
        if seed != self._seed:
            self._seed = seed
            self._renderer = Renderer(make_scene(seed), image=self.image)
        return self._renderer

    def item(self, k: int) -> Frame:
        r = self._scene(self.first_seed + k // self.per_scene)
        c2w, t = self.poses.sample(r.scene, torch.Generator().manual_seed(k))
        return r.render(c2w, t)


class FramePool:
    """A fixed-size pool of rendered frames, refreshed a few at a time from a FrameStream."""

    def __init__(self, stream: FrameStream, size: int, start: int = 0):
        H, W = stream.image.height, stream.image.width
        self.stream, self.size = stream, size
        self.rgb = torch.zeros(size, H, W, 3, dtype=torch.uint8)    # (P, H, W, 3)
        self.depth = torch.zeros(size, H, W, dtype=torch.float16)   # (P, H, W) metres
        self.pos = max(start, size)   # stream items consumed; slot = item % size
        for k in range(self.pos - size, self.pos):
            self._put(k)

    def _put(self, k: int) -> None:
        f = self.stream.item(k)
        self.rgb[k % self.size], self.depth[k % self.size] = f.rgb, f.depth.half()

    def refresh(self, n: int) -> None:
        """Replace the n oldest frames with the next n of the stream."""
        for k in range(self.pos, self.pos + n):
            self._put(k)
        self.pos += n


def validation_frames(n: int, image: ImageConfig = ImageConfig()) -> list[Frame]:
    """n fixed frames of scenes the training stream never sees (for loss curves and strips)."""
    stream = FrameStream(per_scene=4, first_seed=VALIDATION_SEED_START, image=image)
    return [stream.item(k) for k in range(n)]
