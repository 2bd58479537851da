"""Mosaic memory -> DiT inputs for one chunk: memory tokens (Warped RoPE) and the warped canvas.

Shared by the streamer (step 2 of its loop) and by training (train/causal.py), so the model is
trained on exactly the memory inputs it is served.
"""

from __future__ import annotations

import torch
from torch import Tensor

from worldplay.memory.memory import MosaicMemory
from worldplay.memory.retrieve import MemoryBatch
from worldplay.model.dit import DiT, MemoryTokens
from worldplay.model.prope import recentred


def memory_tokens(dit: DiT, batch: MemoryBatch, frame_idx: Tensor, dtype: torch.dtype,
                  cam_dtype: torch.dtype, padded: bool = False, origin: Tensor | None = None) -> MemoryTokens:
    """Retrieved patches as (1, M) memory tokens: features, (t, y, x) positions, source cameras
    (relative to the streamer's PRoPE `origin` (3,) when given). t is the frame index of the
    target view each patch was placed in (Warped RoPE). Unpadded batches carry no validity mask."""
    dev = frame_idx.device
    b = batch.to(dev)
    t = frame_idx.to(torch.float64)[b.target][:, None]                          # (M, 1) target's time
    pos = torch.cat([t, b.pos_yx.to(torch.float64)], dim=-1)[None]               # (1, M, 3)
    src = b.src_c2w if origin is None else recentred(b.src_c2w, origin)          # (M, 4, 4)
    cams = dit.cameras(src[None].to(cam_dtype), b.src_K[None])                   # (1, M)
    return MemoryTokens(b.features[None].to(dtype), pos, cams, b.valid[None] if padded else None)


def warped_canvas(dit: DiT, memory: MosaicMemory, c2w: Tensor, K: Tensor, ids: Tensor | None,
                  dtype: torch.dtype) -> Tensor:
    """(1, F, C + 1, h, w): per target view the memory latent resampled into it (each latent
    cell from the entry the z-buffer shows there) and its validity mask."""
    layers = []
    for f in range(c2w.shape[0]):
        lat, m = memory.warp_latent(c2w[f], K, dit.cfg.latent_hw, dit.patch, ids=ids)   # (C, h, w), (1, h, w)
        layers.append(torch.cat([lat, m], dim=0))
    return torch.stack(layers)[None].to(c2w.device, dtype)                       # (1, F, C + 1, h, w)


def recall(dit: DiT, memory: MosaicMemory, c2w: Tensor, K: Tensor, frame_idx: Tensor, *, budget: int,
           min_age: float, use_tokens: bool, use_canvas: bool, dtype: torch.dtype,
           cam_dtype: torch.dtype, pad: bool = False,
           origin: Tensor | None = None) -> tuple[MemoryTokens | None, Tensor | None]:
    """Memory tokens and canvas for target poses c2w (F, 4, 4) at frame indices (F,).
    Either is None when its path is off or memory has nothing for these views; pad=True keeps
    exactly `budget` tokens (invalid rows masked) so examples stack into a batch."""
    if not (use_tokens or use_canvas) or len(memory) == 0:
        return None, None
    batch = memory.retrieve(c2w, K, budget, min_age=min_age, pad=pad)
    if int(batch.valid.sum()) == 0:
        return None, None
    mem = memory_tokens(dit, batch, frame_idx, dtype, cam_dtype, pad, origin) if use_tokens else None
    canvas = warped_canvas(dit, memory, c2w, K, batch.ids, dtype) if use_canvas else None
    return mem, canvas
