"""`python -m kernels.bench`: time the Triton kernels against torch; prints ms and TFLOP/s.

On CUDA, at the streamer's shapes (batch 1, a full KV cache of sink + 3 window chunks):
- attention: the Triton kernel (segments read in place) vs torch SDPA over keys concatenated
  beforehand (the fused flash path, concatenation not timed) vs the torch reference path
  (concatenate + SDPA, what runs without Triton: kernels/attention_reference.py), in bf16; then a
  sweep of the kernel's tile configs at the largest shape, to retune CUDA_CONFIG_HALF for a new GPU.
On CPU it says it needs CUDA, runs the kernel once at tiny shapes in Triton's interpreter against
its reference (a smoke test, no timing) and exits 0.

Numbers come from this command on the machine at hand, never from tests.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

from kernels import triton_available
from kernels.attention import segmented_attention
from kernels.attention_reference import segmented_attention_reference

try:  # Triton: the optional dev extra; main() says so when it is missing
    from triton.testing import do_bench
except ImportError:
    do_bench = None

# (name, heads, head_dim, queries, cache tokens, memory tokens, current tokens, current validity)
ATTENTION_SHAPES = (
    ("tiny chunk", 4, 64, 960, 3840, 240, 960, False),       # 240 tokens/frame x 4 frames
    ("tiny memory pass", 4, 64, 240, 3840, 0, 240, True),     # memory tokens over [cache | memory]
    ("base chunk", 12, 128, 3840, 15360, 960, 3840, False),  # 960 tokens/frame x 4 frames
    ("base memory pass", 12, 128, 960, 15360, 0, 960, True),
)
SWEEP = [(bm, bn, w, s) for bm in (64, 128) for bn in (32, 64, 128) for w in (4, 8) for s in (2, 3, 4)]
TFLOP = 1e12
INTERPRET_SHAPE = (1, 2, 24, 32, 20, 12)                      # (B, H, Nq, D, cache, memory) for the CPU smoke run


def _ms(fn) -> float:
    return float(do_bench(fn))


def attention_inputs(heads, d, nq, n_cache, n_mem, n_cur, cur_valid, dtype, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, device=device, dtype=torch.float32).to(dtype)

    q = r(1, heads, nq, d)
    kw = dict(k=r(1, heads, n_cur, d), v=r(1, heads, n_cur, d))
    if n_cache:
        kw.update(cache_k=r(1, heads, n_cache, d), cache_v=r(1, heads, n_cache, d))
    if n_mem:
        kw.update(mem_k=r(1, heads, n_mem, d), mem_v=r(1, heads, n_mem, d))
    if cur_valid:
        kw["cur_valid"] = torch.rand(1, n_cur, generator=g, device=device) > 0.25
    return q, kw


def bench_attention(device: torch.device, sweep: bool) -> None:
    print(f"{'attention (bf16)':<20} {'keys':>6} {'triton ms':>10} {'TFLOP/s':>8} {'sdpa ms':>8} "
          f"{'TFLOP/s':>8} {'ref ms':>8} {'max err':>8}")
    for name, h, d, nq, nc, nm, ncur, cv in ATTENTION_SHAPES:
        q, kw = attention_inputs(h, d, nq, nc, nm, ncur, cv, torch.bfloat16, device)
        keys = torch.cat([t for t in (kw.get("cache_k"), kw.get("mem_k"), kw["k"]) if t is not None], 2)
        vals = torch.cat([t for t in (kw.get("cache_v"), kw.get("mem_v"), kw["v"]) if t is not None], 2)
        flops = 4 * h * nq * keys.shape[2] * d
        t_tri = _ms(lambda: segmented_attention(q, **kw))
        t_sdpa = _ms(lambda: F.scaled_dot_product_attention(q, keys, vals))   # unmasked: its fast path
        t_ref = _ms(lambda: segmented_attention_reference(q, **kw))
        err = (segmented_attention(q, **kw).float() - segmented_attention_reference(q, **kw).float()).abs().max()
        print(f"{name:<20} {keys.shape[2]:>6} {t_tri:>10.3f} {flops / t_tri / 1e-3 / TFLOP:>8.1f} {t_sdpa:>8.3f} "
              f"{flops / t_sdpa / 1e-3 / TFLOP:>8.1f} {t_ref:>8.3f} {float(err):>8.4f}")
    if not sweep:
        return
    name, h, d, nq, nc, nm, ncur, cv = ATTENTION_SHAPES[2]
    q, kw = attention_inputs(h, d, nq, nc, nm, ncur, cv, torch.bfloat16, device)
    flops = 4 * h * nq * (nc + nm + ncur) * d
    print(f"sweep at {name}: (BLOCK_M, BLOCK_N, warps, stages) -> ms, TFLOP/s")
    for cfg in SWEEP:
        try:
            t = _ms(lambda: segmented_attention(q, **kw, config=cfg))
        except Exception as e:  # a config can run out of shared memory on this GPU: say so, go on
            print(f"  {cfg}: failed ({type(e).__name__})")
            continue
        print(f"  {cfg}: {t:.3f} ms  {flops / t / 1e-3 / TFLOP:.1f}")


def interpreter_smoke() -> None:
    """One launch of the kernel at tiny shapes in Triton's interpreter, checked against torch."""
    _, H, nq, d, nc, nm = INTERPRET_SHAPE
    cpu = torch.device("cpu")
    q, kw = attention_inputs(H, d, nq, nc, nm, nq, True, torch.float32, cpu)
    err = (segmented_attention(q, **kw) - segmented_attention_reference(q, **kw)).abs().max()
    print(f"interpreter: attention {tuple(q.shape)} max |triton - torch| = {float(err):.2e}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.splitlines()[0])
    p.add_argument("--sweep", action="store_true", help="also time every attention tile config")
    args = p.parse_args(argv)
    if not triton_available():
        print("kernels.bench: Triton is not installed (pip install triton); nothing to time")
        return 0
    if not torch.cuda.is_available():
        print("kernels.bench: timing needs a CUDA GPU; running each kernel once in Triton's CPU interpreter instead")
        os.environ["TRITON_INTERPRET"] = "1"   # before the first launch decorates the kernel (kernels/jit.py)
        interpreter_smoke()
        return 0
    device = torch.device("cuda")
    print(f"kernels.bench on {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    bench_attention(device, args.sweep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
