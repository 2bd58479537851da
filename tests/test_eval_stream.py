"""Eval scores frames as they are made: same numbers as scoring them all at once, flat memory."""

import math
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from worldplay.camera import intrinsics
from worldplay.config import ImageConfig
from worldplay.eval import protocol
from worldplay.eval.dynamic import motion_energy
from worldplay.eval.metrics import StLpips, gmsd, psnr, ssim
from worldplay.eval.pose import estimate_pose
from worldplay.eval.protocol import QUICK, score_trajectory
from worldplay.eval.scoring import FrameScorer
from worldplay.frame import Frame
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene
from worldplay.world.trajectories import Trajectory, make_trajectory

SMALL = ImageConfig(width=160, height=90)
TINY = ImageConfig(width=32, height=18)     # the smallest SSIM (11 px window) and pose levels accept


def _batch_scores(source, traj, cfg, renderer):
    """The protocol before streaming: run the whole trajectory keeping every revisit frame, then
    score them in one batch (kept here as the reference the stream must reproduce)."""
    img = cfg.image
    rev = sorted({i for i, _, _ in traj.revisits})
    n, chunk, keep = len(traj), int(source.chunk), set(rev)
    kept = {}
    for a in range(0, n, chunk):
        idx = torch.arange(a, a + chunk).clamp(max=n - 1)
        got = source.frames(traj.c2w[idx], traj.times[idx])
        kept.update({a + k: f.rgb.cpu() for k, f in enumerate(got[: n - a]) if a + k in keep})
    H, W = img.height, img.width
    gen = torch.zeros(n, H, W, 3, dtype=torch.uint8)
    gt, depth, dyn = torch.zeros_like(gen), torch.zeros(n, H, W), torch.zeros(n, H, W, dtype=torch.bool)
    for i in rev:
        f = renderer.render(traj.c2w[i], float(traj.times[i]))
        gen[i], gt[i], depth[i], dyn[i] = kept[i], f.rgb, f.depth.float(), f.dynamic
    r = torch.tensor(rev)
    K = intrinsics(W, H, img.fov_x_deg)
    pick = [rev[int(k)] for k in torch.linspace(0, len(rev) - 1, min(cfg.pose_frames, len(rev))).round().long()]
    est = [estimate_pose(gen[i], gt[i], depth[i], K, traj.c2w[i], dyn[i], cfg.pose) for i in pick]
    take = [rev[int(k)] for k in torch.linspace(0, len(rev) - 1, cfg.strip_pairs).round().long()]
    return {"psnr": psnr(gen[r], gt[r]).tolist(), "ssim": ssim(gen[r], gt[r]).tolist(),
            "rot": [e.rot_err_deg for e in est], "trans": [e.trans_err for e in est],
            "energy": motion_energy(gen, gt, depth, dyn, traj.c2w, K, rev, cfg.dynamic),
            "strip": [(gt[i], gen[i]) for i in take]}


class _Shifted:
    """A cheap source with a context part: ground truth for the first `context_frames` frames after
    a reset, then the view from 5 cm to the side and 50 ms late (so pose, images and motion differ)."""
    name, chunk = "shifted", 3

    def __init__(self, renderer: Renderer):
        self.renderer, self.context_frames, self.made = renderer, 0, 0

    def reset(self, seed=None, prompt=None) -> None:
        self.made = 0

    def frames(self, c2w: torch.Tensor, times: torch.Tensor) -> list[Frame]:
        out = []
        for p, t in zip(c2w, times):
            if self.made >= self.context_frames:
                p = p.clone()
                p[:3, 3] += 0.05 * p[:3, 0]
                t = t - 0.05
            out.append(self.renderer.render(p, float(t)))
            self.made += 1
        return out


def test_streamed_scores_equal_batch_scores(one_thread):
    cfg = replace(QUICK, image=SMALL, frames=64, pose_frames=3, batch=5)   # 5: batches end mid-chunk
    scene = make_scene(1_000_001)
    traj = make_trajectory("orbit", scene, cfg.frames, fps=SMALL.fps, seed=scene.seed)
    rev = sorted({i for i, _, _ in traj.revisits})
    renderer = Renderer(scene, image=SMALL)
    src = _Shifted(renderer)
    src.context_frames = rev[0]
    src.reset()
    old = _batch_scores(src, traj, cfg, renderer)
    strip: list = []
    new = score_trajectory(src, scene, "orbit", cfg, renderer, StLpips(), strip)
    assert new.revisit.frames == len(rev) and rev[0] > 1 and new.made_frames == rev[0] + cfg.frames
    assert new.revisit.psnr.value == pytest.approx(sum(old["psnr"]) / len(rev), rel=1e-6)
    assert new.revisit.ssim.value == pytest.approx(sum(old["ssim"]) / len(rev), rel=1e-6)
    assert new.rot_err == pytest.approx(old["rot"], rel=1e-5) and new.trans_err == pytest.approx(old["trans"], rel=1e-5)
    assert 0.03 < new.trans_err[0] < 0.07                                  # the 5 cm the source is off by
    for attr in ("gen_sum", "gt_sum", "count", "psnr_sum", "psnr_frames"):
        assert getattr(new.energy, attr) == pytest.approx(getattr(old["energy"], attr), rel=1e-6)
    assert old["energy"].count > 0
    revisit_pairs = [(gt, gen) for gt, gen, is_rev in strip if is_rev]
    assert len(revisit_pairs) == len(old["strip"]) and len(strip) == cfg.strip_pairs + cfg.strip_new_pairs
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(revisit_pairs, old["strip"]))
    # Non-revisit frames come from the exploration run, started from one ground-truth frame.
    assert new.other.frames == rev[0] - cfg.explore_context and new.other.psnr_capped == 0
    src.context_frames = cfg.explore_context
    src.reset()
    made = [f.rgb for f in src.frames(traj.c2w[:rev[0]], traj.times[:rev[0]])][cfg.explore_context:]
    gt = [renderer.render(traj.c2w[i], float(traj.times[i])).rgb for i in range(cfg.explore_context, rev[0])]
    gen, gt = torch.stack(made), torch.stack(gt)
    assert new.other.psnr.value == pytest.approx(float(psnr(gen, gt).double().mean()), rel=1e-5)
    assert new.other.ssim.value == pytest.approx(float(ssim(gen, gt).double().mean()), rel=1e-5)
    assert new.other.gmsd.value == pytest.approx(float(gmsd(gen, gt).double().mean()), rel=1e-5)


