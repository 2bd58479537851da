"""MosaicWorld scenes and renderer: analytic depths, determinism, motion, errors, guarantees."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worldplay.camera import camera_rays, intrinsics, look_at, yaw_pitch_pose
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.frame import SKY_DEPTH
from worldplay.sources.bench import bench_source
from worldplay.sources.world import WorldSource
from worldplay.vocab import VOCAB
from worldplay.world.primitives import BOX, MAX_PRIMS
from worldplay.world.render import Renderer
from worldplay.world.scene import Scene, make_scene
from worldplay.world.textures import CHECKER, N_PATTERNS, pattern
from worldplay.world.zones import CLEAR_INNER, CLEARANCE, HEADROOM

SMALL = ImageConfig(width=64, height=36)
MEDIUM = ImageConfig(width=160, height=90)
DEPTH_RTOL = 1e-4      # the packed z-buffer keeps depth to ~1.5e-5 relative


def _analytic_quadric_depth(img: ImageConfig, c2w: torch.Tensor, hit) -> np.ndarray:
    """Per-pixel z-depth from `hit(o, d) -> t or nan`, in float64 (ray z-component = 1)."""
    K = intrinsics(img.width, img.height, img.fov_x_deg, dtype=torch.float64)
    o, d = camera_rays(c2w.double(), K, img.height, img.width)
    return hit(o.numpy(), d.numpy())


def test_ground_depth_matches_pitch_formula():
    h, pitch = 2.0, math.radians(30)
    scene = Scene.from_primitives()
    frame = Renderer(scene, image=SMALL).render(yaw_pitch_pose((0.0, h, 0.0), 0.0, -pitch))
    f = SMALL.width / 2                                        # 90 degree horizontal FOV
    for row in (14, 18, 30, 35):                               # rows below the horizon
        y_c = (row + 0.5 - SMALL.height / 2) / f
        expected = h / (math.sin(pitch) + y_c * math.cos(pitch))   # z-depth on the plane
        got = frame.depth[row]                                 # same for every column at yaw 0
        assert torch.allclose(got, torch.full_like(got, expected), rtol=DEPTH_RTOL), row


def test_sphere_cylinder_and_box_depths_are_analytic():
    img = MEDIUM
    c2w = yaw_pitch_pose((0.0, 1.6, 0.0), 0.0, 0.0)            # looks along -z
    scene = Scene.from_primitives(spheres=[(-2.5, 1.6, -10.0, 1.5)],
                                  cylinders=[(2.5, 1.5, -9.0, 0.8, 1.5)],
                                  boxes=[(0.0, 0.5, -6.0, 0.6, 0.5, 0.4)])
    frame = Renderer(scene, image=img).render(c2w)

    def sphere(o, d, c=np.array([-2.5, 1.6, -10.0]), r=1.5):
        oc = o - c
        a, b = (d * d).sum(-1), (d * oc).sum(-1)
        disc = b * b - a * ((oc * oc).sum() - r * r)
        return np.where(disc > 1e-3, (-b - np.sqrt(np.abs(disc))) / a, np.nan)

    def cylinder(o, d, c=np.array([2.5, 1.5, -9.0]), r=0.8, hh=1.5):
        ocx, ocz = o[0] - c[0], o[2] - c[2]
        a = d[..., 0] ** 2 + d[..., 2] ** 2
        b = d[..., 0] * ocx + d[..., 2] * ocz
        disc = b * b - a * (ocx ** 2 + ocz ** 2 - r * r)
        t = (-b - np.sqrt(np.abs(disc))) / a
        y = o[1] + t * d[..., 1] - c[1]
        return np.where((disc > 1e-3) & (np.abs(y) < hh - 1e-2), t, np.nan)

    for hit in (sphere, cylinder):
        want = _analytic_quadric_depth(img, c2w, hit)
        ok = ~np.isnan(want)
        assert ok.sum() > 50
        np.testing.assert_allclose(frame.depth.numpy()[ok], want[ok], rtol=DEPTH_RTOL)
    # The box's front face is fronto-parallel at z = -5.6: constant z-depth 5.6 where seen.
    want = _analytic_quadric_depth(img, c2w, lambda o, d: np.where(
        (np.abs(o[0] + 5.6 * d[..., 0]) < 0.59) & (np.abs(o[1] + 5.6 * d[..., 1] - 0.5) < 0.49),
        5.6, np.nan))
    ok = ~np.isnan(want)
    assert ok.sum() > 20
    np.testing.assert_allclose(frame.depth.numpy()[ok], 5.6, rtol=DEPTH_RTOL)


def test_fast_rays_match_camera_rays():
    scene = Scene.from_primitives()
    r = Renderer(scene, image=SMALL)
    c2w = look_at((1.0, 2.0, 3.0), (-4.0, 0.5, -2.0))
    o, d = camera_rays(c2w, r.K, SMALL.height, SMALL.width)
    rays = r.rays(c2w)
    assert torch.allclose(torch.stack([rays.dx, rays.dy, rays.dz], -1), d, atol=1e-6)
    assert torch.allclose(torch.tensor(rays.o), o)


def test_same_seed_time_pose_gives_identical_frames():
    prompt = "garden dawn spheres boxes busy"
    a, b = make_scene(7, prompt), make_scene(7, prompt)
    pose = a.spawn_pose()
    fa = Renderer(a, image=MEDIUM).render(pose, 1.25)
    fb = Renderer(b, image=MEDIUM).render(pose, 1.25)
    assert torch.equal(fa.rgb, fb.rgb) and torch.equal(fa.depth, fb.depth)
    assert torch.equal(fa.dynamic, fb.dynamic)


def test_resolved_prompt_rebuilds_the_same_scene():
    s = make_scene(11)
    again = make_scene(11, s.prompt)
    assert again.prompt == s.prompt
    assert torch.equal(s.statics, again.statics) and torch.equal(s.movers, again.movers)
    words = s.prompt.split()
    assert words[0] in VOCAB["theme"] and words[1] in VOCAB["time"]
    assert words[-1] in VOCAB["motion"] and all(w in VOCAB["features"] for w in words[2:-1])
    assert make_scene(12).prompt != s.prompt or not torch.equal(make_scene(12).statics, s.statics)


def test_partial_prompt_keeps_given_words():
    s = make_scene(3, "Desert, pillars")
    assert s.prompt.split()[0] == "desert" and "pillars" in s.prompt.split()
    assert s.layout_notes["pillars"] > 0


def test_movers_change_pixels_and_static_pixels_do_not():
    scene = make_scene(5, "city noon boxes busy")
    t0, t1 = 0.0, 0.7
    eye = scene.spawn_pose()[:3, 3]
    r = Renderer(scene, image=MEDIUM)
    seen = False
    for k in range(scene.n_dynamic):                          # look at each mover in turn
        target = scene.dynamic_positions(t0)[k]
        if (target - eye).norm() < 1.0:
            continue
        pose = look_at(eye.tolist(), target.tolist())
        a, b = r.render(pose, t0), r.render(pose, t1)
        moving = a.dynamic | b.dynamic
        if not a.dynamic.any():
            continue
        seen = True
        assert (a.rgb != b.rgb).any(-1)[moving].any()
        still = ~moving
        assert torch.equal(a.rgb[still], b.rgb[still])
        assert torch.equal(a.depth[still], b.depth[still])
    assert seen


def test_unknown_word_lists_allowed_words_and_suggests():
    with pytest.raises(WorldplayError) as e:
        make_scene(0, "dessert noon")
    msg = str(e.value)
    assert "'dessert'" in msg and "did you mean 'desert'" in msg
    for group, words in VOCAB.items():
        assert group in msg and all(w in msg for w in words)
    with pytest.raises(WorldplayError, match="theme"):
        make_scene(0, "desert snow")


def test_full_size_frame_shapes_and_dtypes():
    scene = make_scene(0)
    pose = scene.spawn_pose()
    frame = Renderer(scene).render(pose, 0.5)
    assert frame.rgb.shape == (360, 640, 3) and frame.rgb.dtype == torch.uint8
    assert frame.depth.shape == (360, 640) and frame.depth.dtype == torch.float32
    assert frame.dynamic.shape == (360, 640) and frame.dynamic.dtype == torch.bool
    assert frame.rgb.device.type == "cpu" and torch.equal(frame.c2w, pose) and frame.t == 0.5
    assert frame.depth[0].eq(SKY_DEPTH).any()                 # sky above the walls
    assert frame.depth.min() > 0 and frame.depth.max() <= SKY_DEPTH


@pytest.mark.parametrize("seed", range(12))
def test_free_annulus_guarantee(seed):
    """No solid below HEADROOM within [CLEAR_INNER*R - CLEARANCE, R + CLEARANCE] of the centre."""
    s = make_scene(seed, None if seed % 2 else "ruins noon pillars boxes spheres walls arches busy")
    lo, hi = CLEAR_INNER * s.radius - CLEARANCE, s.radius + CLEARANCE
    cx, _, cz = s.center
    for t in np.linspace(0.0, 30.0, 61):
        for kind, x, y, z, sx, sy, sz, _ in s.primitives(float(t)).tolist():
            if y - sy >= HEADROOM - 1e-5:
                continue
            if kind == BOX:
                near = math.hypot(min(max(cx, x - sx), x + sx) - cx,   # closest footprint point
                                  min(max(cz, z - sz), z + sz) - cz)
                far = max(math.hypot(x + a * sx - cx, z + b * sz - cz)
                          for a in (-1, 1) for b in (-1, 1))
            else:                                              # round footprint of radius sx
                dist = math.hypot(x - cx, z - cz)
                near, far = dist - sx, dist + sx
            assert near >= hi - 1e-5 or far <= lo + 1e-5, (seed, t, kind)
            assert abs(x) + sx <= s.half_size and abs(z) + sz <= s.half_size


def test_movers_never_touch_each_other():
    for seed in range(6):
        s = make_scene(seed, "city noon boxes busy")
        box = s.movers[:, 0] == BOX
        reach = torch.where(box, s.movers[:, 1:4].norm(dim=1), s.movers[:, 1])   # (Nm,) bounds
        for t in np.linspace(0.0, 40.0, 161):
            pos = s.dynamic_positions(float(t))               # (Nm, 3)
            gap = torch.cdist(pos, pos) - (reach[:, None] + reach[None, :])
            gap.fill_diagonal_(float("inf"))
            assert gap.min() > 0, (seed, t)


def test_orbit_path_never_starts_inside_an_object():
    scene = make_scene(4, "forest noon pillars spheres busy")
    r = Renderer(scene, image=SMALL)
    for frac in (0.3, 0.6, 0.9):
        for a in np.linspace(0, 2 * math.pi, 8, endpoint=False):
            rad = scene.radius * frac
            eye = (rad * math.sin(a), scene.center[1], rad * math.cos(a))
            frame = r.render(look_at(eye, scene.center), 0.0)
            assert frame.depth.min() > CLEARANCE * 0.9          # nothing right at the lens


def test_too_many_primitives_is_a_clear_error():
    with pytest.raises(WorldplayError, match="at most"):
        Scene.from_primitives(spheres=[(i, 1.0, -5.0, 0.2) for i in range(MAX_PRIMS + 1)])


def test_bad_device_and_fog_are_clear_errors():
    scene = Scene.from_primitives()
    if not torch.cuda.is_available():
        with pytest.raises(WorldplayError, match="cuda"):
            Renderer(scene, device="cuda")
    with pytest.raises(WorldplayError, match="fog"):
        Renderer(scene, fog=(50.0, 10.0))


def test_patterns_stay_in_range_and_repeat_across_zero():
    u, v = torch.meshgrid(torch.linspace(-3.7, 3.7, 81), torch.linspace(-2.2, 2.2, 45),
                          indexing="ij")
    for kind in range(N_PATTERNS):
        w, bright = pattern(kind, u, v)
        assert w.min() >= 0.0 and w.max() <= 1.0, kind
        if bright is not None:
            assert bright.min() > 0.5 and bright.max() < 1.5, kind
    checker, _ = pattern(CHECKER, torch.tensor([-1.5, -0.5, 0.5, 1.5]), torch.full((4,), 0.5))
    assert checker.tolist() == [0.0, 1.0, 0.0, 1.0]           # alternates through zero too


def test_bench_reports_its_fields():
    out = bench_source(WorldSource(1, image=SMALL), seconds=0.05)
    assert out["source"] == "world" and out["frames"] >= 1 and out["width"] == 64
    assert out["fps"] > 0 and out["ms_per_frame_p95"] >= out["ms_per_frame_p50"] > 0
    assert out["scene"] == make_scene(1).prompt
