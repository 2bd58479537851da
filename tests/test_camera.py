"""Geometry against analytic answers."""

import math

import pytest
import torch

from worldplay.camera import (camera_rays, intrinsics, invert_se3, look_at, project, rotation_angle_deg,
                              scale_intrinsics, so3_exp, so3_log, unproject, yaw_pitch_of, yaw_pitch_pose)


def test_intrinsics_90deg_640x360():
    K = intrinsics(640, 360, 90.0)
    assert K[0, 0] == pytest.approx(320.0)   # f = (W/2) / tan(45deg)
    assert K[1, 1] == pytest.approx(320.0)
    assert (K[0, 2], K[1, 2]) == (320.0, 180.0)
    with pytest.raises(ValueError, match="fov"):
        intrinsics(fov_x_deg=0.0)


def test_project_known_points():
    K = intrinsics()
    c2w = look_at((0.0, 1.0, 0.0), (0.0, 1.0, -10.0))   # at y=1 looking down -z
    w2c = invert_se3(c2w)
    pts = torch.tensor([[0.0, 1.0, -5.0],    # straight ahead -> principal point
                        [1.0, 1.0, -2.0],    # 1 m right at 2 m -> u = 320 + 320 * 1/2
                        [0.0, 2.0, -4.0],    # 1 m UP at 4 m -> v = 180 - 320 * 1/4 (y down)
                        [0.0, 1.0, 3.0]])    # behind the camera -> z < 0
    uv, z = project(pts, w2c, K)
    assert torch.allclose(uv[0], torch.tensor([320.0, 180.0]))
    assert torch.allclose(uv[1], torch.tensor([480.0, 180.0]))
    assert torch.allclose(uv[2], torch.tensor([320.0, 100.0]))
    assert torch.allclose(z[:3], torch.tensor([5.0, 2.0, 4.0]))
    assert z[3] < 0


def test_unproject_inverts_project():
    g = torch.Generator().manual_seed(0)
    K = intrinsics(640, 360, 70.0)
    c2w = yaw_pitch_pose((1.0, 2.0, 3.0), 0.7, -0.3)
    pts = torch.randn(100, 3, generator=g) * 3 + c2w[:3, 3] + 6 * c2w[:3, 2]
    uv, z = project(pts, invert_se3(c2w), K)
    assert torch.allclose(unproject(uv, z, c2w, K), pts, atol=1e-4)


def test_look_at_axes_and_yaw_pitch():
    c2w = look_at((0, 0, 0), (1, 0, 0))          # look along +x
    assert torch.allclose(c2w[:3, 2], torch.tensor([1.0, 0, 0]), atol=1e-6)   # z forward
    assert torch.allclose(c2w[:3, 1], torch.tensor([0, -1.0, 0]), atol=1e-6)  # y down
    assert torch.allclose(c2w[:3, 0], torch.tensor([0, 0, 1.0]), atol=1e-6)   # x right
    # yaw = +90 deg from -z turns right, onto +x: same camera as above
    assert torch.allclose(yaw_pitch_pose((0, 0, 0), math.pi / 2, 0.0), c2w, atol=1e-6)
    yaw, pitch = yaw_pitch_of(yaw_pitch_pose((0, 0, 0), -0.4, 0.25))
    assert (yaw, pitch) == (pytest.approx(-0.4, abs=1e-6), pytest.approx(0.25, abs=1e-6))


def test_rays_have_unit_z_so_t_is_depth():
    K = intrinsics(64, 36, 90.0)
    c2w = yaw_pitch_pose((0, 1, 0), 0.3, 0.1)
    o, d = camera_rays(c2w, K, 36, 64)
    d_cam = d @ c2w[:3, :3]                      # back to camera frame
    assert torch.allclose(d_cam[..., 2], torch.ones(36, 64), atol=1e-6)
    assert torch.allclose(o, c2w[:3, 3])
    # ground plane y = 0 from height 1 looking level: centre-row pixels never hit; a pixel
    # one focal length below the centre (45 deg down) hits at z-depth 1.
    K2 = intrinsics(640, 360, 90.0)
    o2, d2 = camera_rays(yaw_pitch_pose((0, 1, 0), 0, 0), K2, 360, 640)
    row = 180 + 160 - 1                          # v = 339.5 -> (v - cy)/f = 0.5
    t = (0 - o2[1]) / d2[row, 320, 1]
    assert t.item() == pytest.approx(1.0 / ((row + 0.5 - 180) / 320.0), rel=1e-5)


def test_se3_helpers():
    w = torch.tensor([0.1, -0.2, 0.3])
    R = so3_exp(w)
    assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-6)
    assert torch.allclose(so3_log(R), w, atol=1e-5)
    assert rotation_angle_deg(R).item() == pytest.approx(math.degrees(w.norm().item()), abs=1e-3)
    T = yaw_pitch_pose((1, 2, 3), 0.5, 0.2)
    assert torch.allclose(invert_se3(T) @ T, torch.eye(4), atol=1e-6)
    K = scale_intrinsics(intrinsics(), 1 / 16)
    assert K[0, 0] == pytest.approx(20.0) and K[0, 2] == pytest.approx(20.0)
