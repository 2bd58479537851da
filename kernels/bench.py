"""`python -m kernels.bench`: time the Triton kernels against torch; prints ms and TFLOP/s.

On CUDA, at the streamer's shapes (batch 1, a full KV cache of sink + 3 window chunks), in bf16:
- attention: the Triton kernel with the launcher's own choice of key splits (autotuned tiles),
  the same kernel unsplit, torch SDPA over keys concatenated beforehand (the fused flash path,
  concatenation not timed), and the torch reference path (concatenate + SDPA with the masks, what
  runs without Triton: kernels/attention_reference.py); with each kernel's error against fp32.
- --sweep: also every forced tile config at the base chunk (to retune CUDA_CONFIG_HALF for a new
  GPU) and every split count at each shape (to retune attention_split.TARGET_PROGRAMS_PER_SM).
--json PATH writes the same numbers (and the machine) as JSON.
On CPU it says it needs CUDA, runs the kernel once at tiny shapes in Triton's interpreter against
its reference (a smoke test, no timing) and exits 0.

Numbers come from this command on the machine at hand, never from tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from kernels import triton_available
from kernels.attention import planned_splits, segmented_attention
from kernels.attention_reference import segmented_attention_reference

try:  # Triton: the optional dev extra; main() says so when it is missing
    import triton
    from triton.testing import do_bench
except ImportError:
    triton = do_bench = None

# (name, heads, head_dim, queries, cache tokens, memory tokens, current tokens, memory validity,
#  current validity): what worldplay's DiT passes (the chunk pass masks padded memory tokens,
#  the memory pass marks them as invalid current tokens)
ATTENTION_SHAPES = (
    ("tiny chunk", 4, 64, 960, 3840, 240, 960, True, False),       # 240 tokens/frame x 4 frames
    ("tiny memory pass", 4, 64, 240, 3840, 0, 240, False, True),    # memory tokens over [cache | memory]
    ("base chunk", 12, 128, 3840, 15360, 960, 3840, True, False),  # 960 tokens/frame x 4 frames
    ("base memory pass", 12, 128, 960, 15360, 0, 960, False, True),
)
SWEEP = [(bm, bn, w, s) for bm in (64, 128) for bn in (32, 64, 128) for w in (4, 8) for s in (2, 3, 4)]
SPLIT_SWEEP = (1, 2, 4, 8, 16)
TFLOP = 1e12
VALID_FRACTION = 0.75                                         # random masks keep about this share
INTERPRET_SHAPE = (1, 2, 24, 32, 20, 12)                      # (B, H, Nq, D, cache, memory) for the CPU smoke run
INTERPRET_SPLITS = 3                                          # the smoke run also takes the split path


def _ms(fn) -> float:
    return float(do_bench(fn))


def attention_inputs(heads, d, nq, n_cache, n_mem, n_cur, cur_valid, dtype, device, seed=0, mem_valid=False):
    g = torch.Generator(device=device).manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, device=device, dtype=torch.float32).to(dtype)

    q = r(1, heads, nq, d)
    kw = dict(k=r(1, heads, n_cur, d), v=r(1, heads, n_cur, d))
    if n_cache:
        kw.update(cache_k=r(1, heads, n_cache, d), cache_v=r(1, heads, n_cache, d))
    if n_mem:
        kw.update(mem_k=r(1, heads, n_mem, d), mem_v=r(1, heads, n_mem, d))
        if mem_valid:
            kw["mem_valid"] = torch.rand(1, n_mem, generator=g, device=device) < VALID_FRACTION
    if cur_valid:
        kw["cur_valid"] = torch.rand(1, n_cur, generator=g, device=device) < VALID_FRACTION
    return q, kw


def _fp32(kw: dict) -> dict:
    return {n: t.float() if t.is_floating_point() else t for n, t in kw.items()}


def _tflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e-3) / TFLOP


def bench_shape(shape: tuple, device: torch.device, dtype: torch.dtype, split_sweep: bool) -> dict:
    """One row: the kernel split as the launcher chooses, unsplit, SDPA and the torch path."""
    name, h, d, nq, nc, nm, ncur, mv, cv = shape
    q, kw = attention_inputs(h, d, nq, nc, nm, ncur, cv, dtype, device, mem_valid=mv)
    keys = torch.cat([t for t in (kw.get("cache_k"), kw.get("mem_k"), kw["k"]) if t is not None], 2)
    vals = torch.cat([t for t in (kw.get("cache_v"), kw.get("mem_v"), kw["v"]) if t is not None], 2)
    n_keys = keys.shape[2]
    flops = 4 * h * nq * n_keys * d
    ref = segmented_attention_reference(q.float(), **_fp32(kw))
    ms = {"triton_auto": _ms(lambda: segmented_attention(q, **kw)),
          "triton_unsplit": _ms(lambda: segmented_attention(q, **kw, splits=1)),
          "sdpa": _ms(lambda: F.scaled_dot_product_attention(q, keys, vals)),   # unmasked: its fast path
          "torch_path": _ms(lambda: segmented_attention_reference(q, **kw))}
    err = {"triton_auto": segmented_attention(q, **kw), "triton_unsplit": segmented_attention(q, **kw, splits=1),
           "torch_path": segmented_attention_reference(q, **kw)}
    row = {"shape": name, "heads": h, "head_dim": d, "queries": nq, "keys": n_keys,
           "splits": planned_splits(q, n_keys, None, None, interpreted=False)[1], "ms": ms,
           "tflops": {k: _tflops(flops, t) for k, t in ms.items()},
           "max_err_vs_fp32": {k: float((o.float() - ref).abs().max()) for k, o in err.items()},
           "speedup_auto_vs_unsplit": ms["triton_unsplit"] / ms["triton_auto"],
           "speedup_auto_vs_sdpa": ms["sdpa"] / ms["triton_auto"]}
    if split_sweep:
        row["split_sweep_ms"] = {str(s): _ms(lambda: segmented_attention(q, **kw, splits=s)) for s in SPLIT_SWEEP}
    return row


def print_rows(rows: list[dict]) -> None:
    print(f"{'attention (bf16)':<18} {'keys':>6} {'splits':>6} {'auto ms':>8} {'TFLOP/s':>8} {'unsplit':>8} "
          f"{'sdpa ms':>8} {'TFLOP/s':>8} {'torch ms':>9} {'x unsplit':>9} {'x sdpa':>7} {'max err':>8}")
    for r in rows:
        ms, tf = r["ms"], r["tflops"]
        print(f"{r['shape']:<18} {r['keys']:>6} {r['splits']:>6} {ms['triton_auto']:>8.3f} "
              f"{tf['triton_auto']:>8.1f} {ms['triton_unsplit']:>8.3f} {ms['sdpa']:>8.3f} {tf['sdpa']:>8.1f} "
              f"{ms['torch_path']:>9.3f} {r['speedup_auto_vs_unsplit']:>9.2f} {r['speedup_auto_vs_sdpa']:>7.2f} "
              f"{r['max_err_vs_fp32']['triton_auto']:>8.4f}")
        if "split_sweep_ms" in r:
            print("  splits -> ms: " + "  ".join(f"{s}: {t:.3f}" for s, t in r["split_sweep_ms"].items()))


def tile_sweep(device: torch.device) -> list[dict]:
    name, h, d, nq, nc, nm, ncur, mv, cv = ATTENTION_SHAPES[2]
    q, kw = attention_inputs(h, d, nq, nc, nm, ncur, cv, torch.bfloat16, device, mem_valid=mv)
    flops = 4 * h * nq * (nc + nm + ncur) * d
    print(f"sweep at {name}: (BLOCK_M, BLOCK_N, warps, stages) -> ms, TFLOP/s")
    out = []
    for cfg in SWEEP:
        try:
            t = _ms(lambda: segmented_attention(q, **kw, config=cfg, splits=1))
        except Exception as e:  # a config can run out of shared memory on this GPU: say so, go on
            print(f"  {cfg}: failed ({type(e).__name__})")
            out.append({"config": list(cfg), "error": type(e).__name__})
            continue
        print(f"  {cfg}: {t:.3f} ms  {_tflops(flops, t):.1f}")
        out.append({"config": list(cfg), "ms": t, "tflops": _tflops(flops, t)})
    return out


def interpreter_smoke() -> dict:
    """The kernel at tiny shapes in Triton's interpreter, unsplit and split, checked against torch."""
    _, H, nq, d, nc, nm = INTERPRET_SHAPE
    cpu = torch.device("cpu")
    q, kw = attention_inputs(H, d, nq, nc, nm, nq, True, torch.float32, cpu, mem_valid=True)
    ref = segmented_attention_reference(q, **kw)
    err = max(float((segmented_attention(q, **kw, splits=s) - ref).abs().max()) for s in (1, INTERPRET_SPLITS))
    print(f"interpreter: attention {tuple(q.shape)} max |triton - torch| = {err:.2e} "
          f"(unsplit and {INTERPRET_SPLITS} splits)")
    return {"interpreter_shape": list(q.shape), "interpreter_max_err": err}


