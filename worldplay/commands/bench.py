"""`worldplay bench`: print numbers (and write JSON); never a timed test.

  --source world               the renderer: frames/s, ms per frame (the default)
  --source model[:NAME][@MODE] the streamer: steady-state FPS, per-stage ms, FLOPs/frame; with
                               --steps S, --chunk F, --kernels torch|triton|auto
                               (--source model:base-random measures the Wan2.1-1.3B-shaped preset)
  --source SPEC                any other source (explicit, memory, vae, floor): frames/s
  --source SPEC,SPEC,...       each in turn, then a table side by side (JSON: {"rows": [...]});
                               e.g. the README's speed levers: model,model+steps=2,model+fast
  --memory                     MosaicMemory retrieve + warp from a large store (ms), no source
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import replace
from datetime import datetime, timezone

import torch

from worldplay.devices import resolve_device
from worldplay.errors import WorldplayError
from worldplay.fileio import atomic_write_bytes, check_writable
from worldplay.memory.bench import bench_memory
from worldplay.sources.bench import bench_source
from worldplay.sources.capabilities import close_source
from worldplay.sources.model import ModelSource
from worldplay.sources.registry import make_source, source_specs
from worldplay.sources.spec import SPEC_HELP, SourceSpec
from worldplay.stream.bench import bench_streamer, check_kernels

DEFAULT_SOURCE = "world"
MODEL_KIND = "model"          # the kind benchmarked through the streamer's own bench


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default=None, metavar="SPEC[,SPEC...]",
                   help=f"what to benchmark (default world; a comma list benches each in turn and prints "
                        f"a table): {SPEC_HELP}")
    p.add_argument("--memory", nargs="?", const=True, default=None, metavar="",
                   help="benchmark MosaicMemory retrieve + warp instead of a source")
    p.add_argument("--steps", type=int, default=None, help="model: denoising steps per chunk (the preset's S)")
    p.add_argument("--chunk", type=int, default=None, help="model: frames per chunk (the preset's F)")
    p.add_argument("--kernels", default="torch", choices=["torch", "triton", "auto"],
                   help="model: attention implementation: torch (SDPA), triton (fused kernel, needs CUDA), "
                        "auto (triton on CUDA, torch elsewhere)")
    p.add_argument("--seconds", type=float, default=5.0, help="measurement time after warm-up")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--scene", type=int, default=0, help="scene seed the camera orbits")
    p.add_argument("--patches", type=int, default=200_000, help="stored patches for --memory")
    p.add_argument("--budget", type=int, default=240, help="retrieval token budget for --memory")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for the run (default: leave torch's setting)")
    p.add_argument("--json", dest="json_path", help="also write the results to this JSON file")


def _machine(device: str) -> dict:
    m = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
         "cpu threads": torch.get_num_threads(), "machine": platform.machine(),
         "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if device.startswith("cuda"):
        m["gpu"] = torch.cuda.get_device_name(0)
    return m


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, dict):
        return "  ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


def _bench_memory(args: argparse.Namespace) -> dict:
    if args.memory is not True:   # the old `--memory off` chose a model's memory paths
        raise WorldplayError(f"--memory {args.memory}: memory modes are part of the source spec now, "
                             f"e.g. --source model@{args.memory}; a bare --memory benchmarks the memory")
    if args.source is not None:
        raise WorldplayError("--memory and --source are separate benchmarks; pick one")
    if args.device != "cpu":
        raise WorldplayError("--memory benchmarks the CPU path only for now; drop --device")
    return bench_memory(n_patches=args.patches, budget=args.budget, threads=args.threads)


def _bench_source(args: argparse.Namespace, spec: SourceSpec) -> dict:
    if spec.kind != MODEL_KIND:
        if args.steps is not None or args.chunk is not None or args.kernels != "torch":
            raise WorldplayError(f"--steps, --chunk and --kernels set up a model; --source {spec.text} has none")
        source = make_source(spec, args.scene, None, args.device)
        return bench_source(source, args.seconds, seed=args.scene)
    check_kernels(args.kernels, args.device)       # before a model is built: base takes a while
    # the bench's flags are the spec's settings spelled as flags; the spec wins where both are given
    # (the dtype follows the device unless the spec says: bf16 on CUDA, float32 on CPU)
    flags = {"steps": args.steps, "chunk": args.chunk}
    settings = {k: str(v) for k, v in flags.items() if v is not None}
    source = make_source(replace(spec, options={**settings, **spec.options}), args.scene, None, args.device)
    if not isinstance(source, ModelSource):    # a plug-in replaced the model kind: no streamer to time
        raise WorldplayError(f"--source {spec.text}: not the streamer; bench it under another kind name")
    try:
        res = bench_streamer(source.streamer, args.seconds, args.kernels, seed=args.scene, label=source.label)
    finally:
        close_source(source)
    return {"source": spec.text, **res}


TABLE_COLUMNS = ("fps", "chunk_latency_p95_ms", "steps", "window_chunks", "sink_chunks", "dtype",
                 "ms_denoise", "ms_clean_pass", "ms_decode")


def _table(rows: list[dict]) -> str:
    """Several sources side by side (one line each), e.g. the README's speed levers."""
    width = max(len(r["source"]) for r in rows)
    lines = [f"{'source':<{width}}  " + "  ".join(f"{c:>12}" for c in TABLE_COLUMNS)]
    for r in rows:
        cells = [_fmt(r.get(c, "")) if not isinstance(r.get(c), float) else f"{r[c]:.2f}" for c in TABLE_COLUMNS]
        lines.append(f"{r['source']:<{width}}  " + "  ".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    args.device = str(resolve_device(args.device))   # resolved once: "auto" and typos end here
    if args.json_path:
        check_writable(args.json_path)
    if args.seconds <= 0:
        raise WorldplayError("--seconds must be positive, e.g. 5")
    if args.memory is not None:
        res = _bench_memory(args)
    else:
        specs = source_specs(args.source or DEFAULT_SOURCE)   # all checked before any is built
        rows = [_bench_source(args, spec) for spec in specs]
        res = rows[0] if len(rows) == 1 else {"rows": rows}
        if len(rows) > 1:
            print(_table(rows))
    res = {**res, "machine": _machine(args.device)}
    for k, v in res.items():
        if k not in ("machine", "rows"):
            print(f"{k:>22}: {_fmt(v)}")
    if args.json_path:
        atomic_write_bytes(args.json_path, (json.dumps(res, indent=2) + "\n").encode())
        print(f"wrote {args.json_path}", file=sys.stderr)
    return 0
