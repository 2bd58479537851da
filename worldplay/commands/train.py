"""`worldplay train vae|causal|forcing|export`: resumable, time-boxed training stages.

    worldplay train vae --minutes 30 --out runs/vae                 # from scratch
    worldplay train vae --minutes 30 --out runs/vae --resume        # continue exactly
    worldplay train causal --minutes 60 --init mosaic-tiny          # from the shipped weights
    worldplay train export --vae runs/vae --dit runs/causal         # fp16 EMA shards into assets/

Every stage writes runs/<stage>/ (ckpt.safetensors, state.json, losses.csv, samples/*.png).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from worldplay.errors import WorldplayError
from worldplay.train import stages

STAGES = ("vae", "causal", "forcing", "export")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stage", choices=STAGES, help="vae, causal or forcing; export writes the shipped shards")
    p.add_argument("--minutes", type=float, default=None, help="time box: stop cleanly with a checkpoint after this long")
    p.add_argument("--steps", type=int, default=None, help="stop at this total step count instead")
    p.add_argument("--out", default=None, help="run folder (default runs/STAGE)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--init", default=None,
                   help="start from a checkpoints.toml model or a .safetensors file (fresh optimizer)")
    p.add_argument("--vae", default=None, help="causal/forcing/export: the VAE run folder or model to use")
    p.add_argument("--dit", default=None, help="export/forcing: the DiT run folder to take weights from")
    p.add_argument("--cache", default="runs/latents", help="causal/forcing: folder of cached training latents")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda trains in bf16 autocast)")
    p.add_argument("--batch", type=int, default=None, help="causal/forcing clips per step (default 1 on CPU, 16 on CUDA)")
    p.add_argument("--bf16", action="store_true", help="DiT matmuls in bf16 autocast on CPU too (always on CUDA)")
    p.add_argument("--preset", default="tiny", help="model size to train (tiny ships; base wants GPUs and --fsdp)")
    p.add_argument("--fsdp", action="store_true",
                   help="under torchrun: shard the model over the ranks (FSDP2) instead of copying it to each")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed of a new run")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default per stage)")
    p.add_argument("--sample-minutes", type=float, default=5.0, help="validation + PNG strip this often")
    p.add_argument("--name", default="mosaic-tiny", help="export: registry name and shard file stem")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs)")


def run(args) -> int:
    if args.minutes is not None and args.minutes <= 0:
        raise WorldplayError(f"--minutes must be positive (got {args.minutes})")
    out = Path(args.out or f"runs/{args.stage}")
    return stages.run_stage(args.stage, out, args)
