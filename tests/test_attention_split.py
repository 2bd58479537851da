"""The attention kernel split over the keys (kernels/attention_split.py), its merge, the split
policy and the autotuner's pruning (kernels/attention_tune.py).

On CPU the split kernel and the merge run in Triton's interpreter with 16-wide tiles, so a few
dozen keys already make several splits, some of them cutting through a segment or a tile. `gpu`
tests hold every compiled path (unsplit / split, forced tiles / autotuned, fp16 / bf16 / fp32)
to an fp32 reference at the streamer's shapes.
"""

from types import SimpleNamespace

import pytest
import torch
from test_kernels import DEVICE, TOL, as_fp32, rand, segments, triton_here  # noqa: F401 (fixture)

from kernels import KernelError
from kernels import attention_tune as tune
from kernels.attention import _segmented_attention_kernel, default_config, planned_splits, segmented_attention
from kernels.attention_reference import segmented_attention_reference
from kernels.attention_split import (KEY_ALIGN, MAX_SPLITS, MIN_KEYS_PER_SPLIT, choose_splits, combine_launch,
                                     combine_reference, split_buffers, split_keys)
from kernels.jit import LazyKernel

H100_SMS = 132
N_KEYS = 23 + 19 + 37          # segments()'s default: cache_len + memory + current


def kernel_vs_reference(q, k, v, kw, splits):
    out = segmented_attention(q, k, v, splits=splits, **kw)
    args32, kw32 = as_fp32(q, k, v, **kw)
    return out, segmented_attention_reference(*args32, **kw32)


# ---- the split kernel against the reference (interpreter on CPU) -------------------------------

@pytest.mark.parametrize("splits", [2, 3, 4, 5, MAX_SPLITS])
def test_split_matches_reference_with_masks(triton_here, splits):
    """Runs of 16-aligned keys cut through the cache / memory / current boundaries (23, 42)."""
    q, k, v, kw = segments(torch.Generator().manual_seed(10))
    out, ref = kernel_vs_reference(q, k, v, kw, splits)
    assert (out - ref).abs().max() < TOL[torch.float32]
    assert torch.allclose(out, segmented_attention(q, k, v, splits=1, **kw), atol=1e-6)


@pytest.mark.parametrize("case", ["empty memory", "no cache", "memory all invalid", "nothing visible",
                                  "uneven last split", "padding rows see only themselves"])
