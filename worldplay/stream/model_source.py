"""The model as a `FrameSource`: a checkpoint + a MosaicWorld scene for the first frame.

    source = ModelSource("tiny-random", seed=7, prompt="desert dusk pillars", device="cpu")
    frames = source.frames(c2w, times)          # chunk = F frames per call

The first `frames` call after `reset` renders the scene at the first pose with the world
renderer and starts the streamer from it (TI2V); every later frame is generated.

Overlap of generation with display/encoding (optional, off by default so tests are exactly
sequential): with lookahead=True a caller that knows the next chunk's poses calls
`prefetch(c2w, times)` before it shows the current chunk; a single background worker generates
it meanwhile, and the next `frames` call collects it (one chunk of look-ahead). `frames` after a
prefetch returns the prefetched chunk (its frames carry the poses they were made at); `ready()`
says whether it is done, so a client can keep drawing instead of blocking on it.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import Tensor

from worldplay.checkpoints import CheckpointInfo, check_shapes, load_checkpoint, shapes_of
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.model.dit import DiT
from worldplay.model.vae import RGBDVAE
from worldplay.stream.streamer import Streamer
from worldplay.world.frame import Frame

DIT_PREFIX, VAE_PREFIX = "dit.", "vae."   # checkpoint tensor names: "dit.<param>", "vae.<param>"
GEN_FPS_EMA = 0.3   # weight of the newest chunk in the generation rate: steady, yet follows a change
GEN_WARMUP = 2      # chunks shown raw: the first pays the TI2V render and one-off allocations


def build_streamer(model: str = "tiny-random", device: str = "cpu", seed: int = 0, *, steps: int | None = None,
                   memory: str = "full", dtype: torch.dtype = torch.float32,
                   registry=None) -> tuple[Streamer, CheckpointInfo]:
    """A Streamer for a registry name or checkpoint path; random entries are built from their seed.
    Checkpoint tensors are named "dit.<param>" and "vae.<param>"; every shape is checked."""
    cfg, state, info = load_checkpoint(model, registry=registry)
    dit, vae = DiT(cfg, seed=info.seed or 0), RGBDVAE(cfg.vae, seed=info.seed or 0)
    sha = None   # random weights: the streamer fingerprints them when a session is saved
    if state is not None:
        expected = {**{DIT_PREFIX + k: s for k, s in shapes_of(dit).items()},
                    **{VAE_PREFIX + k: s for k, s in shapes_of(vae).items()}}
        check_shapes(state, expected, cfg.name)
        dit.load_state_dict({k[len(DIT_PREFIX):]: v for k, v in state.items() if k.startswith(DIT_PREFIX)})
        vae.load_state_dict({k[len(VAE_PREFIX):]: v for k, v in state.items() if k.startswith(VAE_PREFIX)})
        sha = hashlib.sha256("".join(h for _, h in info.files).encode()).hexdigest()
    dit = dit.to(dtype)   # the VAE stays float32: a few % of the FLOPs, and its inputs are float32
    return Streamer(cfg, dit, vae, device=device, seed=seed, steps=steps, memory_mode=memory,
                    checkpoint_sha=sha), info


class ModelSource:
    chunk: int

    def __init__(self, model: str = "tiny-random", seed: int = 0, prompt: str | None = None, device: str = "cpu",
                 *, steps: int | None = None, memory: str = "full", lookahead: bool = False,
                 streamer: Streamer | None = None, label: str | None = None):
        if streamer is None:
            streamer, info = build_streamer(model, device, seed, steps=steps, memory=memory)
            label = label or info.label
        self.streamer = streamer
        self.label = label or streamer.cfg.label
        self.name = f"model:{model}"
        self.chunk = streamer.cfg.dit.chunk_frames
        self.lookahead = lookahead
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worldplay-gen") if lookahead else None
        self._pending: Future | None = None   # the prefetched chunk being generated
        self.seed, self.prompt = int(seed), prompt
        self._resume_time, self._time_offset = False, 0.0
        self.gen_fps = 0.0          # frames generated per second of generation wall time (EMA)
        self._gen_chunks = 0
        self._build_scene()

    def _build_scene(self) -> None:
        from worldplay.world.render import Renderer  # noqa: PLC0415 (torch ray caster; import on use)
        from worldplay.world.scene import make_scene  # noqa: PLC0415

        v = self.streamer.cfg.vae
        self.scene = make_scene(self.seed, self.prompt)   # unknown words raise WorldplayError here
        self.renderer = Renderer(self.scene, image=ImageConfig(width=v.width, height=v.height))
        self.started = False

    def reset(self, seed: int | None = None, prompt: str | None = None) -> None:
        """Forget the session; a new scene when seed or prompt is given. The next `frames` call
        renders the first frame and starts generating from it."""
        self._collect()
        if seed is not None or prompt is not None:
            self.seed = self.seed if seed is None else int(seed)
            self.prompt = prompt
            self._build_scene()
        self.started = False
        self._resume_time, self._time_offset = False, 0.0

    def spawn_pose(self) -> Tensor:
        """Where a client's camera starts: the last generated pose of a resumed session, else the scene's."""
        poses = self.streamer.poses
        return poses[-1].clone() if self.started and poses.shape[0] else self.scene.spawn_pose()

    # the client's edit mode and its memory access go straight to the streamer (see Streamer)
    @property
    def memory_frozen(self) -> bool:
        return self.streamer.memory_frozen

    @memory_frozen.setter
    def memory_frozen(self, on: bool) -> None:
        self.streamer.memory_frozen = bool(on)

    @property
    def memory_lock(self):
        return self.streamer.memory_lock

    def _generate(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        start = time.perf_counter()
        frames = self._make_chunk(c2w, times)
        fps = len(frames) / max(time.perf_counter() - start, 1e-9)
        self._gen_chunks += 1
        self.gen_fps = fps if self._gen_chunks <= GEN_WARMUP else (1 - GEN_FPS_EMA) * self.gen_fps + GEN_FPS_EMA * fps
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
            first = self.renderer.render(c2w[0], float(times[0]))
            self.streamer.reset(first, self.scene.prompt, seed=self.seed)
            self.started = True
        return self.streamer.step(c2w, times)

    def frames(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        """One chunk: c2w (chunk, 4, 4), times (chunk,) seconds."""
        if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or times.shape != c2w.shape[:1]:
            raise ValueError(f"ModelSource.frames wants c2w (F, 4, 4) and times (F,); "
                             f"got {tuple(c2w.shape)} and {tuple(times.shape)}")
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
        self.started = self.streamer.started
        self._resume_time, self._time_offset = True, 0.0

    def hud(self) -> dict[str, str]:
        s = self.streamer
        ms = sum(s.stats["ms"].values())
        return {"source": self.name, "model": self.label, "scene": self.scene.prompt,
                "chunk": str(s.chunk), "memory": f"{len(s.memory)} patches",
                "mem tokens": str(s.stats["memory_tokens"]), "gen ms/chunk": f"{ms:.0f}"}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
