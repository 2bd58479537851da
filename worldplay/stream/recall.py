"""Mosaic memory -> DiT inputs for one chunk: memory tokens (Warped RoPE) and the warped canvas
(keyframes reprojected at full resolution, then VAE-encoded: the Warped Latent).

Shared by the streamer (step 2 of its loop) and by training (train/causal.py), so the model is
trained on exactly the memory inputs it is served.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from worldplay.memory.memory import MosaicMemory
from worldplay.memory.retrieve import MemoryBatch
from worldplay.model.dit import DiT, MemoryTokens
from worldplay.model.prope import recentred
from worldplay.model.vae import RGBDVAE, frames_to_tensor


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


@torch.no_grad()
def pixel_canvas(vae: RGBDVAE, memory: MosaicMemory, c2w: Tensor, K: Tensor, max_time: float,
                 dtype: torch.dtype) -> Tensor | None:
    """(1, F, C + 1, h, w): per target view, the memory's keyframes splatted into it at full
    resolution and VAE-encoded (the Warped Latent), with the fraction of each latent cell's
    pixels memory covered. None when memory covers nothing of these views."""
    v = vae.cfg
    rgb, depth, hit = zip(*(memory.reproject(c2w[f], K, max_time) for f in range(c2w.shape[0])))
    hit = torch.stack(hit)                                                      # (F, H, W)
    if not bool(hit.any()):
        return None
    seen = hit.flatten(1).any(1).nonzero()[:, 0]                                # frames memory covers
    vae_dtype, dev = vae.latent_std.dtype, vae.latent_std.device
    x = frames_to_tensor(torch.stack([rgb[i] for i in seen])).to(dev, vae_dtype)   # (S, 3, H, W)
    d = torch.stack([depth[i] for i in seen]).clamp(max=v.depth_max).to(dev, vae_dtype)   # (S, H, W); holes: far
    z = torch.zeros(hit.shape[0], v.latent_ch, *v.latent_hw, device=dev)       # (F, C, h, w)
    z[seen.to(dev)] = vae.encode(x.contiguous(memory_format=torch.channels_last), d).float()
    top = v.pad_top
    cover = F.pad(hit.float()[:, None], (0, 0, top, v.pad_height - v.height - top))   # (F, 1, pad_H, W)
    mask = F.avg_pool2d(cover, v.downsample).to(z.device)                      # (F, 1, h, w)
    z = z * (mask > 0)                                                          # what covers nothing says nothing
    return torch.cat([z, mask], dim=1)[None].to(c2w.device, dtype)              # (1, F, C + 1, h, w)


def recall(dit: DiT, memory: MosaicMemory, c2w: Tensor, K: Tensor, frame_idx: Tensor, *, budget: int,
           min_age: float, use_tokens: bool, vae: RGBDVAE | None, dtype: torch.dtype,
           cam_dtype: torch.dtype, pad: bool = False,
           origin: Tensor | None = None) -> tuple[MemoryTokens | None, Tensor | None]:
    """Memory tokens and canvas for target poses c2w (F, 4, 4) at frame indices (F,), from what
    memory held `min_age` seconds ago and before. The canvas is made when a `vae` is given.
    Either is None when its path is off or memory has nothing for these views; pad=True keeps
    exactly `budget` tokens (invalid rows masked) so examples stack into a batch."""
    mem = canvas = None
    if use_tokens and len(memory):
        batch = memory.retrieve(c2w, K, budget, min_age=min_age, pad=pad)
        if int(batch.valid.sum()):
            mem = memory_tokens(dit, batch, frame_idx, dtype, cam_dtype, pad, origin)
    if vae is not None and len(memory.views):
        canvas = pixel_canvas(vae, memory, c2w, K, memory.now - min_age, dtype)
    return mem, canvas