def test_split_edge_cases(triton_here, case):
    g = torch.Generator().manual_seed(11)
    q, k, v, kw = segments(g)
    splits = 3
    if case == "empty memory":
        kw.update(mem_k=kw["mem_k"][:, :, :0], mem_v=kw["mem_v"][:, :, :0], mem_valid=None)
    elif case == "no cache":
        kw.update(cache_k=None, cache_v=None, cache_len=None)
    elif case == "memory all invalid":     # the middle split sees only invalid memory keys for some rows
        kw["mem_valid"] = torch.zeros_like(kw["mem_valid"])
    elif case == "nothing visible":        # every split of every row is empty: rows stay zero
        k = v = None
        kw.update(cache_len=0, cur_valid=None, mem_valid=torch.zeros_like(kw["mem_valid"]))
        splits = 2
    elif case == "uneven last split":      # 79 keys in runs of 32: 32, 32, 15 (tile cut short)
        assert split_keys(N_KEYS, 3, 16) == (32, 3)
    elif case == "padding rows see only themselves":
        kw.update(cache_len=0, mem_valid=torch.zeros_like(kw["mem_valid"]),
                  cur_valid=torch.zeros_like(kw["cur_valid"]))
    out, ref = kernel_vs_reference(q, k, v, kw, splits)
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() < TOL[torch.float32]
    if case == "nothing visible":
        assert not out.any()
    if case == "padding rows see only themselves":
        assert torch.allclose(out, v, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_split_half_precision(triton_here, dtype):
    q, k, v, kw = segments(torch.Generator().manual_seed(12), dtype=dtype)
    out, ref = kernel_vs_reference(q, k, v, kw, 4)
    assert out.dtype == dtype and (out.float() - ref).abs().max() < TOL[dtype]


# ---- the merge ----------------------------------------------------------------------------------

def partial_states(logits, vals, cuts):
    """Each run of keys' (acc, m, denom) in base 2, from natural-log logits (B, H, N, K)."""
    acc, m, den = [], [], []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        s2 = logits[..., lo:hi] / torch.log(torch.tensor(2.0, dtype=logits.dtype))
        top = s2.amax(-1) if hi > lo else torch.full(logits.shape[:-1], float("-inf"))
        shift = torch.where(top == float("-inf"), torch.zeros_like(top), top)
        p = torch.exp2(s2 - shift[..., None])
        acc.append(p @ vals[:, :, lo:hi])
        m.append(top)
        den.append(p.sum(-1))
    return torch.stack(acc).float(), torch.stack(m).float(), torch.stack(den).float()


def test_combine_reference_is_the_softmax():
    g = torch.Generator().manual_seed(13)
    logits = torch.randn(2, 3, 7, 50, generator=g, dtype=torch.float64) * 4
    logits[:, :, 2, :] = float("-inf")                               # a row that sees nothing
    logits[:, :, 3, 10:30] = float("-inf")                           # a split that sees nothing
    vals = torch.randn(2, 3, 50, 16, generator=g, dtype=torch.float64)
    out = combine_reference(*partial_states(logits, vals, [0, 10, 30, 30, 50]))   # one split empty
    want = torch.nan_to_num(torch.softmax(logits, -1)) @ vals
    assert torch.allclose(out.double(), want, atol=1e-5)
    assert not out[:, :, 2].any()


def test_combine_kernel_equals_reference(triton_here):
    g = torch.Generator().manual_seed(14)
    logits = torch.randn(1, 2, 37, 64, generator=g, dtype=torch.float64) * 3
    logits[:, :, :5, :] = float("-inf")
    logits[:, 1, 9, 16:48] = float("-inf")
    vals = torch.randn(1, 2, 64, 32, generator=g, dtype=torch.float64)
    acc, m, den = (t.to(DEVICE) for t in partial_states(logits, vals, [0, 16, 32, 48, 64]))
    out = torch.empty(1, 2, 37, 32, device=DEVICE)
    combine_launch(acc, m, den, out, interpreted=DEVICE.type == "cpu").run()
    assert (out - combine_reference(acc, m, den)).abs().max() < 1e-5
    assert not out[:, :, :5].any()


def test_combine_checks_its_states():
    acc, m, den = split_buffers(torch.zeros(1, 2, 5, 16), 3)
    with pytest.raises(KernelError, match="do not match"):
        combine_launch(acc, m[:2], den, torch.zeros(1, 2, 5, 16), interpreted=True)


# ---- the split policy ---------------------------------------------------------------------------

def test_choose_splits_fills_a_big_gpu_only_when_the_grid_is_small():
    tiny_chunk = 8 * 4                        # cdiv(960, 128) x 4 heads
    base_chunk = 30 * 12                      # cdiv(3840, 128) x 12 heads
    assert choose_splits(tiny_chunk, 5040, H100_SMS) > 4
    assert choose_splits(base_chunk, 20160, H100_SMS) == 1
    assert choose_splits(tiny_chunk, MIN_KEYS_PER_SPLIT, H100_SMS) == 1      # too few keys to cut
    assert choose_splits(1, 10 ** 6, H100_SMS) == MAX_SPLITS
    assert choose_splits(2, 3 * MIN_KEYS_PER_SPLIT, H100_SMS) == 3


def test_split_keys_aligns_runs_and_never_leaves_an_empty_split():
    assert split_keys(5040, 9, KEY_ALIGN) == (640, 8)
    assert split_keys(79, 16, 16) == (16, 5)
    assert split_keys(100, 1, 16) == (112, 1) and split_keys(0, 4, 16) == (0, 1) and split_keys(20, 4, 16) == (16, 2)
    for n, s in [(5040, 9), (4080, 16), (1000, 3)]:
        per, got = split_keys(n, s, KEY_ALIGN)
        assert per % KEY_ALIGN == 0 and (got - 1) * per < n <= got * per
    with pytest.raises(KernelError, match="splits=0"):
        split_keys(10, 0, 16)


def test_interpreter_splits_only_when_asked():
    q = torch.zeros(1, 4, 960, 64)
    assert planned_splits(q, 5040, None, None, interpreted=True) == (5040, 1)
    assert planned_splits(q, 5040, None, 4, interpreted=True) == (1264, 4)


# ---- autotuning's pruning -----------------------------------------------------------------------

def test_prune_drops_tiles_that_do_not_fit():
    kw = dict(head_dim=128, elem_bytes=2, max_shared=tune.shared_bytes(64, 64, 3, 128, 2))
    kept = tune.prune_tiles(tune.TUNE_TILES, n_q=4096, keys_per_split=4096, **kw)
    assert kept and all(tune.shared_bytes(bm, bn, st, 128, 2) <= kw["max_shared"] for bm, bn, _, st in kept)
    assert all(tune.acc_regs(bm, 128, w) <= tune.MAX_ACC_REGS for bm, _, w, _ in kept)
    small = tune.prune_tiles(tune.TUNE_TILES, n_q=40, keys_per_split=40, **kw)
    assert small and all(bm <= 64 and bn <= 64 for bm, bn, _, _ in small)
    tiny = tune.prune_tiles(tune.TUNE_TILES, n_q=1, keys_per_split=1, **kw)       # nothing is small enough
    assert tiny and len({t[0] * t[1] for t in tiny}) == 1


def test_early_config_prune_reads_the_launch(monkeypatch):
    monkeypatch.setattr(tune, "max_shared_memory", lambda index: 232448)   # an H100's opt-in limit
    configs = [SimpleNamespace(kwargs={"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
               for bm, bn, w, s in tune.TUNE_TILES]
    q = torch.zeros(1, 4, 240, 64, dtype=torch.bfloat16)
    kept = tune.early_config_prune(configs, {"Q": q, "n_q": 240, "keys_per_split": 64})
    assert kept and set(map(id, kept)) < set(map(id, configs))
    assert all(c.kwargs["BLOCK_N"] <= 64 for c in kept)


def test_autotune_wraps_the_kernel(monkeypatch):
    """triton.autotune accepts the spec: its key names are the kernel's arguments (built, not run)."""
    pytest.importorskip("triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    spec = tune.autotune_spec()
    assert len(spec["configs"]) == len(tune.TUNE_TILES) and spec["key"] == tune.TUNE_KEY
    fresh = LazyKernel(_segmented_attention_kernel.fn, tune=tune.autotune_spec)
    assert set(tune.TUNE_KEY) <= set(fresh.tuned.arg_names)


def test_a_kernel_without_tuning_says_so():
    with pytest.raises(KernelError, match="no autotuning configs"):
        LazyKernel(lambda: None).tuned


# ---- compiled paths, bf16 / fp16 against fp32 (CUDA only) ------------------------------------------

GPU_PATHS = {"unsplit tuned": dict(splits=1), "auto": dict(), "split tuned": dict(splits=6),
             "unsplit forced tiles": dict(splits=1, forced=True), "split forced tiles": dict(splits=6, forced=True)}
FORCED = [p for p in GPU_PATHS if GPU_PATHS[p].get("forced")]
# (head dim, queries, cache, memory, memory validity, current validity): the tiny chunk and the
# base memory pass. Each tuned case compiles every candidate tile, so the matrix stays small:
# bf16 (what the streamer serves) on every path, fp16 and fp32 on the forced tiles only.
TINY_CHUNK = (64, 960, 3840, 240, True, False)
BASE_MEMORY_PASS = (128, 960, 15360, 0, False, True)
GPU_CASES = ([(torch.bfloat16, path, shape) for shape in (TINY_CHUNK, BASE_MEMORY_PASS) for path in GPU_PATHS]
             + [(dtype, path, TINY_CHUNK) for dtype in (torch.float16, torch.float32) for path in FORCED])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, path, shape", GPU_CASES)
def test_gpu_every_path_against_fp32(dtype, path, shape):
    from kernels.bench import attention_inputs
    d, nq, n_cache, n_mem, mem_valid, cur_valid = shape
    opts = dict(GPU_PATHS[path])
    config = default_config(dtype, d, False) if opts.pop("forced", False) else None
    q, kw = attention_inputs(4, d, nq, n_cache, n_mem, nq, cur_valid, dtype, DEVICE, mem_valid=mem_valid)
    out = segmented_attention(q, **kw, config=config, **opts)
    ref = segmented_attention_reference(*as_fp32(q)[0], **as_fp32(**kw)[1])
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < TOL[dtype]


@pytest.mark.gpu
def test_gpu_tiny_chunk_is_split_and_base_chunk_is_not():
    q = torch.zeros(1, 4, 960, 64, device=DEVICE, dtype=torch.bfloat16)
    assert planned_splits(q, 5040, None, None, interpreted=False)[1] > 1
    q = torch.zeros(1, 12, 3840, 128, device=DEVICE, dtype=torch.bfloat16)
    assert planned_splits(q, 20160, None, None, interpreted=False)[1] == 1


@pytest.mark.gpu
def test_gpu_split_merge_in_bf16_equals_fp32_merge():
    g = torch.Generator().manual_seed(15)
    S, shape = 5, (1, 4, 960, 64)
    acc = rand(g, S, *shape)
    m = rand(g, S, *shape[:3]) * 4
    den = torch.rand(S, *shape[:3], generator=g).to(DEVICE) + 0.5
    out = torch.empty(shape, device=DEVICE, dtype=torch.bfloat16)
    combine_launch(acc, m, den, out, interpreted=False).run()
    assert (out.float() - combine_reference(acc, m, den)).abs().max() < TOL[torch.bfloat16]
