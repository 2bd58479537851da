"""Controls are pure: integrate input over dt into camera poses."""

import math

import pytest
import torch

from worldplay.config import ControlsConfig
from worldplay.controls import CameraState, FirstPersonCamera, InputFrame


def test_w_moves_along_view_direction_frame_rate_independent():
    cfg = ControlsConfig()
    a = FirstPersonCamera(cfg, CameraState(0, 1.6, 0, yaw=0.6, pitch=0.2))
    b = FirstPersonCamera(cfg, CameraState(0, 1.6, 0, yaw=0.6, pitch=0.2))
    fwd = a.c2w()[:3, 2].clone()
    a.update(InputFrame(forward=1), 0.5)
    for _ in range(10):
        b.update(InputFrame(forward=1), 0.05)
    disp = a.c2w()[:3, 3] - torch.tensor([0, 1.6, 0])
    assert torch.allclose(disp, fwd * cfg.walk_speed * 0.5, atol=1e-5)
    assert torch.allclose(a.c2w(), b.c2w(), atol=1e-5)


def test_mouse_right_turns_right_and_pitch_clamps():
    cam = FirstPersonCamera(ControlsConfig())
    right_before = cam.c2w()[:3, 0].clone()
    cam.update(InputFrame(mouse_dx=100), 1 / 60)
    assert cam.state.yaw > 0
    assert torch.dot(cam.c2w()[:3, 2], right_before) > 0
    cam.update(InputFrame(mouse_dy=-1e6), 1 / 60)          # mouse far up
    assert cam.state.pitch == pytest.approx(math.radians(85.0))


def test_invert_y_and_sprint_and_height_clamp():
    inv = FirstPersonCamera(ControlsConfig(invert_y=True))
    inv.update(InputFrame(mouse_dy=50), 1 / 60)
    assert inv.state.pitch > 0                               # mouse down looks up when inverted
    s = FirstPersonCamera(ControlsConfig())
    s.update(InputFrame(strafe=1, sprint=True), 1.0)
    assert s.state.x == pytest.approx(ControlsConfig().walk_speed * ControlsConfig().sprint_multiplier)
    s.update(InputFrame(vertical=-1), 100.0)
    assert s.state.y == pytest.approx(ControlsConfig().min_height)


def test_rollout_does_not_change_state():
    cam = FirstPersonCamera()
    before = cam.c2w().clone()
    poses = cam.rollout(InputFrame(forward=1, mouse_dx=10), 1 / 16, 4)
    assert poses.shape == (4, 4, 4)
    assert torch.equal(cam.c2w(), before)
    assert poses[-1][2, 3] < poses[0][2, 3] < before[2, 3]   # walking along -z
