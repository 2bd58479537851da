"""The Mosaic Forcing streamer: camera poses in, 640x360 frames (with depth) out, chunk by chunk.

One `step(c2w, times)` generates one chunk of F frames (Self-Forcing style, few steps):

  1. poses     -> per-frame PRoPE cameras and RoPE positions (frame index, token cell)
  2. memory    -> retrieve the patches these poses can see (token budget, entries still in the
                  KV window excluded: attention already has them) and splat them into each
                  view (the Warped Latent canvas)
  3. denoise   -> S steps of the few-step student, "x0-renoise" mode (sampler.py): predict x0,
                  re-noise to the next t with fresh noise from the session's seeded generator.
                  Attention over [sink | rolling window | memory | chunk]; the memory tokens'
                  K/V are computed once per chunk
  4. clean pass-> one pass at t = 0 writes the chunk's K/V into the cache
  5. decode    -> VAE: RGB + depth per frame
  6. insert    -> the chunk's latent token patches are lifted into memory with that depth
                  (skipped while `memory_frozen`: the client's edit mode keeps edits as made)
  7. frames    -> handed over as `Frame`s

TI2V: `reset(first_frame, prompt)` encodes the first frame; the first chunk's frame 0 *is* that
frame (its clean latent enters with t = 0 at every step, so it lands in the sink as clean
tokens), at the first frame's own pose and time. The first chunk's frame 0 is returned as given.

Runtime memory modes (any checkpoint): "full", "rope" (memory tokens only), "latent" (canvas
only), "off" (no retrieval or insertion). A path the DiT was built without stays off.
Save/load of a whole session lives in stream/session.py (`save` / `load` here delegate).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import torch
from torch import Tensor

from worldplay.camera import intrinsics
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.memory.config import MemoryConfig
from worldplay.memory.memory import MosaicMemory
from worldplay.model.dit import KV, DiT, MemoryTokens
from worldplay.model.embed import prompt_ids, token_features
from worldplay.model.presets import ModelConfig
from worldplay.model.vae import RGBDVAE, frames_to_tensor, tensor_to_uint8
from worldplay.stream.kv_cache import KVCache
from worldplay.stream.recall import recall
from worldplay.stream.sampler import FlowSchedule
from worldplay.stream.sampler import step as sampler_step
from worldplay.stream.session import load_streamer, save_streamer, weights_sha256
from worldplay.world.frame import Frame

MEMORY_MODES = ("full", "rope", "latent", "off")
SAMPLER_MODE = "x0-renoise"   # the few-step student re-noises between steps (DESIGN §3)
STAGES = ("retrieve", "denoise", "clean_pass", "decode", "insert")
WINDOW_EPS = 1e-6             # seconds: keeps the oldest KV-window frame itself out of retrieval


def memory_config_for(cfg: ModelConfig, **overrides) -> MemoryConfig:
    """The MosaicMemory geometry that matches a model: one entry = one DiT token's latent patch."""
    v, d = cfg.vae, cfg.dit
    base = dict(feature_dim=v.latent_ch * d.patch * d.patch, image_width=v.width, image_height=v.height,
                patch_px=v.downsample * d.patch, padded_height=v.pad_height)
    return MemoryConfig(**{**base, **overrides})


