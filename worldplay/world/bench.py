"""Frames/s of the MosaicWorld renderer along a moving camera (`worldplay bench --source world`).

The camera orbits the scene centre inside the free annulus while scene time advances at the
product frame rate, so movers move and culling sees a changing view, like a player would.
"""

from __future__ import annotations

import math
import statistics
import time

import torch

from worldplay.camera import look_at
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene

WARMUP_FRAMES = 3          # first frames pay for allocation and caches; not timed
ORBIT_FRACTION = 0.6       # orbit radius as a fraction of the scene's free radius
ORBIT_PERIOD_S = 20.0      # seconds of scene time per full orbit: a slow walk
LOOK_AHEAD_RAD = 0.8       # look at a point ahead on the circle, not the centre, to vary views


def _pose(scene, t: float):
    cx, cy, cz = scene.center
    rad = ORBIT_FRACTION * scene.radius
    a = 2 * math.pi * t / ORBIT_PERIOD_S
    eye = (cx + rad * math.sin(a), cy, cz + rad * math.cos(a))
    target = (cx + rad * math.sin(a + LOOK_AHEAD_RAD), cy, cz + rad * math.cos(a + LOOK_AHEAD_RAD))
    return look_at(eye, target)


def _percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def bench_renderer(seconds: float = 5.0, device: str = "cpu", seed: int = 0,
                   prompt: str | None = None, image: ImageConfig = ImageConfig()) -> dict:
    """Render for about `seconds` after a warm-up; return timing numbers as a flat dict."""
    if seconds <= 0:
        raise WorldplayError(f"bench seconds={seconds}: give a positive duration, e.g. 5")
    scene = make_scene(seed, prompt)
    renderer = Renderer(scene, image=image, device=device)
    dt = 1.0 / image.fps
    for i in range(WARMUP_FRAMES):
        renderer.render(_pose(scene, i * dt), i * dt)
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = len(times) * dt
        pose = _pose(scene, t)
        t0 = time.perf_counter()
        renderer.render(pose, t)            # returns CPU tensors, so CUDA work is finished
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    ms = [x * 1000.0 for x in times]
    return {
        "source": "world",
        "device": str(renderer.device),
        "width": image.width,
        "height": image.height,
        "frames": len(times),
        "seconds": round(total, 3),
        "fps": round(len(times) / total, 2),
        "ms_per_frame_mean": round(statistics.fmean(ms), 2),
        "ms_per_frame_p50": round(_percentile(ms, 0.5), 2),
        "ms_per_frame_p95": round(_percentile(ms, 0.95), 2),
        "scene": scene.prompt,
        "seed": seed,
        "torch": torch.__version__,
        "cpu threads": torch.get_num_threads(),
        "render threads": renderer.threads or torch.get_num_threads(),
    }
