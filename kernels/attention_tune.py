"""Autotuning of the segmented attention kernel on CUDA: the candidate tiles and their pruning.

The launcher (attention.py) autotunes when it runs compiled and no config is forced; the
interpreter keeps its fixed INTERPRET_BLOCK tiles (it is for correctness, and every config would
be another slow run). Candidates are the Triton fused-attention tutorial's usual winners on
Hopper / Ampere plus the fp32 fallback; `early_config_prune` drops, before anything compiles:

- tiles whose shared memory would not fit the GPU (estimated: q's tile plus `num_stages`
  buffers of K and V, an upper bound of what Triton allocates; compare the `shared` column of
  `python -m kernels.aot --tune`),
- tiles whose fp32 accumulator would not fit in registers (it spills: far slower than any other
  candidate, and a compile that takes long),
- tiles larger than the problem (BLOCK_M past the queries, BLOCK_N past one split's keys), unless
  that leaves nothing, when the smallest tiles stay.

The tuning key is the query count, head dim, masks and split mode (plus the tensors' dtypes,
which Triton adds); not the key count, which grows while the KV cache fills and would re-tune
every chunk of a stream's warm-up. Where this Triton can (cache_results), results are cached on
disk, so a second process with the same shapes does not tune again.
"""

from __future__ import annotations

import functools
import inspect

import torch

try:  # Triton: the optional dev extra; only a tuned CUDA launch calls into this module
    import triton
    import triton.testing
except ImportError:
    triton = None

# (BLOCK_M, BLOCK_N, num_warps, num_stages)
TUNE_TILES = (
    (128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3),
    (64, 64, 4, 3), (64, 128, 4, 3), (64, 32, 4, 2),
)
TUNE_KEY = ["n_q", "HEAD_DIM", "SPLIT", "HAS_MEM_VALID", "HAS_CUR_VALID"]
# Timing of each candidate: the kernel runs for tens of microseconds, so a short window separates
# the tiles, and the first tuned launch (inside a stream's warm-up) stays well under a second.
TUNE_WARMUP_MS = 5
TUNE_REP_MS = 20
THREADS_PER_WARP = 32
MAX_ACC_REGS = 64        # fp32 accumulator registers per thread before the compiler spills (of 255)
MIN_TILE = 16            # tl.dot's smallest side: a tile is never pruned below it


def shared_bytes(block_m: int, block_n: int, stages: int, head_dim: int, elem_bytes: int) -> int:
    """Upper bound of the kernel's shared memory: q's tile and `stages` buffers of a K and a V tile."""
    return elem_bytes * head_dim * (block_m + 2 * stages * block_n)


def acc_regs(block_m: int, head_dim: int, warps: int) -> int:
    """fp32 registers per thread for the (BLOCK_M, HEAD_DIM) accumulator."""
    return block_m * head_dim // (warps * THREADS_PER_WARP)


def _pow2_at_least(n: int) -> int:
    return max(MIN_TILE, 1 << max(0, int(n) - 1).bit_length())


def fits(tile: tuple[int, int, int, int], *, n_q: int, keys_per_split: int, head_dim: int,
         elem_bytes: int, max_shared: int) -> bool:
    """Whether a (BLOCK_M, BLOCK_N, warps, stages) tile is worth compiling for this problem."""
    bm, bn, warps, stages = tile
    return (shared_bytes(bm, bn, stages, head_dim, elem_bytes) <= max_shared
            and acc_regs(bm, head_dim, warps) <= MAX_ACC_REGS
            and bm <= _pow2_at_least(n_q) and bn <= _pow2_at_least(keys_per_split))


def prune_tiles(tiles, *, n_q: int, keys_per_split: int, head_dim: int, elem_bytes: int,
                max_shared: int) -> list:
    """The tiles that fit; if none does (a tiny problem), the smallest that fit the hardware."""
    kw = dict(head_dim=head_dim, elem_bytes=elem_bytes, max_shared=max_shared)
    kept = [t for t in tiles if fits(t, n_q=n_q, keys_per_split=keys_per_split, **kw)]
    if kept:
        return kept
    hw = [t for t in tiles if fits(t, n_q=1 << 30, keys_per_split=1 << 30, **kw)] or list(tiles)
    smallest = min(t[0] * t[1] for t in hw)
    return [t for t in hw if t[0] * t[1] == smallest]


@functools.lru_cache(maxsize=None)
def max_shared_memory(device_index: int) -> int:
    """Shared memory a block may opt into on this GPU (bytes)."""
    return int(triton.runtime.driver.active.utils.get_device_properties(device_index)["max_shared_mem"])


def _tile_of(config) -> tuple[int, int, int, int]:
    return config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"], config.num_warps, config.num_stages


def early_config_prune(configs, named_args: dict, **constexprs) -> list:
    """triton.autotune's hook: the configs of TUNE_TILES that fit this launch (see the docstring).
    Reads only positional arguments: older Triton passes no constexprs to the hook."""
    q = named_args["Q"]
    by_tile = {_tile_of(c): c for c in configs}
    kept = prune_tiles(list(by_tile), n_q=named_args["n_q"], keys_per_split=named_args["keys_per_split"],
                       head_dim=q.shape[-1], elem_bytes=q.element_size(),
                       max_shared=max_shared_memory(q.device.index or 0))
    return [by_tile[t] for t in kept]


def autotune_spec() -> dict:
    """triton.autotune's keyword arguments for the attention kernel (needs Triton)."""
    configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
               for bm, bn, w, s in TUNE_TILES]
    def bench(kernel_call, quantiles):
        return triton.testing.do_bench(kernel_call, warmup=TUNE_WARMUP_MS, rep=TUNE_REP_MS, quantiles=quantiles)

    spec = dict(configs=configs, key=TUNE_KEY, prune_configs_by={"early_config_prune": early_config_prune})
    # The timing and disk-cache options came in over Triton 3.x (the dev extra allows 3.0): pass
    # what this Triton takes, the older warmup / rep where do_bench is not there yet.
    takes = inspect.signature(triton.autotune).parameters
    if "do_bench" in takes:
        spec["do_bench"] = bench
    elif "warmup" in takes:
        spec.update(warmup=TUNE_WARMUP_MS, rep=TUNE_REP_MS)
    if "cache_results" in takes:
        spec["cache_results"] = True
    return spec


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (programs resident at once, about one per SM)."""
    device = torch.device(device)
    return _sm_count(torch.cuda.current_device() if device.index is None else device.index)


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return int(torch.cuda.get_device_properties(index).multi_processor_count)
