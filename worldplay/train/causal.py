"""Stage 2, `worldplay train causal`: the chunked causal DiT, teacher-forced, with mosaic memory.

One example is a clip of `context_chunks` + 1 chunks of a cached revisit trajectory (latents.py),
run through `DiT.forward_full` with the streamer's block-causal mask. A model with a sink
(`sink_frames`) gets the trajectory's first chunk in front, as the streamer keeps it: at its
true RoPE distance half the time, otherwise anywhere further back up to `sink_far` frames, so a
sink a minute behind the walk is in distribution although the trajectories last 8 s.

  1. memory  -> the trajectory's frames before the clip, lifted into a MosaicMemory with their
                exact depth the way the streamer inserts its own frames (no motion mask:
                inference has none), then retrieved and splatted at each chunk's poses with
                `stream.recall` (the streamer's own code). Memory grows as an episode walks
                forward through its trajectory, so it is built incrementally, like inference.
  2. paths   -> each example draws a memory mode (full / rope / latent / off), so every row of
                the ablation table is a trained path and the model cannot lean on one
  3. noise   -> flow matching, x_t = (1 - t)·x0 + t·ε, independent t per chunk (diffusion
                forcing): the target chunk at t drawn from the sampler's shifted distribution;
                context chunks nearly clean (t <= context_noise, so the model's own slightly-off
                context at inference is in distribution) or, at random, noised and trained too
  4. loss    -> MSE between the predicted and the true velocity v = ε - x0 on every trained
                frame (the TI2V first frame of a trajectory is given clean and not trained);
                cells that show a moving object may weigh more (`moving_weight`, off by default)

Examples are a pure function of their index (episode = index % episodes, position in the
episode = index // episodes), so a resumed run replays exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from worldplay.memory.memory import MosaicMemory
from worldplay.model.dit import DiT, MemoryTokens
from worldplay.model.presets import ModelConfig
from worldplay.model.prope import ProjCams
from worldplay.model.vae import RGBDVAE, tensor_to_uint8
from worldplay.png import downscale, tile, write_png
from worldplay.stream.recall import recall
from worldplay.stream.sampler import FlowSchedule, add_noise, shift_t, x0_from_v
from worldplay.stream.streamer import memory_config_for
from worldplay.train.frames import VALIDATION_SEED_START
from worldplay.train.latents import Clip, LatentSet, full_res_K, insert_frame
from worldplay.train.vae import psnr_rgb

MODES = ("full", "rope", "latent", "off")


@dataclass(frozen=True)
class CausalConfig:
    context_chunks: int = 1          # clean chunks before the target: the KV window in miniature
    batch: int = 1                   # clips per step: 1 on a CPU; GPUs take many (--batch)
    episodes: int = 4                # trajectories walked in parallel (their memories kept)
    targets_per_episode: int = 8     # target chunks per walk, spread over the whole trajectory
    mode_probs: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2)   # full, rope, latent, off
    context_noise: float = 0.1       # context chunks' t is drawn in [0, this]...
    context_train_prob: float = 0.5  # ...or, this often, like a target's (and trained): diffusion forcing
    memory_capacity: int = 60_000    # entries per episode memory (a 128-frame walk stores fewer)
    sink_real_prob: float = 0.5      # with a sink (the DiT's sink_frames): this often at its true distance
    sink_far: int = 1024             # ...else anywhere up to this many frames back (past a minute's walk),
                                     # so the sink reads the same however long the streamer has run
    moving_weight: float = 0.0       # extra loss weight of latent cells whose token shows a moving object
                                     # (1.5 % of tokens). 16 for 95 min from the shipped weights moved
                                     # Dynamic only 0.14 -> 0.17 and cost revisit RotErr (0.95 -> 1.43
                                     # deg): memory cannot say where a mover went, so off by default
    data: LatentSet = field(default_factory=LatentSet)
    val: LatentSet = field(default_factory=lambda: LatentSet(scenes=4, per_scene=1, first_seed=VALIDATION_SEED_START,
                                                             paths=("orbit", "look-away")))


def keyed_rng(*key: int) -> torch.Generator:
    """A generator that is a pure function of `key` (example structure, not training noise)."""
    h = 1469598103934665603
    for k in key:
        h = ((h ^ (k & 0xFFFFFFFF)) * 1099511628211) % (1 << 61)
    return torch.Generator().manual_seed(h)


@dataclass
class Example:
    clip: Clip
    chunk: int                       # index of the target chunk in the clip
    mode: str
    sink_at: int | None = None       # RoPE frame of the prepended sink relative to the clip's start
                                     # (None: no sink, or the clip starts at the trajectory's frame 0)


class Episode:
    """One trajectory walked forward; its memory holds every frame before the current clip."""

    def __init__(self, cfg: ModelConfig, capacity: int, K: Tensor, device: torch.device = torch.device("cpu")):
        self.memory = MosaicMemory(memory_config_for(cfg, capacity=capacity), device)
        self.cfg, self.K = cfg, K
        self.key: int | None = None
        self.upto = 0

    def advance(self, key: int, clip: Clip, upto: int) -> None:
        """Hold frames [0, upto) of `clip` (episode `key`), inserting only what is new."""
        if key != self.key or upto < self.upto:
            self.memory.reset()
            self.key, self.upto = key, 0
        for f in range(self.upto, upto):
            insert_frame(self.memory, clip, f, self.K, self.cfg.dit.patch)
        self.upto = upto


class CausalStage:
    name = "causal"
    loss_names = ["target_mse"]

    def __init__(self, dit: DiT, vae: RGBDVAE, cfg: ModelConfig, clips: list[Clip], val_clips: list[Clip],
                 stage_cfg: CausalConfig = CausalConfig(), device: str = "cpu", bf16: bool = False):
        self.module, self.vae, self.cfg, self.c = dit.to(device), vae.to(device).eval(), cfg, stage_cfg
        self.device = torch.device(device)
        self.bf16 = bf16              # matmuls in bf16 autocast (GPUs; CPUs with AVX-512 BF16)
        self.clips, self.val_clips = clips, val_clips
        self.config = {"stage": asdict(stage_cfg), "dit": asdict(cfg.dit)}
        self.generator = torch.Generator()
        self.K = full_res_K(cfg)
        self.episodes = [Episode(cfg, stage_cfg.memory_capacity, self.K, self.device) for _ in range(stage_cfg.episodes)]
        self.k = 0                    # examples drawn (by this rank)
        self.rank, self.world = 0, 1
        self._val: list[tuple[Example, MosaicMemory]] | None = None   # see _val_examples
        self.Fc = cfg.dit.chunk_frames

    # ---- data -------------------------------------------------------------------------------

    def data_pos(self) -> int:
        return self.k

    def seek(self, pos: int) -> None:
        self.k = pos    # episodes rebuild their memory on the next example they serve

    def shard(self, rank: int, world: int) -> None:
        """Rank r of w takes examples r, r + w, ... of the stream (episodes differ per rank)."""
        self.rank, self.world = rank, world

    def example(self, k: int) -> tuple[Example, Episode]:
        c, E, R = self.c, self.c.episodes, self.c.targets_per_episode
        slot, pos = k % E, k // E
        q, r = pos // R * E + slot, pos % R                        # episode number, step within it
        g = keyed_rng(q)
        clip = self.clips[int(torch.randint(len(self.clips), (1,), generator=g))]
        n = len(clip) // self.Fc
        lo = c.context_chunks
        spacing = (n - lo) / R
        chunk = lo + int(r * spacing + float(torch.rand(1, generator=keyed_rng(q, r))) * spacing)
        chunk = min(max(chunk, lo), n - 1)
        u = float(torch.rand(1, generator=keyed_rng(q, r, 1)))
        mode = MODES[int(torch.searchsorted(torch.tensor(c.mode_probs).cumsum(0), torch.tensor(u * sum(c.mode_probs))))]
        ep = self.episodes[slot]
        ep.advance(q, clip, self.clip_start(chunk))
        return Example(clip, chunk, mode, self._sink_at(chunk, keyed_rng(q, r, 2))), ep

    def clip_start(self, chunk: int) -> int:
        """First frame of the clip whose target is `chunk` (its context chunks come before)."""
        return (chunk - self.c.context_chunks) * self.Fc

    def _sink_at(self, chunk: int, g: torch.Generator | None) -> int | None:
        """Where a clip's sink sits in RoPE time (relative to the clip's first frame): at its true
        distance, or (generator given, 1 - sink_real_prob of the time) further back. The
        streamer's sink grows distant over a walk; training sees every distance up to sink_far."""
        a, S = self.clip_start(chunk), self.cfg.dit.sink_frames
        if not S or a < S:        # no sink, or the clip's own first chunks are the trajectory's
            return None
        if g is None or float(torch.rand(1, generator=g)) < self.c.sink_real_prob:
            return -a
        return -a - int(torch.randint(max(self.c.sink_far - a, 0) + 1, (1,), generator=g))

    def frames(self, ex: Example) -> tuple[Tensor, Tensor, int]:
        """The example's frames in the clip (T,), their RoPE frame indices (T,) and how many of
        them are the sink: [sink | context chunks | target chunk]."""
        a = self.clip_start(ex.chunk)
        idx = torch.arange(a, (ex.chunk + 1) * self.Fc)
        rel = idx - a                               # RoPE is relative in t: only differences count
        if ex.sink_at is None:
            return idx, rel, 0
        S = self.cfg.dit.sink_frames
        return torch.cat([torch.arange(S), idx]), torch.cat([ex.sink_at + torch.arange(S), rel]), S

    def inputs(self, ex: Example, memory: MosaicMemory, context: Tensor | None = None):
        """Clean latents, cameras, frame indices, prompt, canvas and per-chunk memory of one example.
        `context` (F * context_chunks, C, h, w) replaces the ground-truth context latents (the
        forcing stage passes the model's own frames)."""
        Fc, d = self.Fc, self.cfg.dit
        idx, rel, S = self.frames(ex)
        x0 = ex.clip.z[idx].float()[None].to(self.device)                         # (1, T, C, h, w)
        if context is not None:
            x0[0, S:-Fc] = context.to(x0)
        c2w = ex.clip.c2w[idx].to(self.device)
        frame_idx = rel.to(self.device)
        K = self.K.to(self.device)
        cams = self.module.cameras(c2w[None], K)                                  # (1, T)
        use_tokens = d.use_memory_rope and ex.mode in ("full", "rope")
        use_canvas = d.use_warped_latent and ex.mode in ("full", "latent") and ex.clip.canvas is not None
        mems: list[MemoryTokens | None] = [None] * (S // Fc)    # the streamer's first chunks: memory empty
        for ch in range(S // Fc, idx.numel() // Fc):
            s = slice(ch * Fc, (ch + 1) * Fc)
            m, _ = recall(self.module, memory, c2w[s], K, frame_idx[s], budget=d.memory_tokens, min_age=0.0,
                          use_tokens=use_tokens, vae=None, dtype=torch.float32, cam_dtype=torch.float32, pad=True)
            mems.append(m)
        # the streamer's canvas, made once per trajectory (canvas.py): its memory before each chunk's window
        canvas = ex.clip.canvas[idx].float()[None].to(self.device) if use_canvas else None   # (1, T, C + 1, h, w)
        prompt = ex.clip.prompt[None].to(self.device)                             # (1, L)
        return x0, cams, frame_idx, prompt, canvas, mems

    def _times(self, T: int, first: bool, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """Per-frame t (1, T) and loss weights (1, T) for one clip (see module docstring, 3.)."""
        Fc, c = self.Fc, self.c
        t, w = torch.zeros(1, T), torch.zeros(1, T)
        for ch in range(T // Fc):
            s = slice(ch * Fc, (ch + 1) * Fc)
            target = ch == T // Fc - 1
            if target or float(torch.rand(1, generator=g)) < c.context_train_prob:
                t[:, s] = shift_t(torch.rand(1, generator=g, dtype=torch.float64), self.cfg.dit.shift).float()
                w[:, s] = 1.0
            else:
                t[:, s] = float(torch.rand(1, generator=g)) * c.context_noise
        if first:   # TI2V: a session's first frame is given clean
            t[0, 0], w[0, 0] = 0.0, 0.0
        return t, w

    def loss(self, step: int) -> dict[str, Tensor]:
        g, parts, times, noise, cells = self.generator, [], [], [], []
        for _ in range(self.c.batch):
            ex, ep = self.example(self.k * self.world + self.rank)
            self.k += 1
            parts.append(self.inputs(ex, ep.memory))
            cells.append(self.cell_weights(ex))
            # the clip starts at the session's frame 0, or its sink does
            first = ex.chunk == self.c.context_chunks or ex.sink_at is not None
            times.append(self._times(parts[-1][0].shape[1], first, g))
            noise.append(torch.randn(parts[-1][0].shape, generator=g))
        parts, times, noise, cells, valid = pad_front(parts, times, noise, cells, self.Fc)
        x0, cams, frame_idx, prompt, canvas, mems = collate(parts, self._empty_memory)
        t = torch.cat([tw[0] for tw in times]).to(self.device)                     # (B, T)
        w = torch.cat([tw[1] for tw in times]).to(self.device)
        eps = torch.cat(noise).to(self.device)                                     # (B, T, C, h, w)
        xt = add_noise(x0, eps, t)                                                  # (B, T, C, h, w)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            v = self.module.forward_full(xt, t, cams, prompt, frame_idx=frame_idx, canvas=canvas, memory=mems,
                                         frame_valid=valid)
        err, sq = frame_errors(v, eps - x0, torch.cat(cells).to(self.device))      # (B, T), (B, T, h, w)
        loss = ((err * w).sum(1) / w.sum(1).clamp_min(1.0)).mean()              # every clip counts the same
        Fc = self.Fc
        return {"loss": loss, "target_mse": sq[:, -Fc:].mean()}

    def moving_cells(self, ex: Example) -> Tensor:
        """(T, h, w) bool: latent cells of the example's frames whose token shows a moving object
        (clip.dynamic is per token)."""
        p = self.cfg.dit.patch
        idx = self.frames(ex)[0]
        moving = ex.clip.dynamic[idx] > 0                                          # (T, hp, wp)
        return moving.repeat_interleave(p, dim=1).repeat_interleave(p, dim=2)     # (T, h, w)

    def cell_weights(self, ex: Example) -> Tensor:
        """(1, T, h, w) loss weight per latent cell: 1, or 1 + moving_weight where things move."""
        return (1.0 + self.c.moving_weight * self.moving_cells(ex).float())[None]

    def _empty_memory(self) -> MemoryTokens:
        """All-padding memory tokens for a batch row whose memory had nothing to give."""
        M, D = self.cfg.dit.memory_tokens, self.cfg.vae.latent_ch * self.cfg.dit.patch ** 2
        eye = torch.eye(4, device=self.device).expand(1, M, 4, 4)
        return MemoryTokens(torch.zeros(1, M, D, device=self.device), torch.zeros(1, M, 3, dtype=torch.float64,
                            device=self.device), self.module.cameras(eye, self.K.to(self.device)),
                            torch.zeros(1, M, dtype=torch.bool, device=self.device))

    # ---- validation -----------------------------------------------------------------------

    def _val_examples(self) -> list[tuple[Example, MosaicMemory]]:
        """Per validation clip: the chunk holding its first revisit, memory of all before it.
        Built once: neither depends on the weights."""
        if self._val is not None:
            return [(replace(ex), mem) for ex, mem in self._val]
        out = []
        for j, clip in enumerate(self.val_clips):
            first = clip.revisits[0][0] if clip.revisits else len(clip) // 2
            chunk = max(first // self.Fc, self.c.context_chunks)
            ep = Episode(self.cfg, self.c.memory_capacity, self.K, self.device)
            ep.advance(-1 - j, clip, self.clip_start(chunk))
            out.append((Example(clip, chunk, "full", self._sink_at(chunk, None)), ep.memory))
        self._val = out
        return self._val_examples()

    @torch.no_grad()
    def generate(self, module: DiT, ex: Example, memory: MosaicMemory, steps: int, seed: int | torch.Generator,
                 context: Tensor | None = None) -> Tensor:
        """The target chunk sampled with the streamer's few-step sampler, clean context given."""
        x0, cams, frame_idx, prompt, canvas, mems = self.inputs(ex, memory, context)
        g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        Fc = self.Fc
        x = x0.clone()
        x[:, -Fc:] = torch.randn(x[:, -Fc:].shape, generator=g).to(self.device)
        t = torch.zeros(1, x.shape[1], device=self.device)
        for tc, tn in FlowSchedule(steps, self.cfg.dit.shift).pairs():
            t[:, -Fc:] = tc
            v = module.forward_full(x, t, cams, prompt, frame_idx=frame_idx, canvas=canvas, memory=mems)
            x0_hat = x0_from_v(x[:, -Fc:], v[:, -Fc:].float(), tc)   # x0-renoise, as the streamer samples
            noise = torch.randn(x0_hat.shape, generator=g).to(self.device)    # CPU generator: same on any device
            x[:, -Fc:] = x0_hat if tn <= 0 else add_noise(x0_hat, noise, tn)
        return x[0, -Fc:]                                                         # (F, C, h, w)

    def validate(self, module: DiT) -> dict[str, float]:
        out: dict[str, float] = {}
        for mode in ("full", "off"):
            ps, moving_err, moving_n = [], 0.0, 0.0
            for j, (ex, mem) in enumerate(self._val_examples()):
                ex.mode = mode
                gen = self.generate(module, ex, mem, self.cfg.dit.steps, seed=j)
                ref = ex.clip.z[ex.chunk * self.Fc:(ex.chunk + 1) * self.Fc].float().to(self.device)
                ps.append(psnr_rgb(self.vae.decode(gen)[0], self.vae.decode(ref)[0]))
                moving = self.moving_cells(ex)[-self.Fc:].to(self.device)                   # (F, h, w)
                moving_err += float(((gen - ref) ** 2).mean(1)[moving].sum())
                moving_n += float(moving.sum())
            out[f"val_psnr_{mode}"] = sum(ps) / len(ps)
            # latent MSE where things move: does the model keep them, or paint the canvas over them?
            out[f"val_moving_mse_{mode}"] = moving_err / max(moving_n, 1.0)
        return out

    def sample(self, module: DiT, path: Path) -> None:
        """Rows per validation clip: decoded ground truth, full memory, memory off (target chunk)."""
        rows = []
        for j, (ex, mem) in enumerate(self._val_examples()[:2]):
            ref = ex.clip.z[ex.chunk * self.Fc:(ex.chunk + 1) * self.Fc].float().to(self.device)
            for latents in [ref] + [self.generate(module, replace(ex, mode=m), mem, self.cfg.dit.steps, j)
                                    for m in ("full", "off")]:
                rows.append([downscale(im, 4) for im in tensor_to_uint8(self.vae.decode(latents)[0].cpu())])
        write_png(path, tile(rows))


def frame_errors(v: Tensor, target: Tensor, cells: Tensor) -> tuple[Tensor, Tensor]:
    """Per-frame velocity MSE (B, T), its latent cells weighted by `cells` (B, T, h, w), and the
    unweighted squared error per cell (B, T, h, w); v and target are (B, T, C, h, w)."""
    sq = ((v.float() - target) ** 2).mean(dim=2)                                  # (B, T, h, w)
    return (sq * cells).sum(dim=(2, 3)) / cells.sum(dim=(2, 3)), sq


def pad_front(parts: list[tuple], times: list[tuple[Tensor, Tensor]], noise: list[Tensor], cells: list[Tensor],
              Fc: int) -> tuple[list, list, list, list, Tensor | None]:
    """Bring a batch's clips to one length: a clip without a sink (it starts at frame 0) gets
    empty chunks in front, untrained (weight 0) and hidden from attention (`valid` False).
    Returns the padded lists and valid (B, T) bool, None when nothing needed padding."""
    T = max(p[0].shape[1] for p in parts)
    if all(p[0].shape[1] == T for p in parts):
        return parts, times, noise, cells, None
    out_p, out_t, out_n, out_c, valid = [], [], [], [], []
    for (x0, cams, fi, prompt, canvas, mems), (t, w), eps, cw in zip(parts, times, noise, cells):
        n = T - x0.shape[1]

        def front(x: Tensor, fill: float = 0.0) -> Tensor:    # (1, T - n, ...) -> (1, T, ...)
            return torch.cat([x.new_full((x.shape[0], n, *x.shape[2:]), fill), x], 1)

        cams = None if cams is None else ProjCams(*(torch.cat([c[:, :1].expand(-1, n, -1, -1), c], 1)
                                                    for c in (cams.P, cams.P_inv)))
        fi = torch.cat([fi[0] - n + torch.arange(n, device=fi.device), fi])
        canvas = None if canvas is None else front(canvas)
        out_p.append((front(x0), cams, fi, prompt, canvas, [None] * (n // Fc) + list(mems)))
        out_t.append((front(t), front(w)))
        out_n.append(front(eps))
        out_c.append(front(cw, 1.0))
        valid.append(torch.arange(T) >= n)
    return out_p, out_t, out_n, out_c, torch.stack(valid)


def collate(parts: list[tuple], empty_memory) -> tuple:
    """Stack examples' inputs into a batch (a batch of one passes through unchanged). Rows
    without a canvas get an empty one (mask 0), rows without memory all-padding tokens."""
    if len(parts) == 1:
        return parts[0]
    x0, cams, frame_idx, prompt, canvases, mems = zip(*parts)
    cams_b = None if cams[0] is None else ProjCams(torch.cat([c.P for c in cams]), torch.cat([c.P_inv for c in cams]))
    canvas = None
    if any(c is not None for c in canvases):
        C, h, w = x0[0].shape[2:]
        canvas = torch.cat([c if c is not None else x0[i].new_zeros(1, x0[i].shape[1], C + 1, h, w)
                            for i, c in enumerate(canvases)])
    memory = []
    for ch in range(len(mems[0])):
        rows = [m[ch] for m in mems]
        if all(r is None for r in rows):
            memory.append(None)
            continue
        rows = [r if r is not None else empty_memory() for r in rows]
        cam = None if rows[0].cams is None else ProjCams(torch.cat([r.cams.P for r in rows]),
                                                         torch.cat([r.cams.P_inv for r in rows]))
        memory.append(MemoryTokens(torch.cat([r.feats for r in rows]), torch.cat([r.pos for r in rows]), cam,
                                   torch.cat([r.valid for r in rows])))
    same = all(torch.equal(f, frame_idx[0]) for f in frame_idx)
    return torch.cat(x0), cams_b, frame_idx[0] if same else torch.stack(frame_idx), torch.cat(prompt), canvas, memory