def _write_json(path: str | None, res: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.splitlines()[0])
    p.add_argument("--sweep", action="store_true", help="also time every tile config and every split count")
    p.add_argument("--json", dest="json_path", metavar="PATH", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    res = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "triton": triton and triton.__version__}
    if not triton_available():
        print("kernels.bench: Triton is not installed (pip install triton); nothing to time")
        _write_json(args.json_path, res)
        return 0
    if not torch.cuda.is_available():
        print("kernels.bench: timing needs a CUDA GPU; running each kernel once in Triton's CPU interpreter instead")
        os.environ["TRITON_INTERPRET"] = "1"   # before the first launch decorates the kernel (kernels/jit.py)
        _write_json(args.json_path, {**res, **interpreter_smoke()})
        return 0
    device = torch.device("cuda")
    props = torch.cuda.get_device_properties(device)
    print(f"kernels.bench on {props.name} ({props.multi_processor_count} SMs), torch {torch.__version__}")
    res.update(gpu=props.name, sms=props.multi_processor_count, dtype="bfloat16")
    res["attention"] = [bench_shape(s, device, torch.bfloat16, args.sweep) for s in ATTENTION_SHAPES]
    print_rows(res["attention"])
    if args.sweep:
        res["tile_sweep"] = tile_sweep(device)
    _write_json(args.json_path, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
