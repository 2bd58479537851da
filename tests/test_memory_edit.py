"""Memory editing, colour memories, warp canvases and save/load of MosaicMemory."""

import pytest
import torch
from memory_scenes import EYE, facing, plane_z_depth
from safetensors.torch import save_file

from worldplay.camera import intrinsics, make_pose
from worldplay.errors import WorldplayError
from worldplay.memory import MemoryConfig, MosaicMemory, Region, region_at, render_canvas, rgb_features
from worldplay.session_file import save_session

K = intrinsics()


pytestmark = pytest.mark.usefixtures("one_thread")


def random_feats(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*cfg.grid_hw, cfg.feature_dim, generator=g)


def plane_memory(cfg=None, t=0.0, seed=0) -> MosaicMemory:
    cfg = cfg or MemoryConfig(capacity=5000, feature_dim=8)
    mem = MosaicMemory(cfg)
    mem.insert(random_feats(cfg, seed), plane_z_depth(cfg, facing(), K, -6.0), facing(), K, t=t)
    return mem


def test_erase_region_removes_it_from_retrieval():
    mem = plane_memory()
    region = Region.sphere((0.0, EYE, -6.0), 1.5)
    erased = mem.erase(region)
    assert erased > 0 and len(mem) == 240 - erased
    b = mem.retrieve(facing(), K, 240)
    assert not region.contains(mem.store.centre[b.ids]).any()
    canvas, mask = mem.warp_canvas(facing(), K)
    assert mask.mean() < 1.0                                    # a hole where the region was
    new = random_feats(mem.cfg, 9)                               # the world shows something new there
    mem.insert(new, plane_z_depth(mem.cfg, facing(), K, -6.0), facing(), K, t=5.0)
    b = mem.retrieve(facing(), K, 240)
    inside = region.contains(mem.store.centre[b.ids])
    assert inside.any() and torch.all(b.times[inside] == 5.0)


def test_aim_and_erase_with_pick():
    mem = plane_memory()
    centre_px = (320.0, 180.0)
    depth = mem.pick(facing(), K, centre_px)
    assert depth == pytest.approx(6.0, rel=1e-4)
    mem.erase(region_at(facing(), K, centre_px, depth, radius=0.5))
    assert mem.pick(facing(), K, centre_px) is None
    assert mem.pick(facing(), K, (-50.0, 10.0)) is None         # off screen
    with pytest.raises(WorldplayError, match="aim at a surface"):
        region_at(facing(), K, centre_px, 0.0, radius=0.5)


def test_paste_with_translation_shows_up_at_the_new_place():
    mem = plane_memory()
    box = Region.box((-1.0, 0.5, -7.0), (1.0, 2.5, -5.0))
    patches = mem.copy(box)
    assert len(patches) > 0
    shift = make_pose(torch.eye(3), torch.tensor([20.0, 0.0, 0.0]))
    mem.store.now = 3.0
    assert mem.paste(patches, shift) == len(patches)
    moved = mem.retrieve(facing(x=20.0), K, 240)
    assert len(moved) == len(patches)
    assert torch.all(moved.times == 3.0)
    order = torch.argsort(moved.features[:, 0])
    src_order = torch.argsort(patches.feat[:, 0])
    assert torch.allclose(moved.features[order], patches.feat[src_order].half().float())
    assert torch.allclose(mem.store.centre[moved.ids[order]], patches.centre[src_order] + shift[:3, 3])
    assert torch.allclose(moved.src_c2w[:, 0, 3], torch.full((len(moved),), 20.0))
    original = mem.retrieve(facing(), K, 240)                   # the source is still there
    assert len(original) == 240 and torch.all(original.times == 0.0)
    with pytest.raises(WorldplayError, match="rigid"):
        mem.paste(patches, torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))


