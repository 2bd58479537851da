"""Scoring a trajectory's frames as the source makes them, a fixed-size batch at a time.

The protocol feeds a source chunk by chunk and hands every frame it makes to a `FrameScorer`.
The scorer keeps the frames it will score until it has `batch` of them, then renders their
ground truth, scores the batch (PSNR, SSIM, GMSD, ST-LPIPS where available; a pose estimate
and the dynamic score where the plan asks) and drops it. What it keeps does not grow with the
trajectory: running sums for the means, the last `stride` frames for the dynamic score, and the
few (ground truth, generated) pairs picked up front for the report strip. So a one-minute walk
is scored in the memory of a short one.

Which frames are scored is fixed before the source runs (`ScorePlan`): the revisit frames, and
the frames from the first revisit on that revisit nothing ("non-revisit": what the source makes
of views it has not seen, or saw less than a second ago). Frames before the first revisit are
the context that the sources which observe ground truth are fed, so no source is scored on them.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.eval.dynamic import DynamicConfig, MotionEnergy, MotionEnergyStream
from worldplay.eval.metrics import StLpips, gmsd, is_capped, psnr, ssim
from worldplay.eval.pose import PoseConfig, estimate_pose


@dataclass
class Mean:
    """Running mean that skips NaN (a frame with nothing to measure); merges across trajectories."""
    total: float = 0.0
    count: int = 0

    def add(self, values: Iterable[float]) -> None:
        for x in values:
            if not math.isnan(x):
                self.total += x
                self.count += 1

    def merged(self, other: "Mean") -> "Mean":
        return Mean(self.total + other.total, self.count + other.count)

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else float("nan")


@dataclass
class FrameSetScores:
    """Scores of one set of frames (the revisits, or the rest) of one or more trajectories."""
    frames: int = 0
    psnr: Mean = field(default_factory=Mean)
    ssim: Mean = field(default_factory=Mean)
    gmsd: Mean = field(default_factory=Mean)
    st_lpips: Mean = field(default_factory=Mean)
    psnr_capped: int = 0                # frames identical to ground truth (PSNR at the cap)

    def add(self, p: list[float], s: list[float], g: list[float], lp: list[float]) -> None:
        self.frames += len(p)
        self.psnr.add(p)
        self.ssim.add(s)
        self.gmsd.add(g)
        self.st_lpips.add(lp)
        self.psnr_capped += sum(1 for x in p if is_capped(x))

    def merged(self, other: "FrameSetScores") -> "FrameSetScores":
        return FrameSetScores(self.frames + other.frames, self.psnr.merged(other.psnr),
                              self.ssim.merged(other.ssim), self.gmsd.merged(other.gmsd),
                              self.st_lpips.merged(other.st_lpips), self.psnr_capped + other.psnr_capped)


@dataclass(frozen=True)
class ScorePlan:
    """Which frames of one trajectory are scored, and which get more than the image metrics."""
    revisits: tuple[int, ...]           # revisit frames, increasing
    others: tuple[int, ...]             # non-revisit frames from the first revisit on, increasing
    pose: tuple[int, ...] = ()          # revisit frames given a pose estimate
    strip: tuple[int, ...] = ()         # frames whose (GT, generated) pair goes into the strip, in order
    first: tuple[int, ...] = ()         # revisit frames in the first part of the walk (drift)
    last: tuple[int, ...] = ()          # revisit frames in the last part of the walk (drift)


@dataclass
class TrajectoryScore:
    seed: int
    path: str
    frames: int
    revisit: FrameSetScores
    other: FrameSetScores               # non-revisit frames
    first: Mean                         # revisit PSNR over `ScorePlan.first`
    last: Mean                          # revisit PSNR over `ScorePlan.last`
    rot_err: list[float]                # per pose-estimated frame (at most pose_frames)
    trans_err: list[float]
    energy: MotionEnergy
    made_frames: int                    # frames the source made over both runs (its FPS)
    source_seconds: float

    def summary(self) -> dict:
        return {"seed": self.seed, "path": self.path, "frames": self.frames,
                "revisit_frames": self.revisit.frames, "nonrevisit_frames": self.other.frames,
                "psnr": self.revisit.psnr.value, "ssim": self.revisit.ssim.value, "gmsd": self.revisit.gmsd.value,
                "psnr_nonrevisit": self.other.psnr.value, "ssim_nonrevisit": self.other.ssim.value,
                "gmsd_nonrevisit": self.other.gmsd.value, "st_lpips": self.revisit.st_lpips.value,
                "psnr_first_quarter": self.first.value, "psnr_last_quarter": self.last.value,
                "rot_err_deg": _mean(self.rot_err), "trans_err": _mean(self.trans_err),
                "dynamic": self.energy.score(),
                "source_fps": self.made_frames / self.source_seconds if self.source_seconds > 0 else None}


def _mean(xs: list[float]) -> float:
    m = Mean()
    m.add(xs)
    return m.value


class FrameScorer:
    """Scores the frames of one trajectory in plan order as they arrive (see the module doc)."""

    def __init__(self, traj, plan: ScorePlan, renderer, lpips: StLpips, K: Tensor, size: tuple[int, int],
                 batch: int, pose_cfg: PoseConfig = PoseConfig(), dynamic_cfg: DynamicConfig = DynamicConfig()):
        if batch < 1:
            raise WorldplayError(f"the scoring batch must be at least 1 frame (got {batch})")
        self.traj, self.plan, self.renderer, self.lpips, self.K = traj, plan, renderer, lpips, K
        self.size, self.batch, self.pose_cfg = size, batch, pose_cfg
        self._rev, self._scored = set(plan.revisits), set(plan.revisits) | set(plan.others)
        self._first, self._last = set(plan.first), set(plan.last)
        self._pose, self._strip = Counter(plan.pose), set(plan.strip)
        self._buf: list[tuple[int, Tensor]] = []
        self._pairs: dict[int, tuple[Tensor, Tensor]] = {}         # strip frame -> (GT, generated)
        self._motion = MotionEnergyStream(K, dynamic_cfg)
        self.revisit, self.other = FrameSetScores(), FrameSetScores()
        self.first, self.last = Mean(), Mean()
        self.rot_err: list[float] = []
        self.trans_err: list[float] = []

    def add(self, i: int, rgb: Tensor, source_name: str) -> None:
        """Frame `i` of the trajectory as the source made it: (H, W, 3) uint8."""
        if i not in self._scored:
            return
        H, W = self.size
        if tuple(rgb.shape) != (H, W, 3) or rgb.dtype != torch.uint8:
            raise WorldplayError(f"source {source_name!r} made {rgb.dtype} {tuple(rgb.shape)} frames; "
                                 f"the protocol needs ({H}, {W}, 3) uint8")
        self._buf.append((i, rgb.to("cpu", copy=True)))       # a copy: a source may reuse its buffers
        if len(self._buf) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        idx = [i for i, _ in self._buf]
        gen = torch.stack([g for _, g in self._buf])                           # (B, H, W, 3)
        truth = [self.renderer.render(self.traj.c2w[i], float(self.traj.times[i])) for i in idx]
        gt = torch.stack([f.rgb.cpu() for f in truth])
        self._buf = []
        p, s, g = psnr(gen, gt).tolist(), ssim(gen, gt).tolist(), gmsd(gen, gt).tolist()
        lp = self.lpips(gen, gt).tolist() if self.lpips.available else [float("nan")] * len(idx)
        for k, i in enumerate(idx):
            (self.revisit if i in self._rev else self.other).add(p[k:k + 1], s[k:k + 1], g[k:k + 1], lp[k:k + 1])
            if i in self._strip:
                self._pairs[i] = (gt[k].clone(), gen[k].clone())           # clones: drop the batch
            if i not in self._rev:
                continue
            self.first.add(p[k:k + 1] if i in self._first else [])
            self.last.add(p[k:k + 1] if i in self._last else [])
            depth, dyn = truth[k].depth.cpu().float(), truth[k].dynamic.cpu()
            # clones: the stream keeps a few frames, not the batch they are views of
            self._motion.push(i, gen[k].clone(), gt[k].clone(), depth, dyn, self.traj.c2w[i].clone())
            if self._pose[i]:
                est = estimate_pose(gen[k], gt[k], depth, self.K, self.traj.c2w[i], dyn, self.pose_cfg)
                self.rot_err += [est.rot_err_deg] * self._pose[i]
                self.trans_err += [est.trans_err] * self._pose[i]

    def strip_pairs(self) -> list[tuple[Tensor, Tensor, bool]]:
        """(GT, generated, is_revisit) for the plan's strip frames, in strip order."""
        self._flush()
        return [(*self._pairs[i], i in self._rev) for i in self.plan.strip]

    def finish(self, seed: int, path: str, frames: int, made_frames: int, source_seconds: float) -> TrajectoryScore:
        self._flush()
        return TrajectoryScore(seed, path, frames, self.revisit, self.other, self.first, self.last,
                               self.rot_err, self.trans_err, self._motion.result(), made_frames, source_seconds)


__all__ = ["Mean", "FrameSetScores", "ScorePlan", "TrajectoryScore", "FrameScorer"]
