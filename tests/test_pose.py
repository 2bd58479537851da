"""The pose estimator against known answers: ~0 on ground truth, recovers known perturbations."""

import math

import pytest
import torch

from worldplay.camera import make_pose, so3_exp
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.eval.pose import estimate_pose, pose_errors
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene

IMAGE = ImageConfig()                        # the eval size: the estimator pools it to 320 wide itself
T_RENDER = 0.5                               # seconds: movers somewhere mid-motion


@pytest.fixture(scope="module", params=[5, 1_000_001])
def view(request):
    scene = make_scene(request.param)
    r = Renderer(scene, image=IMAGE)
    c2w = scene.spawn_pose()
    return r, c2w, r.render(c2w, T_RENDER)


def _perturbed(r, c2w, rot=(0.0, 0.0, 0.0), trans=(0.0, 0.0, 0.0)):
    """Render with the camera moved in its own frame (OpenCV: x right, y down, z forward)."""
    pose = c2w @ make_pose(so3_exp(torch.tensor(rot)), torch.tensor(trans))
    return pose, r.render(pose, T_RENDER)


def test_ground_truth_against_itself_is_zero(view):
    r, c2w, gt = view
    est = estimate_pose(gt.rgb, gt.rgb, gt.depth, r.K, c2w, gt.dynamic)
    assert est.ok
    assert est.rot_err_deg < 0.05 and est.trans_err < 0.005
    assert torch.allclose(est.c2w, c2w, atol=1e-5)


def test_known_yaw_of_one_degree(view):
    r, c2w, gt = view
    pose, gen = _perturbed(r, c2w, rot=(0.0, math.radians(1.0), 0.0))
    est = estimate_pose(gen.rgb, gt.rgb, gt.depth, r.K, c2w, gt.dynamic)
    assert 0.9 <= est.rot_err_deg <= 1.1
    rot, trans = pose_errors(est.c2w, pose)           # the estimate lands on the true camera
    assert rot < 0.1 and trans < 0.05


def test_known_sideways_translation(view):
    r, c2w, gt = view
    pose, gen = _perturbed(r, c2w, trans=(0.2, 0.0, 0.0))
    est = estimate_pose(gen.rgb, gt.rgb, gt.depth, r.K, c2w, gt.dynamic)
    assert est.trans_err == pytest.approx(0.2, rel=0.10)
    assert est.rot_err_deg < 0.2
    # direction, not only length: the camera moved along its own +x
    moved = est.c2w[:3, 3] - c2w[:3, 3]
    assert float(moved @ c2w[:3, 0]) == pytest.approx(0.2, rel=0.10)


def test_known_forward_translation(view):
    r, c2w, gt = view
    _, gen = _perturbed(r, c2w, trans=(0.0, 0.0, 0.3))
    est = estimate_pose(gen.rgb, gt.rgb, gt.depth, r.K, c2w, gt.dynamic)
    assert est.trans_err == pytest.approx(0.3, rel=0.10)


def test_ignores_unseen_black_regions(view):
    """A reprojection baseline leaves unseen parts black; the pose must come from the rest."""
    r, c2w, gt = view
    _, gen = _perturbed(r, c2w, rot=(0.0, math.radians(1.0), 0.0))
    holed = gen.rgb.clone()
    holed[:, : IMAGE.width * 2 // 5] = 0                # 40% of the frame never seen
    est = estimate_pose(holed, gt.rgb, gt.depth, r.K, c2w, gt.dynamic)
    assert 0.85 <= est.rot_err_deg <= 1.15


def test_no_texture_gives_no_estimate():
    K = torch.tensor([[80.0, 0, 80], [0, 80, 45], [0, 0, 1]])
    sky = torch.full((90, 160), 100.0)                  # all sky: nothing to align
    img = torch.full((90, 160, 3), 128, dtype=torch.uint8)
    est = estimate_pose(img, img, sky, K, torch.eye(4))
    assert not est.ok and math.isnan(est.rot_err_deg) and math.isnan(est.trans_err)


def test_mismatched_inputs_are_a_clear_error():
    img = torch.zeros(90, 160, 3, dtype=torch.uint8)
    with pytest.raises(WorldplayError, match="matching frames"):
        estimate_pose(img, img[:45], torch.ones(90, 160), torch.eye(3), torch.eye(4))
