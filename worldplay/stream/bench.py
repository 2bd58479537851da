"""`bench_streamer`: steady-state throughput of the Mosaic Forcing streamer. Prints nothing;
`worldplay bench --source model[:NAME]` prints and saves what this returns. Never a timed test.

The streamer comes built (the `model` source builds it from its spec): cost does not depend on
what the weights are, so random entries (tiny-random, base-random) measure a preset. The
camera orbits a MosaicWorld scene so memory fills and is retrieved as in play. Warm-up runs until
the KV cache is full (sink + window chunks), so every measured chunk attends over the full
context; then chunks are generated until `seconds` of measurement have passed (at least
MIN_CHUNKS).
"""

from __future__ import annotations

import time

import torch

from kernels import KernelError, triton_available
from kernels.dispatch import use_kernels
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.model.dit import param_count
from worldplay.procstats import peak_rss_mb
from worldplay.stream.flops import flops_per_frame
from worldplay.stream.session import STAGES
from worldplay.stream.streamer import Streamer
from worldplay.timing import percentile
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene
from worldplay.world.trajectories import make_trajectory

KERNELS = ("torch", "triton", "auto")   # kernels/dispatch.py policies
MIN_CHUNKS = 2            # measured chunks, however short `seconds` is (p50 needs some samples)
PATH_SECONDS = 60.0       # one orbit lap; longer runs go round again
MB = 2 ** 20


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MB
    return peak_rss_mb()


def bench_streamer(streamer: Streamer, seconds: float = 20.0, kernels: str = "torch", seed: int = 0,
                   label: str | None = None) -> dict:
    """Steady-state numbers of `streamer` (reset here onto scene `seed`); `label` names its weights."""
    check_kernels(kernels, streamer.device)
    try:
        with use_kernels(kernels):
            return _bench(streamer, seconds, kernels, seed, label)
    except KernelError as e:   # e.g. a forced kernel that cannot take this preset's shapes
        raise WorldplayError(f"--kernels {kernels}: {e}") from None


def check_kernels(kernels: str, dev: str | torch.device) -> None:
    """--kernels is one this machine can run (checked before a model is built: base takes a while)."""
    if kernels not in KERNELS:
        raise WorldplayError(f"--kernels {kernels!r}; use one of: {', '.join(KERNELS)}")
    dev = torch.device(dev)
    if kernels != "triton":
        return
    if dev.type != "cuda":
        raise WorldplayError("--kernels triton runs the fused Triton attention, which needs --device cuda (on CPU "
                             "only Triton's interpreter runs it, far too slowly to measure); use --kernels torch")
    if not triton_available():
        raise WorldplayError("--kernels triton needs the triton package (pip install triton); or use --kernels torch")


def _bench(streamer: Streamer, seconds: float, kernels: str, seed: int, label: str | None) -> dict:
    cfg, dev, memory = streamer.cfg, streamer.device, streamer.memory_mode
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    v, Fc = cfg.vae, cfg.dit.chunk_frames
    scene = make_scene(seed)
    fps = ImageConfig.fps
    traj = make_trajectory("orbit", scene, int(PATH_SECONDS * fps), fps, seed, with_revisits=False)
    first = Renderer(scene, ImageConfig(width=v.width, height=v.height)).render(traj.c2w[0], 0.0)
    streamer.reset(first, scene.prompt)

    warmup = cfg.dit.sink_chunks + cfg.dit.window_chunks
    latencies: list[float] = []
    stage_ms = {s: 0.0 for s in STAGES}
    mem_tokens = 0
    measured_s, i = 0.0, 0
    while i < warmup or len(latencies) < MIN_CHUNKS or measured_s < seconds:
        idx = torch.arange(i * Fc, (i + 1) * Fc)
        start = time.perf_counter()
        streamer.step(traj.c2w[idx % len(traj)], idx.double() / fps)
        dt = time.perf_counter() - start
        if i >= warmup:
            latencies.append(dt)
            measured_s += dt
            for s in STAGES:
                stage_ms[s] += streamer.stats["ms"][s]
            mem_tokens += streamer.stats["memory_tokens"]
        i += 1
    n = len(latencies)
    flops = flops_per_frame(cfg, streamer.schedule.steps, memory)
    label = label or (cfg.label if cfg.labelled_random else f"{cfg.label} (random weights)")
    res = {"preset": cfg.name, "label": label, "resolution": f"{v.width}x{v.height}",
           "device": str(dev), "dtype": str(streamer.dtype).replace("torch.", ""),
           "vae_dtype": str(streamer.vae_dtype).replace("torch.", ""), "kernels": kernels,
           "memory": memory, "steps": streamer.schedule.steps, "chunk_frames": Fc,
           "window_chunks": cfg.dit.window_chunks, "sink_chunks": cfg.dit.sink_chunks,
           "threads": torch.get_num_threads(),
           "fps": n * Fc / measured_s,
           "chunk_latency_p50_ms": percentile(latencies, 0.5) * 1e3,
           "chunk_latency_p95_ms": percentile(latencies, 0.95) * 1e3}
    res.update({f"ms_{s}": stage_ms[s] / n for s in STAGES})
    res.update({"peak_memory_mb": _peak_mb(dev), "dit_params": param_count(streamer.dit),
                "vae_params": param_count(streamer.vae),
                "tokens_per_chunk": cfg.tokens_per_chunk, "memory_tokens_per_chunk": mem_tokens / n,
                "tokens_per_chunk_incl_memory": cfg.tokens_per_chunk + mem_tokens / n,
                "context_tokens": flops["context_tokens"],
                "gflops_per_frame": flops["gflops_per_frame"],
                "dit_gflops_per_frame": flops["dit_gflops_per_frame"],
                "vae_decode_gflops_per_frame": flops["vae_decode_gflops_per_frame"],
                "chunks_measured": n, "warmup_chunks": warmup, "seconds_measured": measured_s})
    return res
