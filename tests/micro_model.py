"""A micro model for fast CPU tests of the DiT and the streamer (not a test module itself).

160x96 frames -> a 6x10 latent -> 3x5 = 15 tokens per frame; 2-frame chunks; a 2-layer DiT of
width 64 (head_dim 32: 16 PRoPE dims, RoPE over t, y, x on the rest). Same code paths as tiny.
"""

from __future__ import annotations

import torch

from worldplay.config import ImageConfig
from worldplay.memory.memory import MosaicMemory
from worldplay.model.dit import DiT
from worldplay.model.presets import DiTConfig, ModelConfig, VAEConfig
from worldplay.model.vae import RGBDVAE
from worldplay.stream.streamer import Streamer, memory_config_for

W, H = 160, 96
MICRO = ModelConfig(
    name="micro",
    vae=VAEConfig(width=W, height=H, pad_height=H, widths=(8, 8, 8), groups=4),
    dit=DiTConfig(width=64, depth=2, heads=2, ffn=128, chunk_frames=2, sink_frames=2, window_chunks=2,
                  memory_tokens=8, steps=2),
    label="micro (test)",
)
IMAGE = ImageConfig(width=W, height=H)
MEMORY_CAPACITY = 4000


def micro_config(**dit_overrides) -> ModelConfig:
    if not dit_overrides:
        return MICRO
    from dataclasses import replace
    return replace(MICRO, dit=replace(MICRO.dit, **dit_overrides))


def micro_streamer(cfg: ModelConfig = MICRO, seed: int = 5, weights_seed: int = 1, **kw) -> Streamer:
    dit, vae = DiT(cfg, seed=weights_seed), RGBDVAE(cfg.vae, seed=weights_seed)
    mem = MosaicMemory(memory_config_for(cfg, capacity=MEMORY_CAPACITY))
    return Streamer(cfg, dit, vae, mem, "cpu", seed=seed, **kw)


def orbit(n: int, scene_seed: int = 3):
    """(scene, first frame, trajectory) for an n-frame orbit of a MosaicWorld scene at micro size."""
    from worldplay.world.render import Renderer
    from worldplay.world.scene import make_scene
    from worldplay.world.trajectories import make_trajectory

    scene = make_scene(scene_seed)
    traj = make_trajectory("orbit", scene, n, IMAGE.fps, scene_seed, with_revisits=False)
    first = Renderer(scene, IMAGE).render(traj.c2w[0], float(traj.times[0]))
    return scene, first, traj


def run_chunks(s: Streamer, traj, start: int, stop: int) -> list:
    """Frames start..stop-1 of `traj`, one streamer step per chunk."""
    F = s.cfg.dit.chunk_frames
    out = []
    for i in range(start, stop, F):
        out += s.step(traj.c2w[i:i + F], traj.times[i:i + F])
    return out


def same_frames(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x.rgb, y.rgb) and torch.equal(x.depth, y.depth)
                                    and torch.equal(x.c2w, y.c2w) for x, y in zip(a, b))