class Streamer:
    def __init__(self, model_cfg: ModelConfig, dit: DiT, vae: RGBDVAE, memory: MosaicMemory | None = None,
                 device: str | torch.device = "cpu", seed: int = 0, *, steps: int | None = None,
                 memory_mode: str = "full", checkpoint_sha: str | None = None,
                 fov_x_deg: float = ImageConfig.fov_x_deg):
        if memory_mode not in MEMORY_MODES:
            raise WorldplayError(f"memory mode {memory_mode!r}; use one of: {', '.join(MEMORY_MODES)}")
        self.cfg, self.device, self.seed = model_cfg, torch.device(device), int(seed)
        self.dit, self.vae = dit.to(self.device).eval(), vae.to(self.device).eval()
        self.dtype = next(dit.parameters()).dtype
        self.vae_dtype = next(vae.parameters()).dtype
        # cameras are inverted and multiplied in at least float32, whatever the DiT runs in
        self.cam_dtype = torch.float64 if self.dtype == torch.float64 else torch.float32
        self.memory = memory if memory is not None else MosaicMemory(memory_config_for(model_cfg), self.device)
        d = model_cfg.dit
        self.memory_mode = memory_mode
        self.use_tokens = d.use_memory_rope and memory_mode in ("full", "rope")
        self.use_canvas = d.use_warped_latent and memory_mode in ("full", "latent")
        self.schedule = FlowSchedule(steps or d.steps, d.shift)
        # full-res pixels, on the device once: the DiT's cameras and the memory read it every chunk
        self.K = intrinsics(model_cfg.vae.width, model_cfg.vae.height, fov_x_deg, device=self.device)
        self.cache = KVCache.for_model(model_cfg, 1, self.dtype, self.device)
        self.generator = torch.Generator(self.device)
        self._checkpoint_sha = checkpoint_sha
        # The client edits, draws and saves the memory from its own thread while a chunk may be
        # generating in a worker: both hold this lock around every memory access.
        self.memory_lock = threading.RLock()
        self.memory_frozen = False         # the client's edit mode: no inserts, edits stay as made
        self.stats: dict = {}
        self.first: Frame | None = None
        self._reset_state(None)

    # ---- session state ------------------------------------------------------------------------

    def _reset_state(self, prompt: str | None) -> None:
        self.cache.reset()
        self.memory.reset()
        self.generator.manual_seed(self.seed)
        self.chunk = 0                     # chunks generated since reset
        self.frame = 0                     # frames generated since reset (the RoPE time index)
        self.poses = torch.zeros(0, 4, 4)  # (N, 4, 4) every generated frame's c2w
        self.times = torch.zeros(0, dtype=torch.float64)
        self.prompt = prompt or ""
        self.prompt_ids = prompt_ids(prompt, self.cfg.dit)[None].to(self.device)   # (1, L)
        with torch.no_grad():
            self.cond = self.dit.condition(self.prompt_ids)                            # (1, W)
        self.z0: Tensor | None = None     # the first frame's clean latent (read by chunk 0 only)
        self.started = False
        self.stats = {"chunks": 0, "memory_tokens": 0, "ms": {s: 0.0 for s in STAGES},
                      "total_ms": {s: 0.0 for s in STAGES}}

    def reset(self, first_frame: Frame, prompt: str | None = None, seed: int | None = None) -> None:
        """Start a session from `first_frame` (TI2V) and scene words `prompt`."""
        if seed is not None:
            self.seed = int(seed)
        v = self.cfg.vae
        if tuple(first_frame.rgb.shape) != (v.height, v.width, 3) or first_frame.rgb.dtype != torch.uint8:
            raise WorldplayError(f"first frame must be uint8 ({v.height}, {v.width}, 3), got "
                                 f"{first_frame.rgb.dtype} {tuple(first_frame.rgb.shape)}")
        self._reset_state(prompt)
        self.first, self.started = first_frame, True
        with torch.no_grad():
            rgb = frames_to_tensor(first_frame.rgb).to(self.device, self.vae_dtype)     # (1, 3, H, W)
            depth = first_frame.depth[None].to(self.device, self.vae_dtype)              # (1, H, W)
            self.z0 = self.vae.encode(rgb, depth).to(self.dtype)                         # (1, C, h, w)

    @property
    def checkpoint_sha(self) -> str:
        if self._checkpoint_sha is None:
            self._checkpoint_sha = weights_sha256(self.dit, self.vae)
        return self._checkpoint_sha

    def save(self, path) -> None:
        save_streamer(self, path)

    def load(self, path) -> None:
        load_streamer(self, path)

    # ---- one chunk ------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        """Generate the next chunk at poses c2w (F, 4, 4) and times (F,) seconds."""
        if not self.started:
            raise WorldplayError("streamer: call reset(first_frame, prompt) before step()")
        Fc = self.cfg.dit.chunk_frames
        if tuple(c2w.shape) != (Fc, 4, 4) or tuple(times.shape) != (Fc,):
            raise WorldplayError(f"streamer.step wants c2w ({Fc}, 4, 4) and times ({Fc},); got "
                                 f"{tuple(c2w.shape)} and {tuple(times.shape)}")
        # 1. poses: the first chunk's frame 0 is the conditioning frame, at its own pose and time
        c2w = c2w.detach().to("cpu", torch.float32).clone()
        times = times.detach().to("cpu", torch.float64).clone()
        first = self.chunk == 0
        if first:
            c2w[0], times[0] = self.first.c2w.float(), float(self.first.t)
        c2w_dev = c2w.to(self.device)   # one copy for the cameras and every memory query
        frame_idx = torch.arange(self.frame, self.frame + Fc, device=self.device)
        cams = self.dit.cameras(c2w_dev[None].to(self.cam_dtype), self.K)                    # (1, F)
        # 2. memory
        with self._timed("retrieve"), self.memory_lock:
            mem, canvas = self._recall(c2w_dev, frame_idx)
        # 3. denoise
        with self._timed("denoise"):
            mem_kv = self.dit.memory_kv(mem, self.cond, self.cache)                # once per chunk
            x = self._denoise(cams, frame_idx, mem_kv, canvas, first)              # (1, F, C, h, w)
        # 4. clean pass: this chunk's K/V go into the cache
        with self._timed("clean_pass"):
            t0 = torch.zeros(1, Fc, dtype=self.dtype, device=self.device)
            self.dit.forward_chunk(x, t0, cams, self.cond, frame_idx=frame_idx, canvas=canvas, cache=self.cache,
                                   mem_kv=mem_kv, write=True)
        # 5. decode
        with self._timed("decode"):
            rgb, depth = self.vae.decode(x[0].to(self.vae_dtype))                 # (F, 3, H, W), (F, H, W)
            rgb_u8, depth = tensor_to_uint8(rgb).cpu(), depth.float().cpu()
        if first:
            rgb_u8[0], depth[0] = self.first.rgb, self.first.depth.float()
        # 6. insert
        with self._timed("insert"), self.memory_lock:
            if (self.use_tokens or self.use_canvas) and not self.memory_frozen:
                p = self.cfg.dit.patch
                for f in range(Fc):
                    dyn = self.first.dynamic if first and f == 0 else None
                    self.memory.insert(token_features(x[0, f].float(), p), depth[f], c2w_dev[f], self.K,
                                       float(times[f]), dyn)
        # 7. hand over
        self.poses = torch.cat([self.poses, c2w])
        self.times = torch.cat([self.times, times])
        self.chunk += 1
        self.frame += Fc
        self.stats["chunks"] = self.chunk
        # generated frames have no moving objects; one buffer serves the chunk, like rgb and depth
        dynamic = torch.zeros(Fc, self.cfg.vae.height, self.cfg.vae.width, dtype=torch.bool)   # (F, H, W)
        frames = [Frame(rgb=rgb_u8[f], depth=depth[f], dynamic=dynamic[f], c2w=c2w[f].clone(), t=float(times[f]))
                  for f in range(Fc)]
        if first:
            frames[0].dynamic = self.first.dynamic.clone()
        return frames

    def _denoise(self, cams, frame_idx: Tensor, mem_kv: KV | None, canvas: Tensor | None,
                 first: bool) -> Tensor:
        C, (h, w), Fc = self.cfg.vae.latent_ch, self.cfg.latent_hw, self.cfg.dit.chunk_frames
        x = torch.randn((1, Fc, C, h, w), generator=self.generator, device=self.device, dtype=self.dtype)
        for t, t_next in self.schedule.pairs():
            tt = torch.full((1, Fc), t, dtype=self.dtype, device=self.device)
            if first:   # the conditioning frame is clean at every step
                x[:, 0], tt[:, 0] = self.z0, 0.0
            v = self.dit.forward_chunk(x, tt, cams, self.cond, frame_idx=frame_idx, canvas=canvas,
                                       cache=self.cache, mem_kv=mem_kv)
            x = sampler_step(x, v, t, t_next, SAMPLER_MODE, self.generator)
        if first:
            x[:, 0] = self.z0
        return x

    def _recall(self, c2w: Tensor, frame_idx: Tensor) -> tuple[MemoryTokens | None, Tensor | None]:
        """Memory tokens (Warped RoPE positions, source cameras) and the warped canvas (1, F, C+1, h, w)."""
        mem, canvas = recall(self.dit, self.memory, c2w, self.K, frame_idx, budget=self.cfg.dit.memory_tokens,
                             min_age=self._min_age(), use_tokens=self.use_tokens, use_canvas=self.use_canvas,
                             dtype=self.dtype, cam_dtype=self.cam_dtype)
        self.stats["memory_tokens"] = len(mem) if mem is not None else 0
        return mem, canvas

    def _min_age(self) -> float:
        """Retrieval skips entries from frames still in the KV window (sink excepted: it is old)."""
        d = self.cfg.dit
        window_frames = d.window_chunks * d.chunk_frames
        first_in_window = max(self.frame - window_frames, 0)
        if self.frame == 0 or first_in_window >= self.times.shape[0]:
            return 0.0
        return max(self.memory.now - float(self.times[first_in_window]) + WINDOW_EPS, 0.0)

    @contextmanager
    def _timed(self, stage: str):
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        ms = (time.perf_counter() - start) * 1e3
        self.stats["ms"][stage] = ms
        self.stats["total_ms"][stage] += ms
