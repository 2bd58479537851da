"""Where torch runs: the device a command asked for, and how many CPU threads an operation uses.

Every command and component that takes a `--device` resolves it here, so "auto", a CUDA device on
a machine without one, and a misspelt name mean the same and fail the same way everywhere.
"""

from __future__ import annotations

import contextlib
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
