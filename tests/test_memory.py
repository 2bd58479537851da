"""MosaicMemory: lifting, occlusion-aware retrieval, budgets, dedup/eviction and a looping walk."""

import math

import pytest
import torch
from memory_scenes import EYE, FPS, facing, loop_pose, plane_z_depth, room_depth

from worldplay.camera import intrinsics, look_at
from worldplay.errors import WorldplayError
from worldplay.frame import SKY_DEPTH
from worldplay.memory import MemoryConfig, MosaicMemory
from worldplay.memory.splat import Candidates, zbuffer

K = intrinsics()


pytestmark = pytest.mark.usefixtures("one_thread")


def small_cfg(**kw) -> MemoryConfig:
    return MemoryConfig(**{"capacity": 20_000, "feature_dim": 8, "feature_dtype": "float32", **kw})


def index_features(cfg: MemoryConfig) -> torch.Tensor:
    """Features whose first two dims are the patch's (row, col): retrieval can be checked against them."""
    h, w = cfg.grid_hw
    f = torch.zeros(h, w, cfg.feature_dim)
    f[..., 0] = torch.arange(h, dtype=torch.float32)[:, None]
    f[..., 1] = torch.arange(w, dtype=torch.float32)[None, :]
    return f


def test_lift_then_project_into_source_view_returns_patch_centres():
    cfg = small_cfg()
    mem = MosaicMemory(cfg)
    h, w = cfg.grid_hw
    g = torch.Generator().manual_seed(0)
    depth = 2.0 + 18.0 * torch.rand(h, w, generator=g)
    c2w = look_at((1.0, 2.0, 3.0), (4.0, 1.0, -6.0))
    assert mem.insert(index_features(cfg), depth, c2w, K, t=0.0) == h * w
    b = mem.retrieve(c2w, K, budget=h * w)
    assert len(b) == h * w
    assert torch.allclose(b.pos_yx, b.features[:, :2], atol=1e-3)
    rows, cols = b.features[:, 0].long(), b.features[:, 1].long()
    assert torch.allclose(b.depth, depth[rows, cols], rtol=1e-4)
    assert torch.allclose(b.src_c2w, c2w.expand(h * w, 4, 4)) and torch.allclose(b.src_K[0], K)


def test_full_resolution_depth_uses_robust_median():
    cfg = small_cfg()
    h, w = cfg.grid_hw
    g = torch.Generator().manual_seed(1)
    per_patch = 3.0 + 5.0 * torch.rand(h, w, generator=g)
    full = per_patch.repeat_interleave(cfg.patch_px, 0).repeat_interleave(cfg.patch_px, 1)
    full = full[cfg.pad_top:cfg.pad_top + cfg.image_height].clone()             # (360, 640)
    outliers = torch.rand(full.shape, generator=g) < 0.1
    full[outliers] = 500.0                                                       # stray far pixels
    mem = MosaicMemory(cfg)
    mem.insert(index_features(cfg), full, facing(), K, t=0.0)
    b = mem.retrieve(facing(), K, budget=h * w)
    rows, cols = b.features[:, 0].long(), b.features[:, 1].long()
    assert len(b) == h * w and torch.allclose(b.depth, per_patch[rows, cols], rtol=1e-4)


