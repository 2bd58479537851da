"""Scripted paths: smooth, inside the free annulus, and they come back (revisits)."""

import json
import math
from dataclasses import dataclass

import pytest
import torch

from worldplay.camera import rotation_angle_deg, yaw_pitch_pose
from worldplay.config import ControlsConfig
from worldplay.errors import WorldplayError
from worldplay.world.trajectories import (MAX_SPEED, MAX_TURN_RATE, PATHS, Trajectory, find_revisits,
                                          load_path_file, make_trajectory, poses_from, resolve_path,
                                          view_overlap)

FPS = 16.0
SECONDS = 20.0   # long enough for every path to close at walking pace in a 9 m scene


@dataclass
class FakeScene:
    center: tuple = (2.0, 1.6, -3.0)
    radius: float = 9.0
    seed: int = 0


@pytest.fixture(scope="module")
def trajectories():
    return {name: make_trajectory(name, FakeScene(), int(SECONDS * FPS), FPS, seed=5) for name in PATHS}


def test_poses_from_matches_yaw_pitch_pose():
    P = poses_from(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([0.7]), torch.tensor([-0.2]))
    assert torch.allclose(P[0], yaw_pitch_pose((1, 2, 3), 0.7, -0.2), atol=1e-6)


@pytest.mark.parametrize("name", list(PATHS))
def test_path_shape_smooth_and_inside_the_free_annulus(trajectories, name):
    tr = trajectories[name]
    n = int(SECONDS * FPS)
    assert tr.c2w.shape == (n, 4, 4) and tr.times.shape == (n,)
    assert torch.allclose(tr.times[1] - tr.times[0], torch.tensor(1 / FPS))
    R = tr.c2w[:, :3, :3]
    assert torch.allclose(R.transpose(-1, -2) @ R, torch.eye(3).expand(n, 3, 3), atol=1e-5)
    assert tr.c2w[:, 1, 0].abs().max() < 1e-5                              # camera x stays horizontal: no roll
    pos = tr.c2w[:, :3, 3]
    assert torch.allclose(pos[:, 1], torch.full((n,), 1.6))                # eye height
    dist = (pos[:, [0, 2]] - torch.tensor([2.0, -3.0])).norm(dim=-1)
    assert dist.min() >= 0.3 * 9.0 - 1e-4 and dist.max() <= 0.9 * 9.0      # the scene's guaranteed-free band
    step = (pos[1:] - pos[:-1]).norm(dim=-1)
    assert step.max() <= MAX_SPEED / FPS * 1.05                            # a walk: no teleports
    turn = rotation_angle_deg(R[1:].transpose(-1, -2) @ R[:-1])
    assert turn.max() <= math.degrees(MAX_TURN_RATE) / FPS * 1.2           # yaw + small pitch wobble


@pytest.mark.parametrize("name", list(PATHS))
def test_every_path_comes_back_to_what_it_saw(trajectories, name):
    tr = trajectories[name]
    gap = int(FPS)                                                         # min_gap_s = 1 s
    assert tr.revisits, f"{name} has no revisits"
    assert all(i - j >= gap and 0.5 <= ov <= 1.0 for i, j, ov in tr.revisits)
    assert len({i for i, _, _ in tr.revisits}) == len(tr.revisits)         # one best j per frame
    assert max(ov for _, _, ov in tr.revisits) >= 0.9


@pytest.mark.parametrize("name", ["orbit", "loop", "out-and-back", "look-away"])
def test_closed_paths_return_to_their_start_pose(trajectories, name):
    tr = trajectories[name]
    end_to_start = (tr.c2w[-1, :3, 3] - tr.c2w[0, :3, 3]).norm()
    assert end_to_start < 2.5 / FPS * 2                                    # within two steps of the start
    assert any(i >= len(tr) - FPS and j < FPS and ov >= 0.9 for i, j, ov in tr.revisits)  # end sees the start


def test_orbit_closes_a_lap_in_four_seconds():
    tr = make_trajectory("orbit", FakeScene(), 64, FPS)
    assert any(i >= 56 and j <= 8 and ov >= 0.8 for i, j, ov in tr.revisits)


def test_short_clips_play_part_of_the_path_at_walking_pace():
    for name in PATHS:
        tr = make_trajectory(name, FakeScene(), 8, FPS)
        assert tr.c2w.shape == (8, 4, 4)
        steps = (tr.c2w[1:, :3, 3] - tr.c2w[:-1, :3, 3]).norm(dim=-1)
        limit = 4.5 if name == "orbit" else MAX_SPEED * 1.05              # orbit keeps its 4 s lap
        assert steps.max() <= limit / FPS
    assert make_trajectory("loop", FakeScene(), 1, FPS).c2w.shape == (1, 4, 4)


def test_seeds_are_reproducible_and_vary_the_path():
    a = make_trajectory("random-walk", FakeScene(), 64, FPS, seed=1, with_revisits=False)
    b = make_trajectory("random-walk", FakeScene(), 64, FPS, seed=1, with_revisits=False)
    c = make_trajectory("random-walk", FakeScene(), 64, FPS, seed=2, with_revisits=False)
    assert torch.equal(a.c2w, b.c2w) and not torch.allclose(a.c2w, c.c2w)
    assert a.revisits == []


def test_unknown_path_lists_the_valid_names():
    with pytest.raises(WorldplayError, match="orbit.*loop.*out-and-back.*figure-eight.*random-walk.*look-away"):
        make_trajectory("spiral", FakeScene(), 10)
    with pytest.raises(WorldplayError, match="unknown path 'spiral'"):
        resolve_path("spiral", FakeScene(), 10)


