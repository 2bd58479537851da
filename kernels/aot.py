"""Compile the kernels for NVIDIA GPUs ahead of time, on a machine that has none.

The tests run the kernels in Triton's interpreter, which is lenient where the compiler is not
(types, constexpr control flow, shared memory). `python -m kernels.aot` takes the launches the
launchers really prepare (same argument types, same tile configs) and builds them through
Triton's compiler and its bundled ptxas for each target, so a kernel that would not compile on a
GPU fails here, on CPU. Needs Triton with its CUDA backend, no GPU, and TRITON_INTERPRET unset
(the interpreter replaces the compiler in that process).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import triton  # this tool drives Triton's compiler: it needs Triton with its CUDA backend
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import mangle_type

from kernels import KernelError
from kernels.attention import attention_launches, default_config
from kernels.attention_tune import TUNE_TILES, prune_tiles, shared_bytes
from kernels.jit import Launch

TARGETS = {"sm_80": 80, "sm_90": 90}   # Ampere (A100) and Hopper (H100 / H200)
# Shared memory a block may opt into (bytes): what the autotuner's pruning checks on the GPU itself.
TARGET_SHARED = {80: 166912, 90: 232448}
WARP_SIZE = 32
EXAMPLE_TOKENS = 48                     # sizes only shape the arguments' types, never the code
EXAMPLE_SPLITS = 2
TUNE_HEAD_DIMS = (64, 128)              # the tiny and base presets' head dims


def _tensor(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.zeros(*shape, dtype=dtype)


def _launches(dtype: torch.dtype, d: int, masks: bool, splits: int, config=None) -> list[Launch]:
    n = EXAMPLE_TOKENS
    q, k = _tensor(1, 2, n, d, dtype=dtype), _tensor(1, 2, n, d, dtype=dtype)
    valid = torch.ones(1, n, dtype=torch.bool)
    launches, _ = attention_launches(q, k, k, cache_k=k, cache_v=k, cache_len=n, mem_k=k, mem_v=k,
                                     mem_valid=valid if masks else None, cur_valid=None if masks else valid,
                                     scale=None, config=config or default_config(dtype, d, False),
                                     splits=splits, interpreted=False)
    return launches


def attention_cases(full: bool) -> list[tuple[str, Launch]]:
    """Launches for each dtype x head dim (full) or one per dtype, with the masks varied; then the
    split path (its attention variant and the merge) once."""
    cases = []
    dims = (16, 32, 64, 128) if full else None
    picks = [(torch.bfloat16, 128), (torch.float16, 64), (torch.float32, 32)]
    combos = [(dt, d) for dt in (torch.bfloat16, torch.float16, torch.float32) for d in dims] if full else picks
    for i, (dtype, d) in enumerate(combos):
        masks = i % 2 == 0                   # alternate: memory validity / current validity
        (launch,) = _launches(dtype, d, masks, 1)
        cases.append((f"attention {str(dtype).replace('torch.', '')} D={d}", launch))
    split, merge = _launches(torch.bfloat16, 64, True, EXAMPLE_SPLITS)
    cases += [("attention split bf16 D=64", split), ("split merge bf16 D=64", merge)]
    return cases


def tune_cases(capability: int) -> list[tuple[str, Launch, int]]:
    """Every autotuning tile that the pruning keeps on this target, bf16, with its shared estimate."""
    cases = []
    for d in TUNE_HEAD_DIMS:
        big = 1 << 20                        # a problem larger than any tile: only hardware limits prune
        for tile in prune_tiles(TUNE_TILES, n_q=big, keys_per_split=big, head_dim=d, elem_bytes=2,
                                max_shared=TARGET_SHARED[capability]):
            (launch,) = _launches(torch.bfloat16, d, True, 1, config=tile)
            cases.append((f"tune bf16 D={d} {tile}", launch, shared_bytes(tile[0], tile[1], tile[3], d, 2)))
    return cases


def compile_launch(launch: Launch, capability: int):
    """Build one prepared launch for sm_<capability>; returns Triton's compiled kernel."""
    fn = launch.kernel.kernel
    if launch.kernel.interpreted:
        raise KernelError("kernels.aot: TRITON_INTERPRET is set, so Triton interprets instead of compiling; "
                          "unset it for this command")
    names = fn.arg_names
    signature = {name: mangle_type(arg) for name, arg in zip(names, launch.args)}
    signature.update({name: "constexpr" for name in launch.constexprs})
    missing = [n for n in names if n not in signature]
    if missing:
        raise KernelError(f"kernels.aot: {fn.__name__} got no value for {missing}")
    src = ASTSource(fn, signature, launch.constexprs)
    return triton.compile(src, target=GPUTarget("cuda", capability, WARP_SIZE), options=launch.options)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels.aot", description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=sorted(TARGETS), action="append",
                   help="GPU architecture(s) to build for (default: all)")
    p.add_argument("--full", action="store_true", help="every attention dtype x head dim, not one per dtype")
    p.add_argument("--tune", action="store_true",
                   help="also every autotuning tile the pruning keeps (bf16, D=64 and 128), shared memory "
                        "against the pruning's estimate")
    args = p.parse_args(argv)
    cases = [(name, launch, None) for name, launch in attention_cases(args.full)]
    failed = 0
    for target in args.target or sorted(TARGETS):
        todo = cases + (tune_cases(TARGETS[target]) if args.tune else [])
        for name, launch, estimate in todo:
            start = time.perf_counter()
            try:
                kernel = compile_launch(launch, TARGETS[target])
            except Exception as e:  # report every kernel, then fail
                failed += 1
                print(f"FAIL {target} {name}: {type(e).__name__}: {str(e).splitlines()[-1] if str(e) else ''}")
                continue
            est = f"  (estimate {estimate:>6} B)" if estimate is not None else ""
            print(f"ok   {target} {name:<36} shared {kernel.metadata.shared:>6} B{est}  "
                  f"{time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
