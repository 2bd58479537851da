"""`worldplay bench`: print numbers (and write JSON); never a timed test.

Modes:
  --source world        the MosaicWorld renderer (frames/s, ms per frame)
  --memory              MosaicMemory retrieve + warp from a large store (ms)
  --preset NAME         the model streamer (steady-state FPS, per-stage ms, FLOPs/frame);
                        with --steps S, --chunk F, --memory full|off|rope|latent, --kernels torch|triton|auto
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone

from worldplay.errors import WorldplayError
from worldplay.fileio import atomic_write_bytes, check_writable

MEMORY_BENCH = "bench"   # value of a bare --memory: the memory benchmark mode


def add_arguments(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--source", choices=["world"], help="benchmark a frame source (the renderer)")
    mode.add_argument("--preset", help="benchmark the model streamer for a size preset (tiny, base)")
    p.add_argument("--memory", nargs="?", const=MEMORY_BENCH, default=None, metavar="MODE",
                   help="alone: benchmark memory retrieve + warp; with --preset: the streamer's memory "
                        "paths, full (default), off, rope (memory tokens only) or latent (canvas only)")
    p.add_argument("--steps", type=int, default=None, help="--preset: denoising steps per chunk (preset's S)")
    p.add_argument("--chunk", type=int, default=None, help="--preset: frames per chunk (preset's F)")
    p.add_argument("--kernels", default="torch", choices=["torch", "triton", "auto"],
                   help="--preset: attention implementation: torch (SDPA), triton (fused kernel, needs CUDA), "
                        "auto (triton on CUDA, torch elsewhere)")
    p.add_argument("--seconds", type=float, default=5.0, help="measurement time after warm-up")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--scene", type=int, default=0, help="scene seed for --source world")
    p.add_argument("--patches", type=int, default=200_000, help="stored patches for --memory")
    p.add_argument("--budget", type=int, default=240, help="retrieval token budget for --memory")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for the run (default: leave torch's setting)")
    p.add_argument("--json", dest="json_path", help="also write the results to this JSON file")


def _machine(device: str) -> dict:
    import torch
    m = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
         "cpu threads": torch.get_num_threads(), "machine": platform.machine(),
         "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if device.startswith("cuda"):
        m["gpu"] = torch.cuda.get_device_name(0)
    return m


def _check_device(device: str) -> None:
    import torch
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WorldplayError("--device cuda asked for, but torch sees no CUDA GPU here; use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise WorldplayError(f"unknown --device {device!r}; use cpu or cuda")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, dict):
        return "  ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


def run(args: argparse.Namespace) -> int:
    _check_device(args.device)
    if args.json_path:
        check_writable(args.json_path)
    if args.seconds <= 0:
        raise WorldplayError("--seconds must be positive, e.g. --seconds 5")
    if args.preset:
        from worldplay.stream.bench import bench_streamer
        memory = "full" if args.memory in (None, MEMORY_BENCH) else args.memory
        res = bench_streamer(preset=args.preset, device=args.device, seconds=args.seconds, steps=args.steps,
                             chunk=args.chunk, memory=memory, kernels=args.kernels)
    elif args.memory is not None and args.memory != MEMORY_BENCH:
        raise WorldplayError(f"--memory {args.memory} picks the streamer's memory paths; add --preset tiny "
                             f"(or use a bare --memory for the memory benchmark)")
    elif args.memory is not None:
        if args.source:
            raise WorldplayError("--memory and --source are separate benchmarks; pick one")
        from worldplay.memory.bench import bench_memory
        if args.device != "cpu":
            raise WorldplayError("--memory benchmarks the CPU path only for now; drop --device")
        res = bench_memory(n_patches=args.patches, budget=args.budget, threads=args.threads)
    else:
        from worldplay.world.bench import bench_renderer
        res = bench_renderer(seconds=args.seconds, device=args.device, seed=args.scene)
    res = {**res, "machine": _machine(args.device)}
    for k, v in res.items():
        if k != "machine":
            print(f"{k:>22}: {_fmt(v)}")
    if args.json_path:
        atomic_write_bytes(args.json_path, (json.dumps(res, indent=2) + "\n").encode())
        print(f"wrote {args.json_path}", file=sys.stderr)
    return 0
