"""Frames/s of any frame source along a moving camera (`worldplay bench --source SPEC`).

The camera orbits the scene centre inside the free annulus while scene time advances at the
product frame rate, so movers move and culling sees a changing view, like a player would. Each
call asks the source for one chunk of consecutive poses; its time per frame is the call's time
over the chunk. For `world` this is the renderer's speed; the model streamer has its own,
finer bench (stream/bench.py: per-stage timings, FLOPs).
"""

from __future__ import annotations

import math
import statistics
import time

import torch
from torch import Tensor

from worldplay.camera import look_at
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.sources.capabilities import HasScene
from worldplay.sources.protocol import FrameSource, checked
from worldplay.timing import percentile
from worldplay.world.scene import Scene, make_scene

WARMUP_CALLS = 3           # first calls pay for allocation and caches; not timed
ORBIT_FRACTION = 0.6       # orbit radius as a fraction of the scene's free radius
ORBIT_PERIOD_S = 20.0      # seconds of scene time per full orbit: a slow walk
LOOK_AHEAD_RAD = 0.8       # look at a point ahead on the circle, not the centre, to vary views
MS = 1000.0


def orbit_pose(scene: Scene, t: float) -> Tensor:
    """c2w (4, 4) at time t on a slow orbit around the scene centre."""
    cx, cy, cz = scene.center
    rad = ORBIT_FRACTION * scene.radius
    a = 2 * math.pi * t / ORBIT_PERIOD_S
    eye = (cx + rad * math.sin(a), cy, cz + rad * math.cos(a))
    target = (cx + rad * math.sin(a + LOOK_AHEAD_RAD), cy, cz + rad * math.cos(a + LOOK_AHEAD_RAD))
    return look_at(eye, target)


def bench_source(source: FrameSource, seconds: float = 5.0, seed: int = 0, fps: float = ImageConfig.fps) -> dict:
    """Pull chunks for about `seconds` after a warm-up; return timing numbers as a flat dict.
    The orbit is in the source's scene (or scene `seed` for a source without one)."""
    if seconds <= 0:
        raise WorldplayError(f"bench seconds={seconds}: give a positive duration, e.g. 5")
    scene = source.scene if isinstance(source, HasScene) else make_scene(seed)
    n, dt = int(source.chunk), 1.0 / fps
    done = 0                                   # frames asked for so far: the clock of the orbit

    def pull() -> tuple[float, list]:
        nonlocal done
        times = dt * torch.arange(done, done + n, dtype=torch.float64)           # (n,)
        c2w = torch.stack([orbit_pose(scene, float(t)) for t in times])           # (n, 4, 4)
        t0 = time.perf_counter()
        frames = checked(source.frames(c2w, times), source, n)
        done += n
        return time.perf_counter() - t0, frames

    for _ in range(WARMUP_CALLS):
        _, frames = pull()
    ms: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        secs, _ = pull()
        ms += [secs * MS / n] * n
    total = time.perf_counter() - start
    h, w = frames[0].rgb.shape[:2]
    out = {"source": source.name, "width": int(w), "height": int(h), "chunk": n, "frames": len(ms),
           "seconds": round(total, 3), "fps": round(len(ms) / total, 2),
           "ms_per_frame_mean": round(statistics.fmean(ms), 2),
           "ms_per_frame_p50": round(percentile(ms, 0.5), 2),
           "ms_per_frame_p95": round(percentile(ms, 0.95), 2),
           "scene": scene.prompt, "seed": scene.seed,
           "torch": torch.__version__, "cpu threads": torch.get_num_threads()}
    if isinstance(source, HasScene):
        out["device"] = str(source.renderer.device)
        out["render threads"] = source.renderer.threads or torch.get_num_threads()
    return out
