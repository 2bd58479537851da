"""The evaluation protocol: held-out scenes x revisit trajectories, scored on revisits.

For each held-out scene and trajectory the source is reset and fed the trajectory's poses in
order, `source.chunk` at a time, exactly as the client would. Frames that revisit an earlier
view (the trajectory's revisit pairs) are compared with ground truth rendered at the commanded
pose: PSNR / SSIM / ST-LPIPS, camera error (RotErr / TransErr, from `pose.estimate_pose` on a
subsample of them), and the dynamic score on moving objects. The source's own throughput is
timed over its `frames` calls only (ground-truth rendering and scoring are not counted).

Sources that observe ground truth for a context part (the explicit baseline) expose an
attribute `context_frames`; the protocol sets it to the first revisit frame, so every scored
frame comes from the source's memory, never from the ground truth it is scored against.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from worldplay.camera import intrinsics
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.eval.dynamic import DynamicConfig, MotionEnergy, motion_energy
from worldplay.eval.metrics import StLpips, is_capped, psnr, ssim
from worldplay.eval.pose import PoseConfig, estimate_pose
from worldplay.sources.capabilities import ObservesContext
from worldplay.world.dataset import HELDOUT_SEED_START


@dataclass(frozen=True)
class ProtocolConfig:
    scenes: int = 6                     # held-out scenes: enough variety for a stable mean on CPU
    paths: tuple[str, ...] = ("orbit", "look-away", "loop", "figure-eight")  # paths that come back
    frames: int = 192                   # 12 s at 16 FPS: walking-pace paths leave and come back
    pose_frames: int = 8                # revisit frames per trajectory given a pose estimate (~0.3 s each)
    strip_pairs: int = 4                # GT/generated pairs in the report strip
    first_seed: int = HELDOUT_SEED_START  # held-out scenes only: never seen in training
    image: ImageConfig = field(default_factory=ImageConfig)  # the paper's table is at 640x360
    pose: PoseConfig = field(default_factory=PoseConfig)
    dynamic: DynamicConfig = field(default_factory=DynamicConfig)


# 8 s paths: the shortest at which orbit and look-away return at walking pace (~30% revisits)
QUICK = replace(ProtocolConfig(), scenes=2, paths=("orbit", "look-away"), frames=128, pose_frames=6)


@dataclass
class TrajectoryScore:
    seed: int
    path: str
    frames: int
    revisit_frames: int
    psnr: list[float]                   # per revisit frame
    ssim: list[float]
    st_lpips: list[float]
    rot_err: list[float]                # per pose-estimated frame
    trans_err: list[float]
    energy: MotionEnergy
    source_seconds: float

    def summary(self) -> dict:
        return {"seed": self.seed, "path": self.path, "frames": self.frames,
                "revisit_frames": self.revisit_frames, "psnr": _mean(self.psnr), "ssim": _mean(self.ssim),
                "st_lpips": _mean(self.st_lpips), "rot_err_deg": _mean(self.rot_err),
                "trans_err": _mean(self.trans_err), "dynamic": self.energy.score(),
                "source_fps": self.frames / self.source_seconds if self.source_seconds > 0 else None}


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def _run_source(source, traj, keep: set[int]) -> tuple[dict[int, Tensor], float]:
    """Feed all poses of `traj` to `source`, chunk by chunk, keeping the RGB of frames in `keep`.
    The last chunk is padded with its final pose (extra frames dropped): sources make whole chunks."""
    n, chunk = len(traj), int(source.chunk)
    kept, seconds = {}, 0.0
    for a in range(0, n, chunk):
        idx = torch.arange(a, a + chunk).clamp(max=n - 1)
        t0 = time.perf_counter()
        got = source.frames(traj.c2w[idx], traj.times[idx])
        seconds += time.perf_counter() - t0
        if len(got) != chunk:
            raise WorldplayError(f"source {source.name!r} returned {len(got)} frames for a chunk of {chunk}")
        kept.update({a + k: f.rgb.cpu() for k, f in enumerate(got[: n - a]) if a + k in keep})
    return kept, seconds


def score_trajectory(source, scene, path: str, cfg: ProtocolConfig, renderer, lpips: StLpips,
                     strip: list | None = None) -> TrajectoryScore:
    from worldplay.world.trajectories import make_trajectory  # noqa: PLC0415
    img = cfg.image
    traj = make_trajectory(path, scene, cfg.frames, fps=img.fps, seed=scene.seed)
    rev = sorted({i for i, _, _ in traj.revisits})
    if isinstance(source, ObservesContext):
        source.context_frames = rev[0] if rev else cfg.frames
    source.reset(seed=scene.seed, prompt=scene.prompt)
    gen_frames, secs = _run_source(source, traj, set(rev))
    n, H, W = cfg.frames, img.height, img.width
    if not rev:
        return TrajectoryScore(scene.seed, path, n, 0, [], [], [], [], [], MotionEnergy(), secs)
    gen = torch.zeros(n, H, W, 3, dtype=torch.uint8)                          # (N, H, W, 3) only revisits filled
    gt = torch.zeros_like(gen)
    depth = torch.zeros(n, H, W)
    dyn = torch.zeros(n, H, W, dtype=torch.bool)
    for i in rev:
        g = gen_frames[i]
        if tuple(g.shape) != (H, W, 3):
            raise WorldplayError(f"source {source.name!r} made {tuple(g.shape)} frames; the protocol needs "
                                 f"({H}, {W}, 3) uint8")
        f = renderer.render(traj.c2w[i], float(traj.times[i]))
        gen[i], gt[i], depth[i], dyn[i] = g, f.rgb.cpu(), f.depth.cpu().float(), f.dynamic.cpu()
    r = torch.tensor(rev)
    p, s = psnr(gen[r], gt[r]).tolist(), ssim(gen[r], gt[r]).tolist()
    lp = lpips(gen[r], gt[r]).tolist() if lpips.available else []
    K = intrinsics(W, H, img.fov_x_deg)
    pick = [rev[int(k)] for k in torch.linspace(0, len(rev) - 1, min(cfg.pose_frames, len(rev))).round().long()]
    rot, trans = [], []
    for i in pick:
        est = estimate_pose(gen[i], gt[i], depth[i], K, traj.c2w[i], dyn[i], cfg.pose)
        rot.append(est.rot_err_deg)
        trans.append(est.trans_err)
    energy = motion_energy(gen, gt, depth, dyn, traj.c2w, K, rev, cfg.dynamic)
    if strip is not None and len(strip) < cfg.strip_pairs:
        take = [rev[int(k)] for k in torch.linspace(0, len(rev) - 1, cfg.strip_pairs).round().long()]
        strip += [(gt[i], gen[i]) for i in take][: cfg.strip_pairs - len(strip)]
    return TrajectoryScore(scene.seed, path, n, len(rev), p, s, lp, rot, trans, energy, secs)


def aggregate(name: str, scores: list[TrajectoryScore], lpips: StLpips, cfg: ProtocolConfig) -> dict:
    """One table row: frame-weighted means over every scored frame of every trajectory."""
    cat = lambda attr: [x for sc in scores for x in getattr(sc, attr)]  # noqa: E731
    energy = MotionEnergy()
    for sc in scores:
        energy = energy.add(sc.energy)
    frames = sum(sc.frames for sc in scores)
    secs = sum(sc.source_seconds for sc in scores)
    rot = cat("rot_err")
    return {
        "method": name, "rot_err_deg": _mean(rot), "trans_err": _mean(cat("trans_err")),
        "psnr": _mean(cat("psnr")), "ssim": _mean(cat("ssim")),
        "psnr_capped_frames": sum(1 for x in cat("psnr") if is_capped(x)),
        "st_lpips": _mean(cat("st_lpips")) if lpips.available else None,
        "st_lpips_note": "" if lpips.available else lpips.reason,
        "dynamic": energy.score(cfg.dynamic), "dynamic_psnr": energy.psnr(),
        "motion_energy": {"generated": energy.gen_energy(), "ground_truth": energy.gt_energy()},
        "fps": frames / secs if secs > 0 else None,
        "frames": frames, "revisit_frames": sum(sc.revisit_frames for sc in scores),
        "pose_frames": sum(1 for x in rot if not math.isnan(x)),
        "pose_failed": sum(1 for x in rot if math.isnan(x)),
        "per_trajectory": [sc.summary() for sc in scores],
    }


def run_protocol(source, cfg: ProtocolConfig = ProtocolConfig(), device: str = "cpu",
                 progress: bool = True, strip: list | None = None) -> dict:
    """Score one source over the whole protocol; returns its table row (see `aggregate`)."""
    from tqdm import tqdm  # noqa: PLC0415
    from worldplay.world.render import Renderer  # noqa: PLC0415
    from worldplay.world.scene import make_scene  # noqa: PLC0415
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
            "dynamic_stride": cfg.dynamic.stride, "pose_work_width": cfg.pose.work_width}


__all__ = ["ProtocolConfig", "QUICK", "run_protocol", "aggregate", "protocol_dict"]
