"""Dynamic score: do moving things keep moving in the generated frames?

A memory that only replays the past (the explicit-warp baseline) freezes moving objects; a good
world model keeps them moving. We measure *motion energy* inside the ground-truth moving-object
mask: for frame pairs (t - s, t), warp frame t - s into view t as if the world were static
(GT depth of frame t, GT poses), and take the mean absolute colour difference to frame t. The
warp cancels the camera's own motion, so what remains is what moved. The same warp is applied
to generated and GT frames:

    Dynamic = energy(generated) / energy(ground truth)

GT scores 1.0; a frozen world scores near 0; > 1 means more change than the truth (flicker).
The optical-flow "dynamic degree" of VBench-style scores needs RAFT weights that cannot be had
offline; this needs only geometry we already have. Alongside it we report PSNR inside the
moving-object mask (are the objects where they should be, not just moving).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from worldplay.camera import invert_se3, pixel_grid, project, unproject
from worldplay.eval.metrics import masked_psnr, to_unit
from worldplay.world.frame import SKY_DEPTH

MIN_DEPTH = 1e-3   # metres; a warped point nearer than this is behind the previous camera


@dataclass(frozen=True)
class DynamicConfig:
    stride: int = 4                 # frames between compared pairs: at 16 FPS objects move several px
    min_gt_energy: float = 1e-4     # below this the clip shows no visible motion: score is n/a
    max_depth: float = 0.5 * SKY_DEPTH  # sky pixels carry no geometry to warp with
    pair_batch: int = 8             # pairs warped at once (bounds memory at 640x360)


@dataclass
class MotionEnergy:
    """Summed |difference| and pixel count inside the mask; add clips, divide once at the end."""
    gen_sum: float = 0.0
    gt_sum: float = 0.0
    count: int = 0
    psnr_sum: float = 0.0            # sum of per-frame masked PSNRs (frames with moving pixels)
    psnr_frames: int = 0

    def add(self, other: "MotionEnergy") -> "MotionEnergy":
        return MotionEnergy(self.gen_sum + other.gen_sum, self.gt_sum + other.gt_sum,
                            self.count + other.count, self.psnr_sum + other.psnr_sum,
                            self.psnr_frames + other.psnr_frames)

    def score(self, cfg: DynamicConfig = DynamicConfig()) -> float:
        """gen/GT energy ratio, NaN when the ground truth shows no motion."""
        if self.count == 0 or self.gt_sum / self.count < cfg.min_gt_energy:
            return float("nan")
        return self.gen_sum / self.gt_sum

    def gt_energy(self) -> float:
        return self.gt_sum / self.count if self.count else float("nan")

    def gen_energy(self) -> float:
        return self.gen_sum / self.count if self.count else float("nan")

    def psnr(self) -> float:
        return self.psnr_sum / self.psnr_frames if self.psnr_frames else float("nan")


def _static_warp(rgb_prev: Tensor, depth: Tensor, c2w: Tensor, c2w_prev: Tensor, K: Tensor,
                 max_depth: float) -> tuple[Tensor, Tensor]:
    """Backward-warp (B, C, H, W) frames at c2w_prev into the views c2w with depth (B, H, W).
    Returns the warped frames and where the warp is defined (B, H, W)."""
    B, _, H, W = rgb_prev.shape
    uv = pixel_grid(H, W).reshape(1, H * W, 2).expand(B, -1, -1)               # (B, HW, 2)
    z = depth.reshape(B, H * W)
    pts = unproject(uv, z, c2w, K)                                             # (B, HW, 3)
    uv2, z2 = project(pts, invert_se3(c2w_prev), K)                           # (B, HW, 2), (B, HW)
    ok = (z2 > MIN_DEPTH) & (z < max_depth)
    ok &= (uv2[..., 0] > 0) & (uv2[..., 0] < W) & (uv2[..., 1] > 0) & (uv2[..., 1] < H)
    grid = torch.stack([2 * uv2[..., 0] / W - 1, 2 * uv2[..., 1] / H - 1], -1)  # (B, HW, 2)
    warped = F.grid_sample(rgb_prev, grid.view(B, H, W, 2), mode="bilinear",
                           padding_mode="border", align_corners=False)       # (B, C, H, W)
    return warped, ok.view(B, H, W)


def motion_energy(gen: Tensor, gt: Tensor, depth: Tensor, dynamic: Tensor, c2w: Tensor, K: Tensor,
                  frames: list[int] | None = None, cfg: DynamicConfig = DynamicConfig()) -> MotionEnergy:
    """Motion energy of a clip. gen, gt: (T, H, W, 3) uint8; depth: (T, H, W) GT z-depth;
    dynamic: (T, H, W) GT moving-object mask; c2w: (T, 4, 4); K: (3, 3).
    `frames`: indices that are scored (pairs need both ends in it); default all frames."""
    T = gt.shape[0]
    keep = set(range(T) if frames is None else frames)
    pairs = [(t - cfg.stride, t) for t in sorted(keep) if t - cfg.stride in keep]
    out = MotionEnergy()
    for i in range(0, len(pairs), cfg.pair_batch):
        a = torch.tensor([p[0] for p in pairs[i:i + cfg.pair_batch]])
        b = torch.tensor([p[1] for p in pairs[i:i + cfg.pair_batch]])
        # Was or is moving. The mask of frame a is used in b's pixel grid unwarped: the camera
        # moves a few pixels in `stride` frames, well inside the object it marks.
        mask = dynamic[b] | dynamic[a]                                         # (B, H, W)
        if not mask.any():
            continue
        prev = torch.cat([to_unit(gen[a]), to_unit(gt[a])], 1)                       # (B, 6, H, W) one warp for both
        warped, ok = _static_warp(prev, depth[b].float(), c2w[b].float(), c2w[a].float(), K.float(),
                                  cfg.max_depth)
        m = mask & ok
        d_gen = ((to_unit(gen[b]) - warped[:, :3]).abs().mean(1) * m).sum()
        d_gt = ((to_unit(gt[b]) - warped[:, 3:]).abs().mean(1) * m).sum()
        out = out.add(MotionEnergy(float(d_gen), float(d_gt), int(m.sum())))
    idx = sorted(keep)
    has = dynamic[idx].flatten(1).any(1)
    if has.any():
        sel = torch.tensor(idx)[has]
        p = masked_psnr(gen[sel], gt[sel], dynamic[sel])
        out = out.add(MotionEnergy(psnr_sum=float(p.sum()), psnr_frames=int(len(sel))))
    return out
