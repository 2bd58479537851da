"""The client's colour memory: a MosaicMemory of pixel colours, and which memory the client edits.

Every source gets a memory the player can see (minimap), edit and save. A source that keeps
its own (the model streamer's latent memory, the memory-only source) exposes it as `memory`
(or `streamer.memory`) and the client uses that one; for any other source (the world renderer)
the client keeps a colour memory fed from the frames it shows. Colour memories store each
patch as sub x sub colours (rgb.py), on the same patch grid as the model's tokens, so the
memory-only view and the minimap have something to draw with no model at all.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import torch

from worldplay.camera import intrinsics
from worldplay.errors import WorldplayError
from worldplay.memory import MemoryConfig, MosaicMemory
from worldplay.memory.rgb import RGB
from worldplay.world.frame import Frame

TOKEN_COLS = 20   # the tiny model's token grid is 20 wide at 640 px: colour patches match it
MEMORY_THREADS = 1   # memory ops in the client are many small tensor ops: on a busy CPU, thread
                     # hand-offs made a 640x360 insert 10x slower with 2 threads than with 1


@dataclass(frozen=True)
class ColourMemoryConfig:
    sub: int = 4                  # 4x4 colours per patch: a recognisable mosaic at 48 numbers/entry
    capacity: int = 100_000       # ~23 MB; minutes of walking with dedup, oldest evicted past it
    insert_every: int = 2         # frames; lifting one 640x360 frame costs 8-14 ms on one CPU core,
                                  # so every 2nd frame keeps the memory's share of a frame under ~7 ms


@contextlib.contextmanager
def few_threads(n: int = MEMORY_THREADS) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads (as the renderer does), then restore."""
    prev = torch.get_num_threads()
    if prev != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if prev != n:
            torch.set_num_threads(prev)


def colour_memory_config(width: int, height: int, cfg: ColourMemoryConfig = ColourMemoryConfig()) -> MemoryConfig:
    """MemoryConfig for colour patches of a width x height frame: patch size nearest to the
    model's token patch (width / TOKEN_COLS) that divides the width into whole colours."""
    fits = [p for p in range(cfg.sub, width + 1, cfg.sub) if width % p == 0]
    if not fits:
        raise WorldplayError(f"colour memory: frame width {width} has no patch size that is a multiple "
                             f"of {cfg.sub} colours; use a width divisible by {cfg.sub} (e.g. 640)")
    patch = min(fits, key=lambda p: (abs(p - width / TOKEN_COLS), p))
    return MemoryConfig(feature_dim=RGB * cfg.sub * cfg.sub, capacity=cfg.capacity,
                        image_width=width, image_height=height, patch_px=patch)


def colour_sub(memory: MosaicMemory) -> int | None:
    """Colours per patch side if `memory` stores colours (3 * sub * sub features), else None."""
    d = memory.cfg.feature_dim
    sub = int(round(math.sqrt(d / RGB)))
    return sub if sub * sub * RGB == d else None


def source_memory(source) -> MosaicMemory | None:
    """The memory a source keeps itself, if any: `source.memory`, else `source.streamer.memory`."""
    mem = getattr(source, "memory", None)
    if mem is None:
        mem = getattr(getattr(source, "streamer", None), "memory", None)
    return mem if isinstance(mem, MosaicMemory) else None


def memory_intrinsics(memory: MosaicMemory, fov_x_deg: float) -> torch.Tensor:
    """K (3, 3) in the memory's own frame size (the frames it was filled from)."""
    return intrinsics(memory.cfg.image_width, memory.cfg.image_height, fov_x_deg)


class ColourFeeder:
    """Inserts every `insert_every`-th frame it is shown into a colour memory (unless frozen).

    The memory is made at the first frame, at that frame's size, so it always matches what the
    source renders, whatever ImageConfig the app was given.
    """

    def __init__(self, fov_x_deg: float, cfg: ColourMemoryConfig = ColourMemoryConfig()):
        if cfg.insert_every < 1:
            raise WorldplayError(f"ColourMemoryConfig.insert_every={cfg.insert_every} must be >= 1")
        self.cfg, self.fov = cfg, fov_x_deg
        self.memory: MosaicMemory | None = None
        self.K: torch.Tensor | None = None
        self.seen = 0                 # frames offered since the last reset
        self.frozen = False

    def reset(self) -> None:
        self.seen = 0
        if self.memory is not None:
            self.memory.reset()

    def ensure(self, width: int, height: int) -> MosaicMemory:
        m = self.memory
        if m is None or (m.cfg.image_width, m.cfg.image_height) != (width, height):
            self.memory = MosaicMemory(colour_memory_config(width, height, self.cfg))
            self.K = memory_intrinsics(self.memory, self.fov)
        return self.memory

    def offer(self, frame: Frame) -> int:
        """Maybe insert `frame`; returns how many patches went in."""
        due = self.seen % self.cfg.insert_every == 0
        self.seen += 1
        if self.frozen or not due:
            return 0
        rgb = frame.rgb.detach().cpu()
        mem = self.ensure(rgb.shape[1], rgb.shape[0])
        with few_threads():
            return mem.import_view(rgb, frame.depth.detach().cpu(), frame.c2w.detach().cpu(), self.K,
                                   float(frame.t), dynamic=frame.dynamic.detach().cpu())
