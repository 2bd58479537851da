"""The Mosaic Forcing streamer: camera poses in, 640x360 frames (with depth) out, chunk by chunk.

One `step(c2w, times)` generates one chunk of F frames (Self-Forcing style, few steps):

  1. poses     -> per-frame PRoPE cameras and RoPE positions (frame index, token cell)
  2. memory    -> retrieve the patches these poses can see (token budget, entries still in the
                  KV window excluded: attention already has them) and reproject the keyframes
                  into each view, VAE-encoded (the Warped Latent canvas)
  3. denoise   -> S steps of the few-step student, "x0-renoise" mode (sampler.py): predict x0,
                  re-noise to the next t with fresh noise from the session's seeded generator.
                  Attention over [sink | rolling window | memory | chunk]; the memory tokens'
                  K/V are computed once per chunk
  4. clean pass-> one pass at t = 0 writes the chunk's K/V into the cache
  5. decode    -> VAE: RGB + depth per frame
  6. insert    -> the chunk's latent token patches are lifted into memory with that depth, and
                  a frame far enough from every keyframe becomes one
                  (skipped while `memory_frozen`: the client's edit mode keeps edits as made)
  7. frames    -> handed over as `Frame`s

Observed context: `observe(frames)` takes ground-truth frames as if they had been generated:
each is encoded with the VAE, and once a whole chunk is known it goes through steps 1-4 and 6
with its clean latents in place of denoising (the clean pass writes its K/V into the cache; the
memory gets its latents with the frames' real depth and moving-object masks). Observed frames
that do not fill a chunk wait for the next `step`: that chunk starts with them, their clean
latents entering with t = 0 at every denoising step, and only the rest is generated; they come
back as given, at their own poses and times. TI2V is the one-frame case: `reset(first_frame,
prompt)` observes the first frame, so the first chunk's frame 0 *is* that frame.

Runtime memory modes (any checkpoint): "full", "rope" (memory tokens only), "latent" (canvas
only), "off" (no retrieval or insertion). A path the DiT was built without stays off.
The session's state is one `SessionState` (stream/session.py, which also saves and resumes it);
its fields are readable here as attributes (`s.chunk`, `s.poses`, ...).
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
from worldplay.frame import Frame
from worldplay.memory.config import MemoryConfig
from worldplay.memory.memory import MosaicMemory
from worldplay.model.dit import KV, DiT, MemoryTokens
from worldplay.model.embed import prompt_ids, token_features
from worldplay.model.kv_cache import KVCache
from worldplay.model.presets import ModelConfig
from worldplay.model.prope import recentred, translation
from worldplay.model.vae import RGBDVAE, frames_to_tensor, tensor_to_uint8
from worldplay.procstats import trim_heap
from worldplay.stream.recall import recall
from worldplay.stream.sampler import FlowSchedule
from worldplay.stream.sampler import step as sampler_step
from worldplay.stream.session import (LOAD_ERRORS, Identity, SavedSession, SessionState, Snapshot, read_session,
                                      weights_sha256, write_session)

MEMORY_MODES = ("full", "rope", "latent", "off")
SAMPLER_MODE = "x0-renoise"   # the few-step student re-noises between steps (DESIGN §3)
WINDOW_EPS = 1e-6             # seconds: keeps the oldest KV-window frame itself out of retrieval
# PRoPE origin: metres the camera may wander before the origin moves to it. bf16 keeps ~3
# significant digits, so K/V of cameras far from the origin would lose the camera-relative part
# of their logits; re-centring is exact (attention sees only relative poses) and the cached
# K/V are moved with it (KVCache.rebase), so any walk stays as exact as its start.
RECENTRE_M = 16.0
HEAP_TRIM_CHUNKS = 16         # chunks between returns of freed heap pages to the OS (procstats.trim_heap)


def memory_config_for(cfg: ModelConfig, **overrides) -> MemoryConfig:
    """The MosaicMemory geometry that matches a model: one entry = one DiT token's latent patch."""
    v, d = cfg.vae, cfg.dit
    base = dict(feature_dim=v.latent_ch * d.patch * d.patch, image_width=v.width, image_height=v.height,
                patch_px=v.downsample * d.patch, padded_height=v.pad_height)
    return MemoryConfig(**{**base, **overrides})


def _state_field(name: str) -> property:
    """A read-only attribute of the streamer that is a field of its session state."""
    return property(lambda self: getattr(self.state, name), doc=f"SessionState.{name}")


def _valid_prefix(mem_kv: KV | None, mem: MemoryTokens | None) -> KV | None:
    """The memory K/V of the real tokens only: padding rows come last (retrieve's pad_batch), so
    the chunk's attention takes a prefix and needs no mask (SDPA's fused path wants none)."""
    if mem_kv is None:
        return None
    n = int(mem.valid[0].sum())
    return [(k[:, :, :n], v[:, :, :n]) for k, v in mem_kv] if n else None


