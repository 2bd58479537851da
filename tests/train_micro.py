"""Micro training stages for the tests (not a test module): the real stage code at 160x96."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from micro_model import IMAGE, MICRO

from worldplay.model.dit import DiT
from worldplay.model.vae import RGBDVAE
from worldplay.train.canvas import attach_canvases
from worldplay.train.causal import CausalConfig, CausalStage
from worldplay.train.forcing import ForcingConfig, ForcingStage
from worldplay.train.latents import LatentSet, build_cache
from worldplay.train.vae import VAEStage, VAETrainConfig

VAE_MICRO = VAETrainConfig(batch=2, crop_h=32, crop_w=64, pool=6, refresh=1, per_scene=4, val_frames=2)
LATENTS = LatentSet(scenes=2, per_scene=1, frames=16, paths=("orbit", "look-away"))
VAL = replace(LATENTS, scenes=1, first_seed=900_000)
CAUSAL = CausalConfig(episodes=2, targets_per_episode=3, memory_capacity=4000, data=LATENTS, val=VAL)


def vae_stage(cfg: VAETrainConfig = VAE_MICRO) -> VAEStage:
    return VAEStage(RGBDVAE(MICRO.vae, seed=0), cfg, image=IMAGE)


def causal_stage(cache: Path, cfg: CausalConfig = CAUSAL) -> CausalStage:
    vae = RGBDVAE(MICRO.vae, seed=0).eval()
    clips = build_cache(cache / "train", vae, MICRO, cfg.data, progress=False)
    val = build_cache(cache / "val", vae, MICRO, cfg.val, progress=False)
    attach_canvases(cache / "train", clips, vae, MICRO, progress=False)
    attach_canvases(cache / "val", val, vae, MICRO, progress=False)
    dit = DiT(MICRO, seed=0)
    dit.reset_parameters(0, zero_gates=True)
    return CausalStage(dit, vae, MICRO, clips, val, cfg)


def forcing_stage(cache: Path) -> ForcingStage:
    base = causal_stage(cache)
    return ForcingStage(base.module, base.vae, MICRO, base.clips, base.val_clips, ForcingConfig(causal=CAUSAL))
