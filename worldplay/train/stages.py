"""Build a stage from the command line and run it through the shared loop."""

from __future__ import annotations

from dataclasses import replace
import os
from pathlib import Path

import torch
import torch.distributed as dist

from worldplay.errors import WorldplayError
from worldplay.model.presets import get_preset
from worldplay.train.loop import LoopConfig, train
from worldplay.train.causal import build_stage
from worldplay.train.export import export
from worldplay.train.run import Schedule
from worldplay.train.vae import VAEStage, make_vae
from worldplay.train.weights import weights_from

DEFAULT_LR = {"vae": 1e-3, "causal": 3e-4, "forcing": 1e-4}
PRESET = "tiny"   # the model trained and shipped here; larger presets are for GPUs


def loop_config(stage: str, args) -> LoopConfig:
    lr = args.lr if args.lr is not None else DEFAULT_LR[stage]
    return LoopConfig(minutes=args.minutes, steps=args.steps, resume=args.resume, seed=args.seed,
                      sample_minutes=args.sample_minutes, progress=not args.no_progress,
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
    cfg = get_preset(PRESET)
    device = start_distributed(args.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WorldplayError(f"--device {device}: this torch build sees no CUDA GPU; use --device cpu")
    if stage == "vae":
        init = weights_from(args.init, "vae") if args.init else None
        st = VAEStage(make_vae(cfg.vae, init, args.seed), device=device)
    else:
        st = build_stage(stage, cfg, args, device)
    train(st, out, loop_config(stage, args), init=args.init or "scratch")
    return 0
