"""The client's own colour memory, for sources that keep none (the world renderer, a plain source).

Every source gets a memory the player can see (minimap), edit and save. A source with a memory
of its own says so (sources.capabilities.HasMemory) and the client uses that one; for any
other the client fills a colour memory (memory/colour.py) from the frames it shows.
"""

from __future__ import annotations

import torch

from worldplay.devices import torch_threads
from worldplay.errors import WorldplayError
from worldplay.frame import Frame
from worldplay.memory import MosaicMemory
from worldplay.memory.colour import MEMORY_THREADS, ColourMemoryConfig, colour_memory_config, memory_intrinsics


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
        with torch_threads(MEMORY_THREADS):
            return mem.import_view(rgb, frame.depth.detach().cpu(), frame.c2w.detach().cpu(), self.K,
                                   float(frame.t), dynamic=frame.dynamic.detach().cpu())