def test_view_overlap_same_view_is_one_and_opposite_is_zero():
    a = yaw_pitch_pose((0, 1.6, 0), 0.0, 0.0)
    b = yaw_pitch_pose((0, 1.6, 0), math.pi, 0.0)
    ov = view_overlap(torch.stack([a, b]), torch.stack([a, b]))
    assert torch.allclose(ov, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_find_revisits_on_a_hand_built_look_away():
    yaws = [0.0] * 20 + [math.pi] * 20 + [0.0] * 20
    c2w = torch.stack([yaw_pitch_pose((0, 1.6, 0), y, 0.0) for y in yaws])
    rev = find_revisits(c2w, FPS)
    assert [i for i, _, _ in rev] == list(range(40, 60))                  # only after turning back
    assert all(j < 20 and ov == 1.0 for _, j, ov in rev)
    walk = torch.stack([yaw_pitch_pose((0, 1.6, -0.1 * k), 0.0, 0.0) for k in range(60)])
    assert find_revisits(walk, FPS) == []                                  # walking on is not a revisit


# ---- path files ---------------------------------------------------------------------------

def _write(tmp_path, data, name="path.json"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_pose_file_flat_and_nested_round_trip(tmp_path):
    poses = torch.stack([yaw_pitch_pose((0.5 * k, 1.6, 0), 0.1 * k, 0.0) for k in range(5)])
    flat = _write(tmp_path, {"poses": [p.flatten().tolist() for p in poses], "fps": 16})
    nested = _write(tmp_path, {"poses": [p.tolist() for p in poses]}, "nested.json")
    for f in (flat, nested):
        tr = load_path_file(f, fps=16)
        assert isinstance(tr, Trajectory) and torch.allclose(tr.c2w, poses, atol=1e-6)
        assert torch.allclose(tr.times, torch.arange(5) / 16.0)


def test_pose_file_is_resampled_to_the_requested_fps(tmp_path):
    poses = torch.stack([yaw_pitch_pose((float(k), 1.6, 0), 0.2 * k, 0.0) for k in range(5)])
    f = _write(tmp_path, {"poses": [p.tolist() for p in poses], "fps": 8})
    tr = load_path_file(f, fps=16)
    assert tr.c2w.shape == (9, 4, 4)
    assert torch.allclose(tr.c2w[::2], poses, atol=1e-5)
    assert torch.allclose(tr.c2w[1], yaw_pitch_pose((0.5, 1.6, 0), 0.1, 0.0), atol=1e-5)  # halfway


def test_key_events_w_held_walks_along_minus_z(tmp_path):
    speed = ControlsConfig().walk_speed
    f = _write(tmp_path, {"start": {"x": 1.0, "y": 1.6, "z": 2.0, "yaw": 0.0, "pitch": 0.0}, "seconds": 2.0,
                          "events": [{"t": 0.0, "keys": ["w"]}, {"t": 1.0, "keys": []}]})
    tr = load_path_file(f, fps=FPS)
    assert tr.c2w.shape == (32, 4, 4)
    pos = tr.c2w[:, :3, 3]
    assert torch.allclose(pos[16], torch.tensor([1.0, 1.6, 2.0 - speed]), atol=1e-4)  # 1 s of W
    assert torch.allclose(pos[-1], pos[16], atol=1e-5)                                 # released: stands
    assert torch.allclose(tr.c2w[:, :3, 2], torch.tensor([0.0, 0.0, -1.0]).expand(32, 3), atol=1e-6)


def test_key_events_mouse_turns_once(tmp_path):
    sens = ControlsConfig().mouse_sensitivity
    f = _write(tmp_path, {"seconds": 0.5, "events": [{"t": 0.0, "keys": [], "mouse_dx": 100}]})
    tr = load_path_file(f, fps=FPS)
    expected = yaw_pitch_pose((0, 1.6, 0), 100 * sens, 0.0)
    assert torch.allclose(tr.c2w[1], expected, atol=1e-5) and torch.allclose(tr.c2w[-1], expected, atol=1e-5)


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ({"frames": []}, "\"poses\" or \"events\""),
    ({"poses": [[1, 2, 3]]}, "pose 0 must be 16 numbers"),
    ({"poses": [[2.0] * 16]}, "pose 0 is not a rigid"),
    ({"events": [{"t": 0, "keys": ["q"]}], "seconds": 1}, "unknown keys"),
    ({"events": [{"t": 0, "keys": ["w"]}]}, "\"seconds\" must be a positive number"),
    ({"events": [{"t": 1, "keys": []}, {"t": 0, "keys": []}], "seconds": 2}, "before the previous event"),
])
def test_malformed_path_files_name_the_file_and_the_problem(tmp_path, content, match):
    f = _write(tmp_path, content, "bad.json")
    with pytest.raises(WorldplayError, match=match) as e:
        load_path_file(f)
    assert "bad.json" in str(e.value) and "\n" not in str(e.value)


def test_resolve_path_takes_names_and_files(tmp_path):
    assert resolve_path("loop", FakeScene(), 10, FPS).name == "loop"
    with pytest.raises(WorldplayError, match="does not exist"):
        resolve_path(str(tmp_path / "missing.json"), FakeScene(), 10)
    poses = [yaw_pitch_pose((0, 1.6, -0.1 * k), 0.0, 0.0).tolist() for k in range(12)]
    f = _write(tmp_path, {"poses": poses})
    assert len(resolve_path(str(f), FakeScene(), None, 16)) == 12
    assert len(resolve_path(str(f), FakeScene(), 8, 16)) == 8
    with pytest.raises(WorldplayError, match="has 12 frames"):
        resolve_path(str(f), FakeScene(), 20, 16)
