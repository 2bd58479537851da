"""Where torch runs: the device a command asked for, and how many CPU threads an operation uses.

Every command and component that takes a `--device` resolves it here, so "auto", a CUDA device on
a machine without one, and a misspelt name mean the same and fail the same way everywhere.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import torch

from worldplay.errors import WorldplayError

AUTO = "auto"


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when torch sees a GPU, else cpu; any other name as torch spells it. A CUDA
    device on a machine without CUDA, or a name torch does not know, is one clear error."""
    if str(device) == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise WorldplayError(f"--device {device!r} is not a torch device; use cpu, cuda or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WorldplayError(f"--device {device} asked for, but this torch build sees no CUDA GPU; use --device cpu")
    return dev


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")   # /proc/cpuinfo flags of native bf16 dot products


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512 BF16 or AMX). Without it oneDNN
    emulates bf16 and float32 is faster. Read from /proc/cpuinfo; elsewhere False (float32)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def serving_dtype(device: str | torch.device) -> torch.dtype:
    """What a model runs in when nobody says: bf16 on CUDA (tensor cores) and on CPUs with native
    bf16 (the VAE's convolutions ~2x, the DiT ~1.1x faster here, at < 0.1 dB; README levers),
    else float32. Cameras and memory geometry stay float32 whatever this is (Streamer)."""
    if torch.device(device).type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads (None: as they are), then restore them.

    The renderer and the memory run many small tensor ops: on a busy 2-core CPU, thread
    hand-offs and OpenMP spin-waiting make them several times slower at 2 threads than at 1."""
    prev = torch.get_num_threads()
    change = bool(n) and n != prev
    if change:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(prev)