class _Cheap:
    """A source and its ground truth in one: a gradient shifted by the camera's x, with a moving
    square; the source's frames are 3 grey levels off so nothing scores as identical."""
    name, chunk = "cheap", 4

    def __init__(self, offset: int):
        self.offset = offset
        y, x = torch.meshgrid(torch.arange(TINY.height), torch.arange(TINY.width), indexing="ij")
        self.base = torch.stack([x * 7, y * 11, (x + y) * 3], -1)

    def reset(self, seed=None, prompt=None) -> None:
        pass

    def render(self, c2w: torch.Tensor, t: float) -> Frame:
        shift = int(float(c2w[0, 3]) * 10)
        rgb = ((self.base + shift + self.offset) % 256).to(torch.uint8)
        dyn = torch.zeros(TINY.height, TINY.width, dtype=torch.bool)
        k = int(t * 16) % (TINY.width - 4)
        dyn[4:8, k:k + 4] = True
        rgb[dyn] = 255
        return Frame(rgb, torch.full((TINY.height, TINY.width), 5.0), dyn, c2w, t)

    def frames(self, c2w: torch.Tensor, times: torch.Tensor) -> list[Frame]:
        return [self.render(p, float(t)) for p, t in zip(c2w, times)]


def _walk(n: int) -> Trajectory:
    """x goes out and back twice; from a quarter on, two frames in three revisit."""
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3] = torch.sin(torch.arange(n) / n * 4 * math.pi)
    revisits = [(i, i - n // 4, 0.9) for i in range(n // 4, n) if i % 3]
    return Trajectory("walk", c2w, torch.arange(n) / 16.0, revisits)


def _kept_bytes(obj, seen: set) -> tuple[int, int]:
    """(tensor storage bytes, Python object bytes) reachable from `obj` through containers and
    attributes; ids in `seen` are not followed."""
    if id(obj) in seen:
        return 0, 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        key = ("storage", obj.untyped_storage().data_ptr())
        if key in seen:
            return 0, sys.getsizeof(obj)
        seen.add(key)
        return obj.untyped_storage().nbytes(), sys.getsizeof(obj)
    if isinstance(obj, dict):
        parts = [_kept_bytes(x, seen) for kv in obj.items() for x in kv]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        parts = [_kept_bytes(x, seen) for x in obj]
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        parts = [_kept_bytes(vars(obj), seen)]
    else:
        parts = []
    return sum(p[0] for p in parts), sys.getsizeof(obj) + sum(p[1] for p in parts)


# What the scorer is given or reads from its plan (which frames to score: the trajectory's
# revisit list in other shapes, a few ints a frame): input, not what scoring keeps.
GIVEN = ("traj", "renderer", "lpips", "plan", "_rev", "_scored", "_first", "_last", "_pose", "_strip")


def _scoring_memory(n: int, monkeypatch) -> tuple[int, int]:
    """Peak (tensor bytes, Python bytes) the scorer keeps while it scores an n-frame walk."""
    peak = [0, 0]

    class Measured(FrameScorer):
        def add(self, i, rgb, source_name):
            super().add(i, rgb, source_name)
            kept = _kept_bytes(self, {id(getattr(self, a)) for a in GIVEN})
            peak[:] = [max(peak[0], kept[0]), max(peak[1], kept[1])]

    monkeypatch.setattr(protocol, "FrameScorer", Measured)
    cfg = replace(QUICK, image=TINY, pose_frames=2)
    score = protocol.score_walk(_Cheap(3), SimpleNamespace(seed=0, prompt=None), _walk(n), cfg, _Cheap(0),
                                StLpips(), [])
    assert score.revisit.frames > 0 and score.other.frames > 0 and score.energy.count > 0
    return peak[0], peak[1]


def test_scoring_memory_is_flat_in_trajectory_length(monkeypatch, one_thread):
    kept_short, py_short = _scoring_memory(240, monkeypatch)
    kept_long, py_long = _scoring_memory(960, monkeypatch)
    frame = TINY.width * TINY.height * (3 + 3 + 4 + 1)    # generated, GT, depth, moving mask
    print(f"kept tensors {kept_short} -> {kept_long} B, Python objects {py_short} -> {py_long} B")
    # A batch, `stride` frames, pending pairs and the strip; where a batch ends differs a little.
    assert 0 < kept_long <= kept_short + 4 * frame and kept_long < 40 * frame
    assert py_long <= py_short * 1.1                      # running sums, no per-frame lists
