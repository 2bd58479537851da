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
from worldplay.frame import SKY_DEPTH

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


def _pair_energy(gen_a: Tensor, gt_a: Tensor, gen_b: Tensor, gt_b: Tensor, depth_b: Tensor, mask: Tensor,
                 c2w_a: Tensor, c2w_b: Tensor, K: Tensor, cfg: DynamicConfig) -> MotionEnergy:
    """Motion energy of a batch of pairs (a, b): frames (B, H, W, 3) uint8, GT depth of b
    (B, H, W), moving-object mask (B, H, W), poses (B, 4, 4)."""
    if not mask.any():
        return MotionEnergy()
    prev = torch.cat([to_unit(gen_a), to_unit(gt_a)], 1)                      # (B, 6, H, W) one warp for both
    warped, ok = _static_warp(prev, depth_b.float(), c2w_b.float(), c2w_a.float(), K.float(), cfg.max_depth)
    m = mask & ok
    d_gen = ((to_unit(gen_b) - warped[:, :3]).abs().mean(1) * m).sum()
    d_gt = ((to_unit(gt_b) - warped[:, 3:]).abs().mean(1) * m).sum()
    return MotionEnergy(float(d_gen), float(d_gt), int(m.sum()))


def _masked_psnr_energy(gen: Tensor, gt: Tensor, dynamic: Tensor) -> MotionEnergy:
    """The masked-PSNR part of the score over frames (T, H, W, 3) with their masks (T, H, W)."""
    has = dynamic.flatten(1).any(1)
    if not has.any():
        return MotionEnergy()
    p = masked_psnr(gen[has], gt[has], dynamic[has])
    return MotionEnergy(psnr_sum=float(p.sum()), psnr_frames=int(has.sum()))


def motion_energy(gen: Tensor, gt: Tensor, depth: Tensor, dynamic: Tensor, c2w: Tensor, K: Tensor,
                  frames: list[int] | None = None, cfg: DynamicConfig = DynamicConfig()) -> MotionEnergy:
    """Motion energy of a clip held in memory. gen, gt: (T, H, W, 3) uint8; depth: (T, H, W) GT
    z-depth; dynamic: (T, H, W) GT moving-object mask; c2w: (T, 4, 4); K: (3, 3).
    `frames`: indices that are scored (pairs need both ends in it); default all frames.
    Long clips go through `MotionEnergyStream` instead, which keeps `stride` frames."""
    T = gt.shape[0]
    keep = set(range(T) if frames is None else frames)
    pairs = [(t - cfg.stride, t) for t in sorted(keep) if t - cfg.stride in keep]
    out = MotionEnergy()
    for i in range(0, len(pairs), cfg.pair_batch):
        a = torch.tensor([p[0] for p in pairs[i:i + cfg.pair_batch]])
        b = torch.tensor([p[1] for p in pairs[i:i + cfg.pair_batch]])
        # Was or is moving. The mask of frame a is used in b's pixel grid unwarped: the camera
        # moves a few pixels in `stride` frames, well inside the object it marks.
        out = out.add(_pair_energy(gen[a], gt[a], gen[b], gt[b], depth[b], dynamic[b] | dynamic[a],
                                   c2w[a], c2w[b], K, cfg))
    idx = torch.tensor(sorted(keep), dtype=torch.long)
    return out.add(_masked_psnr_energy(gen[idx], gt[idx], dynamic[idx]))


@dataclass
class _Kept:
    gen: Tensor      # (H, W, 3) uint8
    gt: Tensor       # (H, W, 3) uint8
    depth: Tensor    # (H, W) GT z-depth
    dynamic: Tensor  # (H, W) bool
    c2w: Tensor      # (4, 4)


class MotionEnergyStream:
    """`motion_energy` over frames that arrive one at a time in increasing index: it keeps only
    the last `stride` frames (a pair's first end) and `pair_batch` pending pairs, so its memory
    does not grow with the clip. Same result as `motion_energy` on the same frames, up to the
    order of float sums."""

    def __init__(self, K: Tensor, cfg: DynamicConfig = DynamicConfig()):
        self.K, self.cfg = K, cfg
        self.energy = MotionEnergy()
        self._recent: dict[int, _Kept] = {}
        self._pairs: list[tuple[_Kept, _Kept]] = []

    def push(self, t: int, gen: Tensor, gt: Tensor, depth: Tensor, dynamic: Tensor, c2w: Tensor) -> None:
        """Frame `t` (gen, gt (H, W, 3) uint8; depth, dynamic (H, W); c2w (4, 4))."""
        cur = _Kept(gen, gt, depth, dynamic, c2w)
        prev = self._recent.get(t - self.cfg.stride)
        if prev is not None:
            self._pairs.append((prev, cur))
            if len(self._pairs) >= self.cfg.pair_batch:
                self._flush_pairs()
        self.energy = self.energy.add(_masked_psnr_energy(gen[None], gt[None], dynamic[None]))
        self._recent[t] = cur
        for k in [k for k in self._recent if k <= t - self.cfg.stride]:   # no later frame pairs with them
            del self._recent[k]

    def _flush_pairs(self) -> None:
        if not self._pairs:
            return
        a = [p[0] for p in self._pairs]
        b = [p[1] for p in self._pairs]
        st = lambda kept, attr: torch.stack([getattr(k, attr) for k in kept])  # noqa: E731
        mask = st(b, "dynamic") | st(a, "dynamic")                              # see motion_energy
        self.energy = self.energy.add(_pair_energy(st(a, "gen"), st(a, "gt"), st(b, "gen"), st(b, "gt"),
                                                   st(b, "depth"), mask, st(a, "c2w"), st(b, "c2w"),
                                                   self.K, self.cfg))
        self._pairs = []

    def result(self) -> MotionEnergy:
        """The clip's energy so far (pending pairs included)."""
        self._flush_pairs()
        return self.energy
