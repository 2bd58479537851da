"""The "model" source: the Mosaic Forcing streamer on a checkpoint, in a MosaicWorld scene.

    source = ModelSource("tiny-random", seed=7, prompt="desert dusk pillars", device="cpu")
    frames = source.frames(c2w, times)          # chunk = F frames per call

Context: the first `context_frames` frames after a reset (1 by default: the TI2V first frame)
are rendered as ground truth by the world renderer and *observed* by the streamer (encoded,
their K/V written by the clean pass, inserted into memory) instead of generated; every later
frame is generated. A chunk that straddles the boundary is part observed, part generated. The
eval sets `context_frames` to the first revisit, as it does for the explicit baseline;
`play --context N` / `record --context N` start the model from N real frames.

Overlap of generation with display/encoding (optional, off by default so tests are exactly
sequential): with lookahead=True a caller that knows the next chunk's poses calls
`prefetch(c2w, times)` before it shows the current chunk; a single background worker generates
it meanwhile, and the next `frames` call collects it (one chunk of look-ahead). `frames` after a
prefetch returns the prefetched chunk (its frames carry the poses they were made at); `ready()`
says whether it is done, so a client can keep drawing instead of blocking on it.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import Tensor

from worldplay.checkpoints import CheckpointInfo
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.frame import Frame
from worldplay.memory import MosaicMemory
from worldplay.sources.protocol import check_chunk
from worldplay.sources.weights import load_weights, with_context
from worldplay.stream.streamer import Streamer
from worldplay.timing import WarmAverage
from worldplay.world.render import Renderer
from worldplay.world.scene import Scene, make_scene

GEN_FPS_EMA = 0.3   # weight of the newest chunk in the generation rate: steady, yet follows a change
GEN_WARMUP = 2      # chunks shown raw: the first pays the context render and one-off allocations
TI2V_CONTEXT = 1    # frames observed by default: the model starts from one real frame
# `model+fast`: the CPU real-time setting (README "Speed levers"): 2 denoising steps, one past
# chunk in the rolling window and a 1-chunk sink (the first chunk, with the real first frame, stays
# in attention: dropping it bought 10 % speed on the shipped weights, trained with it, and cost
# 1.1 dB on new views and 0.3 deg of pose); the precision stays the device's (serving_dtype).
# The shipped tiny model's own setting is this one; the client asks for it on CPU so that any
# model (base, a file) runs as fast as it can there. Typed settings win: model+fast+steps=4.
FAST = "fast"
FAST_SETTINGS = {"steps": "2", "window": "1", "sink": "1"}


def build_streamer(model: str | None = None, device: str = "cpu", seed: int = 0, *, steps: int | None = None,
                   memory: str = "full", dtype: torch.dtype = torch.float32, chunk: int | None = None,
                   window: int | None = None, sink: int | None = None,
                   registry=None) -> tuple[Streamer, CheckpointInfo]:
    """A Streamer for a registry name or checkpoint path (None: the registry's default), both
    networks in `dtype` (the streamer keeps cameras and memory geometry in float32)."""
    w = load_weights(model, chunk=chunk, registry=registry)
    return Streamer(with_context(w.cfg, window, sink), w.dit.to(dtype), w.vae.to(dtype), device=device, seed=seed,
                    steps=steps, memory_mode=memory, checkpoint_sha=w.sha256), w.info


class ModelSource:
    """FrameSource "model". Capabilities: HasScene, HasSpawn, HasMemory, HasSession, Prefetching,
    ObservesContext, Closable."""

    def __init__(self, model: str | None = None, seed: int = 0, prompt: str | None = None, device: str = "cpu",
                 *, steps: int | None = None, memory: str = "full", lookahead: bool = False,
                 streamer: Streamer | None = None, label: str | None = None,
                 context_frames: int = TI2V_CONTEXT, dtype: torch.dtype = torch.float32, chunk: int | None = None,
                 window: int | None = None, sink: int | None = None):
        if streamer is None:
            streamer, info = build_streamer(model, device, seed, steps=steps, memory=memory, dtype=dtype, chunk=chunk,
                                            window=window, sink=sink)
            label = label or info.label
        self.streamer = streamer
        self.label = label or streamer.cfg.label
        self.name = "model" if model is None else f"model:{model}"
        self.chunk = streamer.cfg.dit.chunk_frames
        self.context_frames = int(context_frames)
        self.lookahead = lookahead
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worldplay-gen") if lookahead else None
        self._pending: Future | None = None   # the prefetched chunk being generated
        self.seed, self.prompt = int(seed), prompt
        self._resume_time, self._time_offset = False, 0.0
        self._gen_rate = WarmAverage(GEN_FPS_EMA, GEN_WARMUP)   # frames per second of generation wall time
        self._build_scene()

    def _build_scene(self) -> None:
        v = self.streamer.cfg.vae
        self.scene: Scene = make_scene(self.seed, self.prompt)   # unknown words raise WorldplayError here
        self.renderer = Renderer(self.scene, image=ImageConfig(width=v.width, height=v.height))
        self.started = False
        self.shown = 0              # frames handed out since reset: which ones are context

    def reset(self, seed: int | None = None, prompt: str | None = None) -> None:
        """Forget the session; a new scene when seed or prompt is given. The next `frames` call
        renders the context frames and starts generating after them."""
        self._collect()
        if seed is not None or prompt is not None:
            self.seed = self.seed if seed is None else int(seed)
            self.prompt = prompt
            self._build_scene()
        self.started = False
        self.shown = 0
        self._resume_time, self._time_offset = False, 0.0

    def spawn_pose(self) -> Tensor:
        """Where a client's camera starts: the last generated pose of a resumed session, else the scene's."""
        last = self.resume_point()
        return last[0].clone() if last is not None else self.scene.spawn_pose()

    # HasMemory: the client's minimap, edit mode and memory lock go straight to the streamer's
    @property
    def memory(self) -> MosaicMemory:
        return self.streamer.memory

    @property
    def memory_frozen(self) -> bool:
        return self.streamer.memory_frozen

    @memory_frozen.setter
    def memory_frozen(self, on: bool) -> None:
        self.streamer.memory_frozen = bool(on)

    @property
    def gen_fps(self) -> float:
        """Frames generated per second while generating (the HUD's model FPS)."""
        return self._gen_rate.value

    @property
    def memory_lock(self):
        return self.streamer.memory_lock

    def _generate(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        start = time.perf_counter()
        frames = self._make_chunk(c2w, times)
        self._gen_rate.add(len(frames) / max(time.perf_counter() - start, 1e-9))
        return frames

    def _make_chunk(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        if self._resume_time:   # a resumed session's clock continues where it stopped
            last = self.streamer.times
            if last.shape[0] and float(times[0]) <= float(last[-1]):
                step = float(times[1] - times[0]) if times.shape[0] > 1 else 1.0 / ImageConfig.fps
                self._time_offset = float(last[-1]) + step - float(times[0])
            self._resume_time = False
        times = times + self._time_offset
        if not self.started:
            self.streamer.reset(None, self.scene.prompt, seed=self.seed)
            self.started = True
        # this chunk's first k frames are context: ground truth, observed rather than generated
        k = min(max(self.context_frames - self.shown, 0), self.chunk)
        self.shown += self.chunk
        truth = [self.renderer.render(c2w[i], float(times[i])) for i in range(k)]
        self.streamer.observe(truth)
        return truth if k == self.chunk else self.streamer.step(c2w, times)

    def frames(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        """One chunk: c2w (chunk, 4, 4), times (chunk,) seconds."""
        check_chunk("ModelSource", c2w, times)
        done = self._collect()
        return done if done is not None else self._generate(c2w, times)

    def prefetch(self, c2w: Tensor, times: Tensor) -> None:
        """Start generating the next chunk in the background (no-op unless lookahead is on)."""
        if self._pool is None:
            return
        if self._pending is not None:
            raise WorldplayError("ModelSource.prefetch: the previous prefetched chunk was never collected; "
                                 "call frames() between prefetches")
        # copies: the caller may reuse its pose buffers while the worker reads them
        self._pending = self._pool.submit(self._generate, c2w.clone(), times.clone())

    def ready(self) -> bool:
        """True unless a prefetched chunk is still being generated (`frames` would then wait)."""
        return self._pending is None or self._pending.done()

    def _collect(self) -> list[Frame] | None:
        if self._pending is None:
            return None
        fut, self._pending = self._pending, None
        return fut.result()

    # HasSession: the whole streamer state in one file
    def save(self, path: str | os.PathLike) -> None:
        if self._pending is not None:
            raise WorldplayError("ModelSource.save: a prefetched chunk is still pending; call frames() first")
        self.streamer.save(path)

    def load(self, path: str | os.PathLike) -> None:
        self._collect()
        self.streamer.load(path)
        s = self.streamer
        if (s.seed, s.prompt) != (self.seed, self.scene.prompt):   # saved in another scene
            self.seed, self.prompt = s.seed, s.prompt or None
            self._build_scene()
        self.started = s.started
        self.shown = s.frame + len(s.pending)    # the saved session's context is behind it
        self._resume_time, self._time_offset = True, 0.0

    def resume_point(self) -> tuple[Tensor, float] | None:
        s = self.streamer
        if not self.started or s.poses.shape[0] == 0:
            return None
        return s.poses[-1].cpu().float(), float(s.times[-1])

    def session_summary(self) -> str:
        return f"{self.streamer.poses.shape[0]} frames, {len(self.streamer.memory)} memory patches"

    def report(self) -> dict[str, float]:
        return {"memory entries": float(len(self.streamer.memory)),
                "memory keyframes": float(len(self.streamer.memory.views)),
                "kv cache MB": self.streamer.cache.nbytes / 2 ** 20}

    def hud(self) -> dict[str, str]:
        s = self.streamer
        ms = sum(s.stats["ms"].values())
        d = s.cfg.dit
        setting = f"{s.schedule.steps} steps, window {d.window_chunks}, {str(s.dtype).replace('torch.', '')}"
        return {"source": self.name, "model": self.label, "setting": setting, "scene": self.scene.prompt,
                "chunk": str(s.chunk), "memory": f"{len(s.memory)} patches, {len(s.memory.views)} keyframes",
                "mem tokens": str(s.stats["memory_tokens"]), "gen ms/chunk": f"{ms:.0f}"}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