class Streamer:
    # the session state's fields, readable on the streamer (sources, the client and tests read them)
    seed = _state_field("seed")
    prompt = _state_field("prompt")
    chunk = _state_field("chunk")
    frame = _state_field("frame")
    poses = _state_field("poses")
    times = _state_field("times")
    pending = _state_field("pending")
    z_pending = _state_field("z_pending")
    started = _state_field("started")
    stats = _state_field("stats")

    def __init__(self, model_cfg: ModelConfig, dit: DiT, vae: RGBDVAE, memory: MosaicMemory | None = None,
                 device: str | torch.device = "cpu", seed: int = 0, *, steps: int | None = None,
                 memory_mode: str = "full", checkpoint_sha: str | None = None,
                 fov_x_deg: float = ImageConfig.fov_x_deg):
        if memory_mode not in MEMORY_MODES:
            raise WorldplayError(f"memory mode {memory_mode!r}; use one of: {', '.join(MEMORY_MODES)}")
        self.cfg, self.device = model_cfg, torch.device(device)
        # channels-last: oneDNN and cuDNN run the VAE's convolutions ~1.5x faster in it (README levers)
        self.dit = dit.to(self.device).eval()
        self.vae = vae.to(self.device, memory_format=torch.channels_last).eval()
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
        self.state = self._fresh(int(seed), None)

    # ---- session state ------------------------------------------------------------------------

    @torch.no_grad()
    def _fresh(self, seed: int, prompt: str | None, ids: Tensor | None = None) -> SessionState:
        """Forget the session: empty cache and memory, generator at `seed`, a new state at chunk 0
        (prompt token ids `ids` (1, L) when known, else from the prompt's words)."""
        self.cache.reset()
        self.memory.reset()
        self.generator.manual_seed(seed)
        ids = (prompt_ids(prompt, self.cfg.dit)[None] if ids is None else ids).to(self.device)   # (1, L)
        return SessionState(seed=seed, prompt=prompt or "", prompt_ids=ids, cond=self.dit.condition(ids))

    def reset(self, first_frame: Frame | None = None, prompt: str | None = None, seed: int | None = None) -> None:
        """Start a session with scene words `prompt`, from `first_frame` (TI2V) when given; more
        ground truth can follow through `observe` before the first `step`."""
        if first_frame is not None:
            self._check_frame(first_frame, "first frame")   # before anything is forgotten
        self.state = self._fresh(self.seed if seed is None else int(seed), prompt)
        self.state.started = True
        if first_frame is not None:
            self.observe([first_frame])

    def _check_frame(self, f: Frame, what: str) -> None:
        v = self.cfg.vae
        if tuple(f.rgb.shape) != (v.height, v.width, 3) or f.rgb.dtype != torch.uint8:
            raise WorldplayError(f"{what} must be uint8 ({v.height}, {v.width}, 3), got "
                                 f"{f.rgb.dtype} {tuple(f.rgb.shape)}")

    @torch.no_grad()
    def observe(self, frames: list[Frame]) -> None:
        """Take ground-truth frames (at their own poses and times) as the next frames of the
        session, instead of generating them. Whole chunks go into the KV cache and the memory
        now; a remainder waits for the next `step`, whose chunk it starts."""
        if not self.state.started:
            raise WorldplayError("streamer: call reset(first_frame, prompt) before observe()")
        for f in frames:
            self._check_frame(f, "an observed frame")
        self._hold(frames)
        Fc = self.cfg.dit.chunk_frames
        while len(self.state.pending) >= Fc:
            known = self.state.pending[:Fc]
            self._chunk(torch.stack([f.c2w for f in known]), torch.tensor([float(f.t) for f in known]))

    @torch.no_grad()
    def _hold(self, frames: list[Frame]) -> None:
        """Encode frames to clean latents and queue them (one frame at a time: a frame's latent
        must not depend on which frames it was observed with)."""
        if not frames:
            return
        z = []
        for f in frames:
            rgb = frames_to_tensor(f.rgb).to(self.device, self.vae_dtype)     # (1, 3, H, W)
            depth = f.depth[None].to(self.device, self.vae_dtype)             # (1, H, W)
            z.append(self.vae.encode(rgb, depth).to(self.dtype))              # (1, C, h, w)
        z = torch.cat(z)                                                      # (n, C, h, w)
        st = self.state
        st.z_pending = z if st.z_pending is None else torch.cat([st.z_pending, z])
        st.pending = st.pending + list(frames)

    @property
    def checkpoint_sha(self) -> str:
        if self._checkpoint_sha is None:
            self._checkpoint_sha = weights_sha256(self.dit, self.vae)
        return self._checkpoint_sha

    def identity(self) -> Identity:
        return Identity(self.checkpoint_sha, self.cfg, self.schedule.steps, self.memory_mode)

    def save(self, path) -> None:
        write_session(path, self.state, self.cache, self.memory, self.generator, self.identity())

    def load(self, path) -> None:
        """Resume the session saved in `path`. The file's header (checkpoint, config, settings) is
        checked before anything changes; a file damaged past it is rolled back, so the session
        goes on as if never asked."""
        saved = read_session(path, self.identity())
        before = Snapshot.take(self.state, self.cache, self.memory, self.generator)
        try:
            self._resume(saved, str(path))
        except LOAD_ERRORS as e:
            self.state = before.restore(self.cache, self.memory, self.generator)
            raise WorldplayError(f"{path}: {e}; the running session is unchanged") from None

    def _resume(self, saved: SavedSession, path: str) -> None:
        self.state = self._fresh(saved.seed, saved.prompt, saved.prompt_ids)
        self.cache.load_state_dict({k: v.to(self.device) for k, v in saved.cache.items()})
        self.memory.load_session_tensors(saved.tensors, path)
        self.generator.set_state(saved.rng)
        st = self.state
        st.chunk, st.frame, st.poses, st.times = saved.chunk, saved.frame, saved.poses, saved.times
        st.origin = saved.origin.clone()
        st.stats["chunks"], st.started = saved.chunk, True
        self._hold(saved.pending)   # re-encoded from the same pixels: the latents the saved session held

    # ---- one chunk ------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        """Generate the next chunk at poses c2w (F, 4, 4) and times (F,) seconds. Observed frames
        still waiting (`observe`) take the chunk's first places, at their own poses and times."""
        if not self.state.started:
            raise WorldplayError("streamer: call reset(first_frame, prompt) before step()")
        Fc = self.cfg.dit.chunk_frames
        if tuple(c2w.shape) != (Fc, 4, 4) or tuple(times.shape) != (Fc,):
            raise WorldplayError(f"streamer.step wants c2w ({Fc}, 4, 4) and times ({Fc},); got "
                                 f"{tuple(c2w.shape)} and {tuple(times.shape)}")
        return self._chunk(c2w, times)

    def _chunk(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        """One chunk whose first P frames are the pending observed ones (P may be the whole chunk)."""
        Fc, st = self.cfg.dit.chunk_frames, self.state
        known = st.pending[:Fc]
        P = len(known)
        zk = st.z_pending[:P] if P else None                                    # (P, C, h, w)
        # 1. poses: observed frames sit at their own pose and time
        c2w = c2w.detach().to("cpu", torch.float32).clone()
        times = times.detach().to("cpu", torch.float64).clone()
        for i, f in enumerate(known):
            c2w[i], times[i] = f.c2w.float(), float(f.t)
        c2w_dev = c2w.to(self.device)   # one copy for the cameras and every memory query
        frame_idx = torch.arange(st.frame, st.frame + Fc, device=self.device)
        self._recentre(c2w[-1, :3, 3])
        cams = self.dit.cameras(recentred(c2w_dev, st.origin).to(self.cam_dtype)[None], self.K)   # (1, F)
        # 2. memory
        with self._timed("retrieve"), self.memory_lock:
            mem, canvas = self._recall(c2w_dev, frame_idx)
        # 3. denoise (nothing to denoise in a chunk that was all observed)
        with self._timed("denoise"):
            mem_kv = self.dit.memory_kv(mem, st.cond, self.cache)                # once per chunk
            mem_kv = _valid_prefix(mem_kv, mem)
            x = zk[None] if P == Fc else self._denoise(cams, frame_idx, mem_kv, canvas, zk)   # (1, F, C, h, w)
        # 4. clean pass: this chunk's K/V go into the cache
        with self._timed("clean_pass"):
            t0 = torch.zeros(1, Fc, dtype=self.dtype, device=self.device)
            self.dit.forward_chunk(x, t0, cams, st.cond, frame_idx=frame_idx, canvas=canvas, cache=self.cache,
                                   mem_kv=mem_kv, write=True, output=False)
        # 5. decode the generated frames; observed ones keep their own pixels, depth and masks
        v = self.cfg.vae
        rgb_u8 = torch.zeros(Fc, v.height, v.width, 3, dtype=torch.uint8)                  # (F, H, W, 3)
        depth = torch.zeros(Fc, v.height, v.width)                                       # (F, H, W)
        # generated frames have no moving objects; one buffer serves the chunk, like rgb and depth
        dynamic = torch.zeros(Fc, v.height, v.width, dtype=torch.bool)                   # (F, H, W)
        with self._timed("decode"):
            if P < Fc:
                z = x[0, P:].to(self.vae_dtype).contiguous(memory_format=torch.channels_last)   # (F-P, C, h, w)
                rgb, d = self.vae.decode(z)                                        # (F-P, 3, H, W), (F-P, H, W)
                rgb_u8[P:], depth[P:] = tensor_to_uint8(rgb).cpu(), d.float().cpu()
        for i, f in enumerate(known):
            rgb_u8[i], depth[i], dynamic[i] = f.rgb, f.depth.float(), f.dynamic
        # 6. insert
        with self._timed("insert"), self.memory_lock:
            if (self.use_tokens or self.use_canvas) and not self.memory_frozen:
                p = self.cfg.dit.patch
                for f in range(Fc):
                    dyn = dynamic[f] if f < P else None
                    self.memory.insert(token_features(x[0, f].float(), p), depth[f], c2w_dev[f], self.K,
                                       float(times[f]), dyn, rgb_u8[f] if self.use_canvas else None)
        # 7. hand over
        st.pending = st.pending[P:]
        st.z_pending = st.z_pending[P:] if st.pending else None
        st.poses = torch.cat([st.poses, c2w])
        st.times = torch.cat([st.times, times])
        st.chunk += 1
        st.frame += Fc
        st.stats["chunks"] = st.chunk
        if st.chunk % HEAP_TRIM_CHUNKS == 0:   # RSS stays flat over long sessions (README soak)
            trim_heap()
        return [Frame(rgb=rgb_u8[f], depth=depth[f], dynamic=dynamic[f], c2w=c2w[f].clone(), t=float(times[f]))
                for f in range(Fc)]

    def _denoise(self, cams, frame_idx: Tensor, mem_kv: KV | None, canvas: Tensor | None,
                 zk: Tensor | None) -> Tensor:
        """x0 of the chunk (1, F, C, h, w); the P observed latents zk (P, C, h, w) lead it, clean."""
        C, (h, w), Fc = self.cfg.vae.latent_ch, self.cfg.latent_hw, self.cfg.dit.chunk_frames
        P = 0 if zk is None else zk.shape[0]
        x = torch.randn((1, Fc, C, h, w), generator=self.generator, device=self.device, dtype=self.dtype)
        for t, t_next in self.schedule.pairs():
            tt = torch.full((1, Fc), t, dtype=self.dtype, device=self.device)
            if P:   # observed frames are clean at every step
                x[:, :P], tt[:, :P] = zk, 0.0
            v = self.dit.forward_chunk(x, tt, cams, self.state.cond, frame_idx=frame_idx, canvas=canvas,
                                       cache=self.cache, mem_kv=mem_kv)
            x = sampler_step(x, v, t, t_next, SAMPLER_MODE, self.generator)
        if P:
            x[:, :P] = zk
        return x

    def _recall(self, c2w: Tensor, frame_idx: Tensor) -> tuple[MemoryTokens | None, Tensor | None]:
        """Memory tokens (Warped RoPE positions, source cameras) and the warped canvas (1, F, C+1, h, w).
        The tokens are padded to the full budget (padding masked out): every chunk then has the
        same shapes, and oneDNN, which keeps compiled bf16 kernels per matrix shape, stops
        growing the process by ~0.7 MB for every new token count it meets (README soak)."""
        mem, canvas = recall(self.dit, self.memory, c2w, self.K, frame_idx, budget=self.cfg.dit.memory_tokens,
                             min_age=self._min_age(), use_tokens=self.use_tokens,
                             vae=self.vae if self.use_canvas else None, dtype=self.dtype,
                             cam_dtype=self.cam_dtype, origin=self.state.origin, pad=True)
        self.state.stats["memory_tokens"] = int(mem.valid.sum()) if mem is not None else 0
        return mem, canvas

    def _recentre(self, eye: Tensor) -> None:
        """Move the PRoPE origin to `eye` (3,) once the camera is RECENTRE_M away from it."""
        st, dims = self.state, self.cfg.dit.prope_dims
        d = eye.to(torch.float64).cpu() - st.origin
        if not self.cfg.dit.use_prope or float(d.norm()) <= RECENTRE_M:
            return
        self.cache.rebase(translation(-d), dims)
        st.origin = st.origin + d

    def _min_age(self) -> float:
        """Retrieval skips entries from frames still in the KV window (sink excepted: it is old)."""
        d = self.cfg.dit
        window_frames = d.window_chunks * d.chunk_frames
        frame, times = self.state.frame, self.state.times
        first_in_window = max(frame - window_frames, 0)
        if frame == 0 or first_in_window >= times.shape[0]:
            return 0.0
        return max(self.memory.now - float(times[first_in_window]) + WINDOW_EPS, 0.0)

    @contextmanager
    def _timed(self, stage: str):
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        ms = (time.perf_counter() - start) * 1e3
        self.state.stats["ms"][stage] = ms
        self.state.stats["total_ms"][stage] += ms