def test_colour_memory_round_trip_through_warp_and_render():
    cfg = MemoryConfig(capacity=1000, feature_dim=3)
    g = torch.Generator().manual_seed(1)
    h, w = cfg.grid_hw
    colours = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
    full = colours.repeat_interleave(cfg.patch_px, 0).repeat_interleave(cfg.patch_px, 1)
    rgb = full[cfg.pad_top:cfg.pad_top + cfg.image_height].contiguous()            # (360, 640, 3)
    mem = MosaicMemory(cfg)
    assert mem.import_view(rgb, plane_z_depth(cfg, facing(), K, -6.0), facing(), K, t=0.0) == h * w
    canvas, mask = mem.warp_canvas(facing(), K)
    assert mask.all()
    assert torch.equal(render_canvas(canvas, mask), rgb)
    fine = rgb_features(rgb, cfg.patch_px, sub=4)
    assert fine.shape == (h, w, 48)
    assert torch.equal(render_canvas(fine.permute(2, 0, 1)), rgb)
    with pytest.raises(WorldplayError, match="not"):
        plane_memory().import_view(rgb, torch.full((h, w), 6.0), facing(), K)
    with pytest.raises(WorldplayError, match="uint8"):
        rgb_features(rgb.float())


def test_warp_canvas_nearest_wins_and_fills_when_approaching():
    cfg = MemoryConfig(capacity=2000, feature_dim=8)
    mem = MosaicMemory(cfg)
    far_f, wall_f = torch.zeros(*cfg.grid_hw, 8), torch.ones(*cfg.grid_hw, 8)
    mem.insert(far_f, plane_z_depth(cfg, facing(), K, -10.0), facing(), K, t=0.0)
    mem.insert(wall_f, plane_z_depth(cfg, facing(), K, -3.0), facing(), K, t=1.0)
    h, w = cfg.grid_hw
    for grid in ((h, w), (2 * h, 2 * w)):
        canvas, mask = mem.warp_canvas(facing(-1.0), K, grid)  # 2 m from the wall: patches spread out
        assert canvas.shape == (8, *grid) and mask.all()
        assert torch.all(canvas == 1.0)
    b = mem.retrieve(facing(-1.0), K, 40)
    canvas, mask = mem.warp_canvas(facing(-1.0), K, ids=b.ids)
    assert 0 < mask.sum() < h * w                               # only the retrieved patches


def test_save_load_retrieve_identical(tmp_path):
    mem = plane_memory(t=1.5)
    mem.insert(random_feats(mem.cfg, 3), plane_z_depth(mem.cfg, facing(-1.0), K, -4.0), facing(-1.0), K, t=2.0)
    mem.erase(Region.sphere((0.0, EYE, -4.0), 0.5))
    path = tmp_path / "mem.safetensors"
    mem.save(path)
    loaded = MosaicMemory.load(path)
    assert loaded.cfg == mem.cfg and loaded.stats() == mem.stats()
    poses = torch.stack([facing(0.5), facing(-0.5, 0.3)])
    a, b = mem.retrieve(poses, K, 200), loaded.retrieve(poses, K, 200)
    for name in ("features", "pos_yx", "target", "src_c2w", "src_K", "times", "depth", "ids"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    other = MosaicMemory(MemoryConfig(capacity=9000, feature_dim=8))          # bigger capacity is fine
    other.restore(path)
    assert torch.equal(other.retrieve(poses, K, 200).features, a.features)
    assert other.insert(random_feats(mem.cfg, 4), plane_z_depth(mem.cfg, facing(), K, -6.0), facing(), K, 3.0) > 0


def test_bad_files_leave_the_running_memory_untouched(tmp_path):
    mem = plane_memory()
    good = tmp_path / "good.safetensors"
    mem.save(good)
    running = plane_memory(seed=7, t=4.0)
    before = running.retrieve(facing(), K, 240)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    no_memory = tmp_path / "poses_only.safetensors"
    save_session(no_memory, {"poses": torch.eye(4)}, {})
    wrong_cfg = tmp_path / "wrong_cfg.safetensors"
    MosaicMemory(MemoryConfig(capacity=100, feature_dim=16)).save(wrong_cfg)
    for bad in (truncated, foreign, no_memory, wrong_cfg):
        with pytest.raises(WorldplayError, match=bad.name):
            running.restore(bad)
        after = running.retrieve(facing(), K, 240)
        assert torch.equal(after.features, before.features) and torch.equal(after.ids, before.ids)
    small = MosaicMemory(MemoryConfig(capacity=100, feature_dim=8))
    with pytest.raises(WorldplayError, match="capacity"):
        small.restore(good)
    sd = mem.state_dict()
    sd["centre"] = sd["centre"][:, :2]
    with pytest.raises(WorldplayError, match="centre"):
        running.load_state_dict(sd)
