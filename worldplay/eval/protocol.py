"""The evaluation protocol: held-out scenes x revisit trajectories, scored as the frames are made.

For each held-out scene and trajectory the source is reset and fed the trajectory's poses in
order, `source.chunk` at a time, exactly as the client would. Each frame goes straight to a
`scoring.FrameScorer`, which compares it with ground truth rendered at the commanded pose in
fixed-size batches, so memory does not grow with the walk. Revisit frames (the trajectory's
revisit pairs) and non-revisit frames are scored apart: PSNR / SSIM / GMSD / ST-LPIPS on both;
camera error (RotErr / TransErr, from `pose.estimate_pose` on a subsample of revisit frames)
and the dynamic score on revisits. The source's own throughput is timed over its `frames`
calls only (ground-truth rendering and scoring are not counted).

Sources that observe ground truth for a context part (the explicit baseline) expose an
attribute `context_frames`. For the revisit frames the protocol sets it to the first revisit,
so every scored frame comes from the source's memory, never from the ground truth it is scored
against. The frames before the first revisit would then be ground truth for such a source, so
they are scored from a separate exploration run that starts from `explore_context` frames
(see `score_walk`): what a source makes of views it has not seen, the same frames for every row.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import torch
from tqdm import tqdm

from worldplay.camera import intrinsics
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.eval.dynamic import DynamicConfig, MotionEnergy
from worldplay.eval.metrics import StLpips
from worldplay.eval.pose import PoseConfig
from worldplay.eval.scoring import FrameScorer, FrameSetScores, Mean, ScorePlan, TrajectoryScore
from worldplay.sources.capabilities import ObservesContext
from worldplay.world.dataset import HELDOUT_SEED_START
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene
from worldplay.world.trajectories import make_trajectory

DRIFT_SHARE = 0.25        # revisit frames at each end of the walk compared for drift (the table says 25 %)


@dataclass(frozen=True)
class ProtocolConfig:
    scenes: int = 6                     # held-out scenes: enough variety for a stable mean on CPU
    paths: tuple[str, ...] = ("orbit", "look-away", "loop", "figure-eight")  # paths that come back
    frames: int = 192                   # 12 s at 16 FPS: walking-pace paths leave and come back
    pose_frames: int = 8                # revisit frames per trajectory given a pose estimate (~0.3 s each)
    strip_pairs: int = 4                # GT/generated revisit pairs in the report strip
    strip_new_pairs: int = 2            # non-revisit pairs after them: what the source makes of unseen views
    explore_context: int = 1            # GT frames a source that takes context starts the exploration run from
    batch: int = 8                      # frames scored at once: bounds memory (SSIM's float maps) at any length
    drift: bool = False                 # table adds revisit PSNR over the first and last 25 % (long walks)
    first_seed: int = HELDOUT_SEED_START  # held-out scenes only: never seen in training
    image: ImageConfig = field(default_factory=ImageConfig)  # the paper's table is at 640x360
    pose: PoseConfig = field(default_factory=PoseConfig)
    dynamic: DynamicConfig = field(default_factory=DynamicConfig)


# 8 s paths: the shortest at which orbit and look-away return at walking pace (~30% revisits)
QUICK = replace(ProtocolConfig(), scenes=2, paths=("orbit", "look-away"), frames=128, pose_frames=6)
# One minute (two laps of the loop at 16 FPS) on one held-out scene: does the memory hold?
LONG = replace(ProtocolConfig(), scenes=1, paths=("loop",), frames=960, drift=True)


def _spread(xs: list[int], k: int) -> list[int]:
    """`k` entries of `xs` evenly spread from first to last (repeats when k > len(xs))."""
    if not xs or k < 1:
        return []
    return [xs[int(j)] for j in torch.linspace(0, len(xs) - 1, k).round().long()]


def plan_frames(traj, cfg: ProtocolConfig, with_strip: bool) -> ScorePlan:
    """What is scored on `traj`, picked up front so no frame is kept for later: the revisit frames
    and every other frame from `explore_context` on (see `score_walk` for which run makes which)."""
    n = len(traj)
    rev = sorted({i for i, _, _ in traj.revisits})
    taken = set(rev)
    others = [i for i in range(min(cfg.explore_context, n), n) if i not in taken]
    strip = _spread(rev, cfg.strip_pairs) + _spread(others, cfg.strip_new_pairs) if with_strip and rev else []
    q = math.ceil(len(rev) * DRIFT_SHARE)
    return ScorePlan(tuple(rev), tuple(others), pose=tuple(_spread(rev, min(cfg.pose_frames, len(rev)))),
                     strip=tuple(strip), first=tuple(rev[:q]), last=tuple(rev[-q:] if q else ()))


def feed(source, traj, scorer: FrameScorer, stop: int, score_from: int = 0) -> float:
    """Feed poses 0..stop-1 of `traj` to `source` (already reset), chunk by chunk, handing frames
    from `score_from` on to `scorer` as they come; returns the seconds spent in `source.frames`.
    The last chunk is padded with its final pose (extra frames dropped): sources make whole chunks."""
    chunk = int(source.chunk)
    seconds = 0.0
    for a in range(0, stop, chunk):
        idx = torch.arange(a, a + chunk).clamp(max=stop - 1)
        t0 = time.perf_counter()
        got = source.frames(traj.c2w[idx], traj.times[idx])
        seconds += time.perf_counter() - t0
        if len(got) != chunk:
            raise WorldplayError(f"source {source.name!r} returned {len(got)} frames for a chunk of {chunk}")
        for k, f in enumerate(got[: stop - a]):
            if a + k >= score_from:
                scorer.add(a + k, f.rgb, source.name)
    return seconds


def _start_from(source, scene, context_frames: int) -> None:
    """Reset `source` for a run whose first `context_frames` frames it observes, if it takes context."""
    if isinstance(source, ObservesContext):
        source.context_frames = context_frames
    source.reset(seed=scene.seed, prompt=scene.prompt)


def score_walk(source, scene, traj, cfg: ProtocolConfig, renderer, lpips: StLpips,
               strip: list | None = None) -> TrajectoryScore:
    """Score `source` on `traj` in `scene` (anything with .seed and .prompt) in two runs:

    1. the exploration run, from `explore_context` ground-truth frames up to the first revisit:
       its frames revisit nothing, so they show what the source makes of views it has not seen
       (a source that observed them would just return the ground truth);
    2. the scored run: context up to the first revisit, so every revisit frame comes from the
       source's memory; revisit frames and any later non-revisit frames are scored.
    The first trajectory with revisits fills `strip`: every row shows the same frames."""
    img = cfg.image
    K = intrinsics(img.width, img.height, img.fov_x_deg)
    rev = sorted({i for i, _, _ in traj.revisits})
    plan = plan_frames(traj, cfg, with_strip=strip is not None and not strip)
    scorer = FrameScorer(traj, plan, renderer, lpips, K, (img.height, img.width), cfg.batch, cfg.pose, cfg.dynamic)
    n = len(traj)
    first_revisit = plan.revisits[0] if plan.revisits else n
    made, seconds = 0, 0.0
    if first_revisit > cfg.explore_context:
        _start_from(source, scene, cfg.explore_context)
        seconds += feed(source, traj, scorer, first_revisit)
        made += first_revisit
    if isinstance(source, ObservesContext):
        source.context_frames = rev[0] if rev else cfg.frames
    source.reset(seed=scene.seed, prompt=scene.prompt)
    if rev:
        seconds += feed(source, traj, scorer, n, score_from=first_revisit)
        made += n
    if strip is not None and plan.strip:
        strip += scorer.strip_pairs()
    return scorer.finish(scene.seed, traj.name, n, made, seconds)


def score_trajectory(source, scene, path: str, cfg: ProtocolConfig, renderer, lpips: StLpips,
                     strip: list | None = None) -> TrajectoryScore:
    traj = make_trajectory(path, scene, cfg.frames, fps=cfg.image.fps, seed=scene.seed)
    return score_walk(source, scene, traj, cfg, renderer, lpips, strip)


def _frame_set_row(fs: FrameSetScores, suffix: str, lpips: StLpips) -> dict:
    return {f"psnr{suffix}": fs.psnr.value, f"ssim{suffix}": fs.ssim.value, f"gmsd{suffix}": fs.gmsd.value,
            f"st_lpips{suffix}": fs.st_lpips.value if lpips.available else None,
            f"psnr{suffix}_capped_frames": fs.psnr_capped}


def aggregate(name: str, scores: list[TrajectoryScore], lpips: StLpips, cfg: ProtocolConfig) -> dict:
    """One table row: frame-weighted means over every scored frame of every trajectory. Keys
    without a suffix are over revisit frames; `_nonrevisit` ones over the other scored frames."""
    revisit, other, first, last, energy = FrameSetScores(), FrameSetScores(), Mean(), Mean(), MotionEnergy()
    for sc in scores:
        revisit, other = revisit.merged(sc.revisit), other.merged(sc.other)
        first, last, energy = first.merged(sc.first), last.merged(sc.last), energy.add(sc.energy)
    frames = sum(sc.frames for sc in scores)
    made = sum(sc.made_frames for sc in scores)
    secs = sum(sc.source_seconds for sc in scores)
    rot = [x for sc in scores for x in sc.rot_err]
    trans = [x for sc in scores for x in sc.trans_err]
    rot_mean, trans_mean = Mean(), Mean()
    rot_mean.add(rot)
    trans_mean.add(trans)
    return {
        "method": name, "rot_err_deg": rot_mean.value, "trans_err": trans_mean.value,
        **_frame_set_row(revisit, "", lpips), **_frame_set_row(other, "_nonrevisit", lpips),
        "st_lpips_note": "" if lpips.available else lpips.reason,
        "psnr_first_quarter": first.value, "psnr_last_quarter": last.value,
        "dynamic": energy.score(cfg.dynamic), "dynamic_psnr": energy.psnr(),
        "motion_energy": {"generated": energy.gen_energy(), "ground_truth": energy.gt_energy()},
        "fps": made / secs if secs > 0 else None,
        "frames": frames, "revisit_frames": revisit.frames, "nonrevisit_frames": other.frames,
        "pose_frames": sum(1 for x in rot if not math.isnan(x)),
        "pose_failed": sum(1 for x in rot if math.isnan(x)),
        "per_trajectory": [sc.summary() for sc in scores],
    }


def run_protocol(source, cfg: ProtocolConfig = ProtocolConfig(), device: str = "cpu",
                 progress: bool = True, strip: list | None = None) -> dict:
    """Score one source over the whole protocol; returns its table row (see `aggregate`)."""
    lpips = StLpips(device)
    scores: list[TrajectoryScore] = []
    jobs = [(k, p) for k in range(cfg.scenes) for p in cfg.paths]
    scene = renderer = None
    with tqdm(jobs, desc=f"eval {source.name}", unit="traj", disable=not progress) as bar:
        for k, path in bar:
            seed = cfg.first_seed + k
            if scene is None or scene.seed != seed:
                scene = make_scene(seed)
                renderer = Renderer(scene, image=cfg.image, device=device)
            scores.append(score_trajectory(source, scene, path, cfg, renderer, lpips, strip))
            bar.set_postfix_str(f"scene {seed} {path}")
    return aggregate(source.name, scores, lpips, cfg)


def protocol_dict(cfg: ProtocolConfig) -> dict:
    """The settings a result was measured under (written next to it)."""
    return {"scenes": cfg.scenes, "seeds": [cfg.first_seed, cfg.first_seed + cfg.scenes - 1],
            "paths": list(cfg.paths), "frames": cfg.frames, "pose_frames_per_trajectory": cfg.pose_frames,
            "size": f"{cfg.image.width}x{cfg.image.height}", "fps": cfg.image.fps,
            "dynamic_stride": cfg.dynamic.stride, "pose_work_width": cfg.pose.work_width,
            "explore_context_frames": cfg.explore_context, "score_batch": cfg.batch, "drift": cfg.drift,
            "drift_share": DRIFT_SHARE}


__all__ = ["ProtocolConfig", "QUICK", "LONG", "run_protocol", "score_trajectory", "score_walk", "feed",
           "plan_frames", "aggregate", "protocol_dict"]
