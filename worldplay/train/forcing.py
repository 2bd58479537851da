"""Stage 3, `worldplay train forcing`: the model trained on its own rollouts (Self-Forcing style).

At inference the context in the KV cache and most of the memory are the model's own frames,
not ground truth, and small errors compound over a minute-long walk. Here each episode walks a
cached trajectory chunk by chunk the way the streamer does:

  1. start  -> an episode starts at a random chunk of the trajectory (`start_anywhere`): the
               ground truth before it is observed (the chunk before it is the context, every
               earlier frame is in memory), as eval's model sources observe a walk up to its
               first revisit and the streamer's own frames then fill a long walk's memory.
               Without it, the first `observe_chunks` chunks are observed (TI2V plus context)
  2. loss   -> the next chunk at the commanded poses, flow matching against the renderer's exact
               latents (the world is the teacher: no teacher network), with the model's OWN
               previous chunk as context and its own frames in the memory; t is drawn around
               the few-step schedule's own timesteps (`steps`, the CPU real-time setting), so
               the steps inference takes are the ones trained
  3. rollout-> the same chunk is then generated without gradients by the streamer's sampler at
               `steps`; it becomes the next context, and the chunk leaving the context is lifted
               into memory with the depth the VAE decodes for it (as the streamer does)
Episodes restart after `rollout_chunks` generated chunks. Memory modes are drawn per episode.
The Warped Latent canvas stays the cached one (canvas.py: keyframes of the ground-truth frames);
the memory tokens are the model's own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from worldplay.memory.memory import MosaicMemory
from worldplay.model.dit import DiT
from worldplay.model.presets import ModelConfig
from worldplay.model.vae import RGBDVAE
from worldplay.stream.sampler import FlowSchedule, add_noise
from worldplay.stream.streamer import memory_config_for
from worldplay.train.causal import MODES, CausalConfig, CausalStage, Example, frame_errors, keyed_rng
from worldplay.train.latents import Clip, insert_frame

STEP_JITTER = 0.05   # t is drawn within this of one of the schedule's timesteps


@dataclass(frozen=True)
class ForcingConfig:
    steps: int = 2                  # sampler steps of rollouts and of the trained timesteps (CPU real time)
    observe_chunks: int = 1         # ground-truth chunks an episode starts from
    rollout_chunks: int = 6         # own chunks per episode before a fresh start
    start_anywhere: bool = True     # episodes start at a random chunk, observing the ground truth
                                    # before it: revisits then come from memory, as in eval and long walks
    causal: CausalConfig = field(default_factory=lambda: CausalConfig(episodes=2))


@dataclass
class Rollout:
    clip: Clip
    chunk: int                      # the next chunk to train on and generate
    context: Tensor                 # (F, C, h, w) the chunk before it, as the model made it
    mode: str
    memory: MosaicMemory
    made: int = 0                   # chunks generated so far


class ForcingStage(CausalStage):
    name = "forcing"

    def __init__(self, dit: DiT, vae: RGBDVAE, cfg: ModelConfig, clips: list[Clip], val_clips: list[Clip],
                 stage_cfg: ForcingConfig = ForcingConfig(), device: str = "cpu", bf16: bool = False):
        super().__init__(dit, vae, cfg, clips, val_clips, stage_cfg.causal, device, bf16)
        self.f = stage_cfg
        self.config = {"stage": asdict(stage_cfg), "dit": asdict(cfg.dit)}
        self.rollouts: list[Rollout | None] = [None] * stage_cfg.causal.episodes
        self.schedule = FlowSchedule(stage_cfg.steps, cfg.dit.shift)

    def seek(self, pos: int) -> None:
        """Rollouts depend on the weights at the time; a resumed run starts fresh episodes."""
        self.k = pos
        self.rollouts = [None] * len(self.rollouts)

    def _start(self, q: int) -> Rollout:
        g = keyed_rng(q)
        clip = self.clips[int(torch.randint(len(self.clips), (1,), generator=g))]
        probs = torch.tensor(self.c.mode_probs)
        mode = MODES[int(torch.multinomial(probs, 1, generator=g))]
        memory = MosaicMemory(memory_config_for(self.cfg, capacity=self.c.memory_capacity), self.device)
        n = self.f.observe_chunks
        if self.f.start_anywhere:            # any chunk with at least one left to generate
            n = int(torch.randint(n, max(len(clip) // self.Fc, n + 1), (1,), generator=g))
        a = self.clip_start(n)               # the context chunk's first frame
        for f in range(a):                   # observed frames before the context go to memory
            insert_frame(memory, clip, f, self.K, self.cfg.dit.patch)
        ctx = clip.z[a:n * self.Fc].float()
        return Rollout(clip, n, ctx, mode, memory)

    def _t(self, g: torch.Generator) -> float:
        ts = [t for t, _ in self.schedule.pairs()]
        t = ts[int(torch.randint(len(ts), (1,), generator=g))]
        return min(max(t + STEP_JITTER * (2 * float(torch.rand(1, generator=g)) - 1), 0.02), 1.0)

    def loss(self, step: int) -> dict[str, Tensor]:
        k = self.k * self.world + self.rank
        self.k += 1
        slot = k % len(self.rollouts)
        ro = self.rollouts[slot]
        if ro is None or ro.made >= self.f.rollout_chunks or ro.chunk >= len(ro.clip) // self.Fc:
            ro = self.rollouts[slot] = self._start(k)
        ex = Example(ro.clip, ro.chunk, ro.mode, self._sink_at(ro.chunk, None))   # the sink at its true distance
        x0, cams, frame_idx, prompt, canvas, mems = self.inputs(ex, ro.memory, ro.context)
        g, Fc = self.generator, self.Fc
        t = torch.zeros(1, x0.shape[1])
        t[:, :-Fc] = float(torch.rand(1, generator=g)) * self.c.context_noise
        t[:, -Fc:] = self._t(g)
        t = t.to(self.device)
        eps = torch.randn(x0.shape, generator=g).to(self.device)
        xt = add_noise(x0, eps, t)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            v = self.module.forward_full(xt, t, cams, prompt, frame_idx=frame_idx, canvas=canvas, memory=mems)
        err, sq = frame_errors(v[:, -Fc:], (eps - x0)[:, -Fc:], self.cell_weights(ex)[:, -Fc:].to(self.device))
        loss = err.mean()                                                          # over the target's frames
        self._advance(ro, ex, g)
        return {"loss": loss, "target_mse": sq.mean().detach()}

    @torch.no_grad()
    def _advance(self, ro: Rollout, ex: Example, g: torch.Generator) -> None:
        """Generate this chunk with the model; the old context goes into memory, the new one in."""
        was = self.module.training
        self.module.eval()
        made = self.generate(self.module, ex, ro.memory, self.f.steps, g, ro.context)   # (F, C, h, w)
        self.module.train(was)
        if ro.mode != "off":
            _, depth = self.vae.decode(ro.context.to(self.device))                      # (F, H, W)
            a = (ro.chunk - 1) * self.Fc
            for i in range(self.Fc):
                insert_frame(ro.memory, ro.clip, a + i, self.K, self.cfg.dit.patch, ro.context[i], depth[i].cpu())
        ro.context, ro.chunk, ro.made = made.cpu(), ro.chunk + 1, ro.made + 1
