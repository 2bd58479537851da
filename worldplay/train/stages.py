"""Build a stage from the command line and run it through the shared loop.

The one module that knows every stage: forcing.py builds on causal.py, so choosing between them
happens here, above both.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from worldplay.devices import resolve_device
from worldplay.errors import WorldplayError
from worldplay.model.dit import DiT, with_canvas_gate
from worldplay.model.presets import ModelConfig, get_preset
from worldplay.model.vae import RGBDVAE, load_vae_state
from worldplay.train.canvas import attach_canvases
from worldplay.train.causal import CausalConfig, CausalStage
from worldplay.train.export import export
from worldplay.train.forcing import ForcingConfig, ForcingStage
from worldplay.train.latents import build_cache, calibrate_on
from worldplay.train.loop import LoopConfig, train
from worldplay.train.run import Schedule
from worldplay.train.vae import VAEStage, make_vae
from worldplay.train.weights import save_vae, weights_from

DEFAULT_LR = {"vae": 1e-3, "causal": 3e-4, "forcing": 1e-4}


def use_bf16(args, device: str) -> bool:
    """bf16 autocast: asked for with --bf16, always on CUDA."""
    return args.bf16 or str(device).startswith("cuda")


def loop_config(stage: str, args) -> LoopConfig:
    lr = args.lr if args.lr is not None else DEFAULT_LR[stage]
    return LoopConfig(minutes=args.minutes, steps=args.steps, resume=args.resume, seed=args.seed,
                      sample_minutes=args.sample_minutes, progress=not args.no_progress,
                      fsdp=args.fsdp, bf16=use_bf16(args, args.device),
                      schedule=replace(Schedule(), lr=lr))


def start_distributed(device: str) -> str:
    """Under torchrun (WORLD_SIZE > 1) join the process group: NCCL with one GPU per rank, gloo
    on CPUs. Returns the device this rank trains on. A plain process is left alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return device
    cuda = device.startswith("cuda")
    dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def run_stage(stage: str, out: Path, args) -> int:
    if stage == "export":
        export(args)
        return 0
    if args.minutes is None and args.steps is None:
        raise WorldplayError(f"train {stage}: give --minutes (a time box) or --steps")
    if args.resume and args.init:
        raise WorldplayError("--resume continues a run with its own weights; drop --init")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = get_preset(args.preset)
    if args.fsdp and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        raise WorldplayError("--fsdp shards the model over torchrun's ranks; run it under "
                             "`torchrun --nproc_per_node N -m worldplay train ...`")
    device = start_distributed(str(resolve_device(args.device)))
    if stage == "vae":
        init = weights_from(args.init, "vae") if args.init else None
        st = VAEStage(make_vae(cfg.vae, init, args.seed), device=device)
    else:
        st = build_stage(stage, cfg, args, device)
    # where the weights came from: a registry model, a file, or the run folder --dit names
    origin = args.init or (None if stage == "vae" else args.dit) or "scratch"
    train(st, out, loop_config(stage, args), init=origin)
    return 0


def build_stage(stage: str, cfg: ModelConfig, args, device: str) -> CausalStage:
    """The causal or forcing stage from the command line: VAE from --vae (or --init), DiT from
    --init / --dit (forcing needs one: it starts from a causal run), latents cached in --cache."""
    vae_src = args.vae or args.init
    if vae_src is None:
        raise WorldplayError(f"train {stage}: say which VAE encodes the latents: --vae runs/vae or --init MODEL")
    vae = RGBDVAE(cfg.vae)
    load_vae_state(vae, weights_from(vae_src, "vae"))
    dit = DiT(cfg, seed=args.seed)
    dit_src = args.dit or args.init
    if dit_src:
        dit.load_state_dict(with_canvas_gate(weights_from(dit_src, "dit"), dit))
    elif stage == "forcing":
        raise WorldplayError("train forcing starts from a trained causal model: --dit runs/causal or --init MODEL")
    else:
        dit.reset_parameters(args.seed, zero_gates=True)
    batch = args.batch or (16 if device.startswith("cuda") else 1)
    fc = ForcingConfig(causal=CausalConfig(episodes=max(2, batch), batch=batch))
    sc = fc.causal if stage == "forcing" else CausalConfig(episodes=max(4, batch), batch=batch)
    cache = Path(args.cache)
    vae = vae.to(device).eval()
    clips = build_cache(cache / "train", vae, cfg, sc.data, progress=not args.no_progress)
    val = build_cache(cache / "val", vae, cfg, sc.val, progress=not args.no_progress)
    calibrate_on(vae, clips, val)   # a fresh VAE run: its latents get unit scale before the DiT sees any
    if cfg.dit.use_warped_latent:
        attach_canvases(cache / "train", clips, vae, cfg, progress=not args.no_progress)
        attach_canvases(cache / "val", val, vae, cfg, progress=not args.no_progress)
    save_vae(vae, Path(args.out or f"runs/{stage}"), vae_src)   # the DiT's latent space travels with its run
    bf16 = use_bf16(args, device)
    if stage == "forcing":
        return ForcingStage(dit, vae, cfg, clips, val, fc, device, bf16)
    return CausalStage(dit, vae, cfg, clips, val, sc, device, bf16)