def test_sky_and_moving_patches_are_not_stored():
    cfg = small_cfg()
    h, w = cfg.grid_hw
    depth = torch.full((h, w), 6.0)
    depth[: h // 2] = SKY_DEPTH
    dynamic = torch.zeros(h, w, dtype=torch.bool)
    dynamic[:, : w // 4] = True
    mem = MosaicMemory(cfg)
    n = mem.insert(index_features(cfg), depth, facing(), K, t=0.0, dynamic=dynamic)
    assert n == len(mem) == (h - h // 2) * (w - w // 4)


def test_near_wall_hides_the_far_plane_behind_it():
    cfg = small_cfg()
    mem = MosaicMemory(cfg)
    f = index_features(cfg)
    mem.insert(f, plane_z_depth(cfg, facing(0.0), K, -10.0), facing(0.0), K, t=0.0)   # far plane
    mem.insert(f, plane_z_depth(cfg, facing(0.0), K, -3.0), facing(0.0), K, t=1.0)    # wall in front
    near = facing(-1.0)                   # 2 m from the wall: it fills the view (patches 1.5 cells apart)
    b = mem.retrieve(near, K, budget=240)
    assert len(b) > 100 and torch.all(b.times == 1.0)
    back = facing(2.0)                    # further back: the far plane shows around the wall only
    b = mem.retrieve(back, K, budget=240)
    far = b.times == 0.0
    assert far.any() and (~far).any()
    wall_y, wall_x = b.pos_yx[~far, 0], b.pos_yx[~far, 1]
    inside = ((b.pos_yx[far, 0] > wall_y.min() + 1) & (b.pos_yx[far, 0] < wall_y.max() - 1)
              & (b.pos_yx[far, 1] > wall_x.min() + 1) & (b.pos_yx[far, 1] < wall_x.max() - 1))
    assert not inside.any()               # no far patch inside the wall's silhouette


def test_retrieval_never_exceeds_budget():
    cfg = small_cfg()
    mem = MosaicMemory(cfg)
    for i in range(6):
        pose = look_at((0.3 * i, EYE, 0.0), (0.0, EYE, -8.0))
        mem.insert(index_features(cfg), plane_z_depth(cfg, pose, K, -8.0), pose, K, t=float(i))
    targets = torch.stack([facing(0.0), facing(-1.0), facing(-2.0, 0.5)])
    for budget in (0, 1, 17, 240, 5000):
        for poses in (targets[0], targets):
            b = mem.retrieve(poses, K, budget)
            assert len(b) <= budget
            assert b.ids.unique().numel() == len(b)                              # each entry once
            padded = mem.retrieve(poses, K, budget, pad=True)
            assert len(padded) == max(budget, len(b)) and padded.valid.sum() == len(b)
    b = mem.retrieve(facing(0.0), K, 17)
    cells = torch.floor(b.pos_yx + 0.5).long()
    assert cells.unique(dim=0).shape[0] == 17                                    # coverage first
    with pytest.raises(WorldplayError):
        mem.retrieve(facing(), K, -1)


def test_reinserting_a_view_replaces_it():
    cfg = small_cfg()
    mem = MosaicMemory(cfg)
    depth = plane_z_depth(cfg, facing(), K, -6.0)
    mem.insert(index_features(cfg), depth, facing(), K, t=0.0)
    mem.insert(index_features(cfg), depth, facing(), K, t=1.0)
    s = mem.stats()
    assert s["entries"] == 240 and s["replaced"] == 240
    assert torch.all(mem.retrieve(facing(), K, 240).times == 1.0)


def test_capacity_evicts_the_oldest():
    cfg = small_cfg(capacity=1000)
    mem = MosaicMemory(cfg)
    for i in range(10):                                   # each view sees a different plane: no dedup
        mem.insert(index_features(cfg), plane_z_depth(cfg, facing(), K, -2.0 - 3 * i), facing(), K, t=float(i))
        assert len(mem) <= cfg.capacity
    s = mem.stats()
    assert s["entries"] == 1000 and s["evicted"] == s["inserted"] - 1000 > 0
    ids = mem.store.valid_ids()
    assert mem.store.time[ids].min() >= 5.0               # frames 0-4 went first (frame 5 partly)


def test_looping_walk_stays_bounded_and_revisits_the_first_pass():
    """60 s at 16 FPS, twice round the same loop: dedup bounds growth, and on the second pass the
    memory (minus what a KV window of the last 2 s already holds) comes mostly from the first."""
    cfg = small_cfg(capacity=15_000, feature_dim=4)
    mem = MosaicMemory(cfg)
    frames_per_loop = 480
    feats = torch.zeros(*cfg.grid_hw, cfg.feature_dim)
    first, total = 0, 0
    for i in range(2 * frames_per_loop):
        pose = loop_pose(i, frames_per_loop)
        if i >= frames_per_loop and i % 16 == 0:
            b = mem.retrieve(pose, K, 240, min_age=2.0)
            first += int((b.times < frames_per_loop / FPS).sum())
            total += len(b)
        mem.insert(feats, room_depth(cfg, pose, K), pose, K, t=i / FPS)
        if i == frames_per_loop - 1:
            after_first = len(mem)
        assert len(mem) <= cfg.capacity
    assert mem.stats()["inserted"] > 15 * cfg.capacity                   # it really was squeezed
    assert len(mem) <= 1.05 * after_first                                 # the revisit did not grow it
    assert total > 0.8 * 240 * 30 and first / total > 0.5


def test_zbuffer_matches_brute_force_footprints():
    g = torch.Generator().manual_seed(3)
    T, h, w, R, m = 2, 5, 7, 2, 300
    gy, gx = torch.rand(m, generator=g) * h - 0.5, torch.rand(m, generator=g) * w - 0.5
    z = torch.randint(1, 40, (m,), generator=g).float()                  # many ties on purpose
    ext = torch.rand(m, generator=g) * 6
    t = torch.randint(0, T, (m,), generator=g)
    own_y, own_x = torch.floor(gy + 0.5).long(), torch.floor(gx + 0.5).long()
    c = Candidates(target=t, ids=torch.arange(m), gy=gy, gx=gx, z=z, ext=ext, cell=(t * h + own_y) * w + own_x)
    zmin, win = zbuffer(c, T, (h, w), R, want_winner=True)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ref = torch.full((T, h, w), math.inf)
    for i in range(m):
        cover = ((ys - gy[i]).abs() <= ext[i] / 2) & ((xs - gx[i]).abs() <= ext[i] / 2)
        cover &= ((ys - own_y[i]).abs() <= R) & ((xs - own_x[i]).abs() <= R)
        cover[own_y[i], own_x[i]] = True
        ref[t[i]] = torch.where(cover, torch.minimum(ref[t[i]], z[i]), ref[t[i]])
    assert torch.equal(zmin, ref.reshape(-1))
    shown = win >= 0
    assert torch.equal(shown, torch.isfinite(zmin)) and torch.equal(z[win[shown]], zmin[shown])
    cell = torch.arange(T * h * w)[shown]
    cy, cx = (cell // w) % h, cell % w
    k = win[shown]
    assert torch.all(t[k] == cell // (h * w))                             # the winner covers its cell
    assert torch.all(((cy - gy[k]).abs() <= ext[k] / 2) | (cy == own_y[k]))
    assert torch.all(((cx - gx[k]).abs() <= ext[k] / 2) | (cx == own_x[k]))


def test_bad_inputs_are_clear_errors():
    cfg = small_cfg()
    mem = MosaicMemory(cfg)
    h, w = cfg.grid_hw
    with pytest.raises(WorldplayError, match="features"):
        mem.insert(torch.zeros(h, w, 3), torch.ones(h, w), facing(), K, 0.0)
    with pytest.raises(WorldplayError, match="depth"):
        mem.insert(index_features(cfg), torch.ones(7, 9), facing(), K, 0.0)
    with pytest.raises(WorldplayError, match="c2w"):
        mem.insert(index_features(cfg), torch.ones(h, w), torch.eye(3), K, 0.0)
    with pytest.raises(WorldplayError, match="target poses"):
        mem.retrieve(torch.eye(3), K, 10)
    with pytest.raises(WorldplayError):
        MemoryConfig(image_width=630)


def test_slot_index_maps_keys_and_keeps_its_size():
    """The dedup index answers like a dict, and holds `capacity` items whatever it stores, so a
    filling memory does not grow the process (the soak)."""
    import random

    from worldplay.memory.index import SlotIndex
    idx = SlotIndex(1000)
    keys = random.Random(0).sample(range(2 ** 62), 1500)
    idx.update(zip(keys[:800], range(800)))
    assert len(idx) == 800 and idx.get(keys[5]) == 5 and idx.get(keys[900]) is None
    size = len(idx._map)
    for k in keys[:400]:
        idx.pop(k)
    idx.pop(keys[1200])                                   # an absent key is fine
    idx.update(zip(keys[800:1400], range(600)))
    assert len(idx) == 1000 and idx.get(keys[0]) is None and idx.get(keys[1399]) == 599
    assert len(idx._map) == size == 1000                 # never past capacity items
    assert idx.get(-5) is None                            # placeholders are not entries
    idx.clear()
    assert len(idx) == 0 and idx.get(keys[1399]) is None
