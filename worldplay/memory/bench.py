"""Benchmark of memory reads: retrieve + warp over a full memory. A command that prints numbers.

    python -m worldplay.memory.bench [n_patches] [budget] [threads]

Memory is filled with `n_patches` entries on the floor and walls of a 40 x 40 m room, seen from
random cameras inside it, so a target view holds tens of thousands of candidates (heavier than
a real scene, where dedup and inner walls thin them out). Then retrieval for one target and for
a 4-frame chunk, and warp canvases at the token and latent grids, are timed. On a busy machine
pass threads=1: these are many small ops, and waiting threads dominate them.
"""

from __future__ import annotations

import math
import sys
import time

import torch
from torch import Tensor

from worldplay.camera import intrinsics, look_at
from worldplay.devices import torch_threads
from worldplay.errors import WorldplayError
from worldplay.memory.config import MemoryConfig
from worldplay.memory.memory import MosaicMemory
from worldplay.memory.store import K_to_intr
from worldplay.timing import percentile

AREA_HALF = 20.0            # metres: cameras and points live in [-20, 20]^2 on the ground
WALL_HEIGHT = 6.0           # metres
SPAN_SECONDS = 60.0         # entries' times spread over a minute-long session
EYE_HEIGHT = 1.6
CHUNK_FRAMES = 4            # the tiny streamer retrieves for a chunk of 4 poses
LATENT_SCALE = 2            # latent grid = token grid x DiT patch


def fill_random(mem: MosaicMemory, n: int, seed: int = 0) -> int:
    """Fill memory with n synthetic entries on the floor and walls of a square room, seen from
    random cameras inside it. Returns entries stored."""
    g = torch.Generator().manual_seed(seed)
    cfg = mem.cfg
    if n > cfg.capacity:
        raise WorldplayError(f"bench: {n} patches do not fit a memory of capacity {cfg.capacity}")
    cams = (torch.rand(n, 3, generator=g) * 2 - 1) * (AREA_HALF - 1.0)
    cams[:, 1] = EYE_HEIGHT
    pts = (torch.rand(n, 3, generator=g) * 2 - 1) * AREA_HALF                 # (n, 3)
    pts[:, 1] = torch.rand(n, generator=g) * WALL_HEIGHT
    surface = torch.randint(0, 5, (n,), generator=g)                          # 0 floor, 1-4 walls
    pts[surface == 0, 1] = 0.0
    pts[surface == 1, 0], pts[surface == 2, 0] = -AREA_HALF, AREA_HALF
    pts[surface == 3, 2], pts[surface == 4, 2] = -AREA_HALF, AREA_HALF
    depth = (pts - cams).norm(dim=-1)
    K = intrinsics(cfg.image_width, cfg.image_height)
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, :3, 3] = cams
    # Written straight into the store with distinct keys: a benchmark wants exactly n entries,
    # where insert() would dedup random points that share a voxel and view bin.
    s = mem.store
    s.feat[:n] = torch.randn(n, cfg.feature_dim, generator=g).to(s.feat.dtype)
    s.centre[:n], s.c2w[:n], s.size[:n] = pts, c2w, depth * cfg.patch_px / K[0, 0]
    s.vdir[:n] = torch.nn.functional.normalize(pts - cams, dim=-1)
    s.intr[:n] = K_to_intr(K)
    s.time[:n] = torch.rand(n, generator=g, dtype=torch.float64) * SPAN_SECONDS
    s.dynamic[:n] = 0.0
    s.key[:n] = torch.arange(n)
    s.seq[:n] = torch.arange(n)
    s.valid[:n] = True
    s.n_used = s.next_seq = s.inserted_total = n
    s.now = SPAN_SECONDS
    s.rebuild_index()
    return len(mem)


def _timed(fn, iters: int) -> dict:
    fn()  # warm-up: first calls pay for allocator growth
    ms = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    return {"p50": percentile(ms, 0.5), "p95": percentile(ms, 0.95)}


def bench_memory(n_patches: int = 200_000, budget: int = 240, iters: int = 20, seed: int = 0,
                 threads: int | None = None) -> dict:
    """ms (p50 / p95) of retrieve (1 and 4 targets), warp_canvas (token and latent grids) and
    the keyframe reprojection of one canvas (before its VAE encode).

    threads: torch intra-op threads for the run (None: leave as is); restored afterwards.
    """
    with torch_threads(threads):
        return _bench(n_patches, budget, iters, seed)


def _bench(n_patches: int, budget: int, iters: int, seed: int) -> dict:
    cfg = MemoryConfig(capacity=n_patches)
    mem = MosaicMemory(cfg)
    stored = fill_random(mem, n_patches, seed)
    K = intrinsics(cfg.image_width, cfg.image_height)
    target = look_at((0.0, EYE_HEIGHT, 0.0), (0.0, EYE_HEIGHT, -5.0))
    chunk = torch.stack([look_at((0.0, EYE_HEIGHT, -0.1 * i), (0.0, EYE_HEIGHT, -5.0))
                         for i in range(CHUNK_FRAMES)])
    h, w = cfg.grid_hw
    out = {"stored": stored, "budget": budget, "threads": torch.get_num_threads(),
           "returned": len(mem.retrieve(target, K, budget))}
    out["retrieve_ms"] = _timed(lambda: mem.retrieve(target, K, budget), iters)
    out["retrieve_chunk_ms"] = _timed(lambda: mem.retrieve(chunk, K, budget), iters)
    out["warp_token_ms"] = _timed(lambda: mem.warp_canvas(target, K, (h, w)), iters)
    out["warp_latent_ms"] = _timed(lambda: mem.warp_canvas(target, K, (h * LATENT_SCALE, w * LATENT_SCALE)), iters)

    def both():
        b = mem.retrieve(target, K, budget)
        mem.warp_canvas(target, K, (h, w), ids=b.ids)

    out["retrieve_plus_warp_ms"] = _timed(both, iters)
    out["keyframes"] = fill_keyframes(mem, K, seed)
    out["keyframe_reproject_ms"] = _timed(lambda: mem.reproject(target, K), iters)
    return out


def fill_keyframes(mem: MosaicMemory, K: Tensor, seed: int) -> int:
    """Fill the keyframes to capacity: random colours on a wall 5 m ahead, seen from poses on a
    0.6 m grid around the bench's target (so ranking has every keyframe to weigh)."""
    cfg, g = mem.cfg, torch.Generator().manual_seed(seed)
    side = math.ceil(math.sqrt(cfg.keyframes))
    for i in range(cfg.keyframes):
        x, z = 0.6 * (i % side - side / 2), 0.6 * (i // side - side / 2)
        rgb = torch.randint(0, 256, (cfg.image_height, cfg.image_width, 3), generator=g, dtype=torch.uint8)
        depth = torch.full((cfg.image_height, cfg.image_width), 5.0)
        mem.views.add(rgb, depth, look_at((x, EYE_HEIGHT, z), (x, EYE_HEIGHT, z - 5.0)), K, float(i))
    return len(mem.views)


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 200_000
    budget = int(argv[1]) if len(argv) > 1 else 240
    threads = int(argv[2]) if len(argv) > 2 else None
    r = bench_memory(n, budget, threads=threads)
    print(f"memory: {r['stored']} entries, budget {r['budget']}, returned {r['returned']}, {r['threads']} threads")
    for k, v in r.items():
        if isinstance(v, dict):
            print(f"  {k:24s} p50 {v['p50']:7.2f} ms   p95 {v['p95']:7.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
