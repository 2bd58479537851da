"""The "memory only" source: shows what the mosaic memory alone reprojects into the current view.

It ray-casts the world (ground truth) to fill a colour memory, but never shows those frames:
each frame displayed is the memory splatted into the new pose *before* that pose's own frame
is inserted, which is exactly what the model is conditioned on when it generates that view.
So a place seen before comes back as its stored mosaic, and a place never seen is black.
While `memory_frozen` is set (the client's edit mode) nothing new is inserted, so erased,
copied and pasted patches stay as edited. Deterministic: the same poses give the same frames.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

from worldplay.config import ImageConfig
from worldplay.devices import torch_threads
from worldplay.frame import SKY_DEPTH, Frame
from worldplay.memory import MosaicMemory, render_canvas
from worldplay.memory.colour import MEMORY_THREADS, ColourMemoryConfig, colour_memory_config, memory_intrinsics
from worldplay.memory.warp import warp_view
from worldplay.sources.protocol import check_chunk
from worldplay.sources.world import OverWorld, WorldSource

PERCENT = 100.0


def memory_frame(memory: MosaicMemory, c2w: Tensor, K: Tensor, t: float) -> tuple[Frame, float]:
    """The memory seen from c2w: a Frame (holes black, depth SKY_DEPTH) and the filled fraction."""
    cfg = memory.cfg
    h, w = cfg.grid_hw
    canvas, mask, zmin = warp_view(memory.store, cfg, c2w, K, (h, w))    # (D, h, w), (1, h, w), (h, w)
    canvas, mask, zmin = canvas.cpu(), mask.cpu(), zmin.cpu()
    hit = mask[0] > 0
    H, W = cfg.image_height, cfg.image_width
    rgb = render_canvas(canvas, mask, W, H)                               # (H, W, 3) uint8
    z = torch.where(hit, zmin, torch.full_like(zmin, SKY_DEPTH))                # (h, w)
    z = z.repeat_interleave(cfg.patch_px, 0).repeat_interleave(cfg.patch_px, 1)  # (padded_h, W)
    depth = z[cfg.pad_top:cfg.pad_top + H].contiguous()                  # (H, W)
    frame = Frame(rgb=rgb, depth=depth, dynamic=torch.zeros(H, W, dtype=torch.bool),
                  c2w=c2w.detach().cpu().float().clone(), t=float(t))
    return frame, float(hit.float().mean())


class MemorySource(OverWorld):
    """FrameSource "memory": the colour memory's reprojection, filled from ground-truth frames.
    Capabilities: HasScene, HasMemory."""

    name = "memory"
    chunk = 1

    def __init__(self, seed: int = 0, prompt: str | None = None, device: str = "cpu",
                 image: ImageConfig = ImageConfig(), cfg: ColourMemoryConfig = ColourMemoryConfig()):
        self.world = WorldSource(seed, prompt, device, image)
        self.cfg = cfg
        self.memory = MosaicMemory(colour_memory_config(image.width, image.height, cfg))
        self.K = memory_intrinsics(self.memory, image.fov_x_deg)
        self.memory_frozen = False   # the client sets this in edit mode: edits are not overwritten
        self.memory_lock = threading.RLock()   # HasMemory: nothing here runs in a worker, but the
                                               # client holds it around memory access all the same
        self.shown = 0               # frames shown since the last reset
        self.coverage = 0.0          # filled fraction of the last view

    def reset(self, seed: int | None = None, prompt: str | None = None) -> None:
        """Forget the memory; a new scene when seed or prompt is given."""
        self.world.reset(seed, prompt)
        self.memory.reset()
        self.shown = 0

    def frames(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        """c2w (F, 4, 4), times (F,) seconds -> one memory-only Frame per pose."""
        check_chunk("MemorySource", c2w, times)
        out = []
        for pose, t in zip(c2w, times):
            pose = pose.detach().cpu().float()
            with torch_threads(MEMORY_THREADS):
                frame, self.coverage = memory_frame(self.memory, pose, self.K, float(t))
            out.append(frame)
            if not self.memory_frozen and self.shown % self.cfg.insert_every == 0:
                gt = self.world.frames(pose[None], t.reshape(1))[0]
                with torch_threads(MEMORY_THREADS):
                    self.memory.import_view(gt.rgb, gt.depth, gt.c2w, self.K, float(t), dynamic=gt.dynamic)
            self.shown += 1
        return out

    def hud(self) -> dict[str, str]:
        return {"source": self.name, "scene": self.scene.prompt, "seed": str(self.seed),
                "view": "memory only" + (" (frozen)" if self.memory_frozen else ""),
                "coverage": f"{PERCENT * self.coverage:.0f}%"}
