"""Memory keyframes and the pixel canvas: reprojection against analytic answers, the keyframe
rule, time limits, erase, dynamic pixels, save/load, and the VAE-encoded canvas."""

import math

import pytest
import torch

from worldplay.camera import camera_rays, intrinsics, look_at
from worldplay.errors import WorldplayError
from worldplay.memory import MemoryConfig, MosaicMemory
from worldplay.memory.edit import Region
from worldplay.model.presets import get_preset
from worldplay.model.vae import RGBDVAE
from worldplay.stream.recall import pixel_canvas

pytestmark = pytest.mark.usefixtures("one_thread")

W, H = 640, 360
K = intrinsics(W, H)
WALL_Z = -5.0


def wall_view(c2w: torch.Tensor):
    """rgb (H, W, 3) uint8 and z-depth (H, W) of the textured wall world-z = WALL_Z: colour is a
    smooth function of the wall point (x, y), so a pixel reprojected 1 px off is off a little."""
    o, d = camera_rays(c2w, K, H, W)                                  # t along a ray = z-depth
    t = (WALL_Z - o[2]) / d[..., 2]
    p = o + t[..., None] * d                                          # (H, W, 3)
    rgb = torch.stack([128 + 60 * torch.sin(p[..., 0]), 128 + 60 * torch.sin(p[..., 1]),
                       128 + 60 * torch.cos(p[..., 0] + p[..., 1])], -1)
    return rgb.round().to(torch.uint8), t


def facing(x: float = 0.0, yaw_target: float = 0.0) -> torch.Tensor:
    return look_at((x, 1.6, 0.0), (x + yaw_target, 1.6, -5.0))


def memory(**kw) -> MosaicMemory:
    return MosaicMemory(MemoryConfig(capacity=1000, feature_dim=8, feature_dtype="float32", **kw))


def keep(mem: MosaicMemory, c2w: torch.Tensor, t: float, dynamic=None) -> bool:
    rgb, depth = wall_view(c2w)
    return mem.views.add(rgb, depth, c2w, K, t, dynamic)


def test_reprojection_into_the_source_view_is_exact():
    mem = memory()
    keep(mem, facing(), 0.0)
    rgb, depth, hit = mem.reproject(facing(), K)
    want_rgb, want_depth = wall_view(facing())
    assert bool(hit.all())
    assert torch.equal(rgb, want_rgb)
    assert torch.allclose(depth, want_depth, rtol=1e-3)   # stored as float16


def test_reprojection_into_a_moved_view_matches_the_analytic_wall():
    mem = memory()
    keep(mem, facing(), 0.0)
    target = facing(x=0.4, yaw_target=0.5)
    rgb, depth, hit = mem.reproject(target, K)
    want_rgb, want_depth = wall_view(target)
    # the part of the target that the source saw is covered (the source sees |x| < 5 at the wall)
    assert hit.float().mean() > 0.85
    err = (rgb.float() - want_rgb.float()).abs()[hit]
    assert err.mean() < 1.5 and err.max() < 12     # nearest-pixel splat: under a pixel of the texture
    assert torch.allclose(depth[hit], want_depth[hit], rtol=2e-3)
    assert bool(torch.isinf(depth[~hit]).all()) and int(rgb[~hit].sum()) == 0


def test_a_frame_is_kept_only_when_it_moved_or_turned_enough():
    mem = memory(keyframe_move=0.5, keyframe_turn_deg=15.0)
    assert keep(mem, facing(), 0.0)
    assert not keep(mem, facing(x=0.2), 0.1)                        # 0.2 m, same direction
    assert keep(mem, facing(x=0.6), 0.2)                            # moved 0.6 m
    turned = look_at((0.0, 1.6, 0.0), (5.0 * math.tan(math.radians(20)), 1.6, -5.0))
    assert keep(mem, turned, 0.3)                                   # turned 20 degrees
    assert len(mem.views) == 3


def test_the_oldest_keyframe_goes_when_full():
    mem = memory(keyframes=2)
    for i in range(3):
        keep(mem, facing(x=float(i)), float(i))
    assert mem.views.times.tolist() == [1.0, 2.0]


def test_keyframes_after_max_time_are_not_used():
    mem = memory()
    keep(mem, facing(), 1.0)
    assert not bool(mem.reproject(facing(), K, max_time=0.5)[2].any())
    assert bool(mem.reproject(facing(), K, max_time=1.0)[2].all())


def test_moving_pixels_are_not_kept_and_erase_forgets_a_region():
    mem = memory()
    dyn = torch.zeros(H, W, dtype=torch.bool)
    dyn[:, :100] = True
    keep(mem, facing(), 0.0, dyn)
    hit = mem.reproject(facing(), K)[2]
    assert not bool(hit[:, :98].any()) and bool(hit[:, 102:].all())   # fills reach 2 px into the gap
    # the wall point straight ahead, and a 1 m sphere around it
    mem.erase(Region.sphere((0.0, 1.6, WALL_Z), 1.0))
    hit = mem.reproject(facing(), K)[2]
    assert not bool(hit[H // 2, W // 2]) and bool(hit[5, W - 5])


def test_keyframes_survive_a_state_dict_round_trip_and_damage_is_a_clear_error():
    mem = memory()
    keep(mem, facing(), 0.0)
    keep(mem, facing(x=1.0), 1.0)
    sd = mem.state_dict()
    other = memory()
    other.load_state_dict(sd)
    theirs = other.views.state_dict()
    for k in ("rgb", "depth", "c2w", "K", "times"):
        assert torch.equal(theirs[k], sd[f"views.{k}"])
    bad = dict(sd)
    bad["views.depth"] = sd["views.depth"][:1]
    with pytest.raises(WorldplayError, match="keyframes"):
        other.load_state_dict(bad)
    assert len(other.views) == 2                                    # untouched by the failed load
    old = {k: v for k, v in sd.items() if not k.startswith("views.")}
    other.load_state_dict(old)                                      # files from before keyframes
    assert len(other.views) == 0


def test_pixel_canvas_is_the_encoded_reprojection_with_its_coverage():
    cfg = get_preset("tiny")
    vae = RGBDVAE(cfg.vae).eval()
    mem = memory()
    c2w = torch.stack([facing(), facing(x=0.4, yaw_target=2.0)])
    assert pixel_canvas(vae, mem, c2w, K, math.inf, torch.float32) is None   # nothing kept yet
    keep(mem, facing(), 0.0)
    cv = pixel_canvas(vae, mem, c2w, K, math.inf, torch.float32)
    C, (h, w) = cfg.vae.latent_ch, cfg.latent_hw
    assert tuple(cv.shape) == (1, 2, C + 1, h, w)
    mask = cv[0, :, C]
    # the frame sits in rows 12..372 of the 384-row padded frame: the edge cells are 1/4 covered
    assert torch.allclose(mask[0, 1:-1], torch.ones(h - 2, w)) and torch.allclose(mask[0, 0], torch.full((w,), 0.25))
    assert 0.3 < float(mask[1].mean()) < 0.95                       # the turned view sees part of it
    assert bool((cv[0, :, :C][(mask == 0)[:, None].expand(-1, C, -1, -1)] == 0).all())
    rgb, depth, _ = mem.reproject(facing(), K)
    with torch.no_grad():
        z = vae.encode((rgb.permute(2, 0, 1)[None].float() / 127.5 - 1.0), depth[None])
    assert torch.allclose(cv[0, 0, :C], z[0], atol=1e-5)


def test_training_canvases_are_the_streamers_canvases():
    """canvas.py walks a trajectory as the streamer would: a streamer observing the same frames
    hands its DiT the same Warped Latent, chunk by chunk (keyframes before the KV window)."""
    from micro_model import IMAGE, MICRO, micro_streamer

    from worldplay.train.canvas import canvas_trajectory
    from worldplay.train.latents import encode_trajectory
    from worldplay.world.render import Renderer
    from worldplay.world.scene import make_scene
    from worldplay.world.trajectories import make_trajectory

    s = micro_streamer()
    n, seed = 16, 3
    clip = encode_trajectory(s.vae, MICRO, seed, "look-away", n)
    want = canvas_trajectory(s.vae, MICRO, clip).float()                     # (N, C + 1, h, w)
    scene = make_scene(seed)
    traj = make_trajectory("look-away", scene, n, seed=seed)
    frames = [Renderer(scene, IMAGE).render(traj.c2w[i], float(traj.times[i])) for i in range(n)]
    got = []
    forward = s.dit.forward_chunk

    def spy(*a, **kw):
        if kw.get("write"):
            got.append(kw["canvas"])
        return forward(*a, **kw)

    s.dit.forward_chunk = spy
    s.reset(frames[0])
    s.observe(frames[1:])
    Fc, C = MICRO.dit.chunk_frames, MICRO.vae.latent_ch
    assert len(got) == n // Fc
    covered = 0
    for c, cv in enumerate(got):
        ref = want[c * Fc:(c + 1) * Fc]
        if cv is None:
            assert not bool(ref[:, C:].any())
            continue
        covered += 1
        assert torch.allclose(cv[0].float(), ref, atol=2e-2, rtol=1e-2)
    assert covered >= 2


def test_erase_only_touches_keyframes_that_see_the_region():
    mem = memory()
    keep(mem, facing(), 0.0)
    keep(mem, look_at((0.0, 1.6, 0.0), (0.0, 1.6, 5.0)), 1.0)            # looking away from the wall
    back = mem.views.depth[1].clone()
    coarse = mem.views.coarse[0].clone()
    assert mem.views.erase(Region.box((-1.0, 0.6, WALL_Z - 0.1), (1.0, 2.6, WALL_Z + 0.1))) > 0
    assert torch.equal(mem.views.depth[1], back)
    assert not torch.equal(mem.views.coarse[0], coarse)            # the ranking grid follows the erase
    assert not mem.views._may_see(1, torch.tensor([0.0, 1.6, WALL_Z]), 1.0)
    assert mem.views._may_see(0, torch.tensor([0.0, 1.6, WALL_Z]), 1.0)
    assert mem.views._may_see(0, torch.tensor([7.0, 1.6, WALL_Z]), 2.5)    # just outside the edge, but large


def test_stale_training_canvases_are_rebuilt(tmp_path):
    from micro_model import MICRO

    from worldplay.train.canvas import attach_canvases
    from worldplay.train.latents import encode_trajectory

    vae = RGBDVAE(MICRO.vae, seed=1).eval()
    clip = encode_trajectory(vae, MICRO, 3, "look-away", 8)
    attach_canvases(tmp_path, [clip], vae, MICRO, progress=False)
    first = clip.canvas.clone()
    file = tmp_path / f"{clip.name}.canvas.safetensors"
    file.write_bytes(b"damaged")                                           # stale or broken: made again
    attach_canvases(tmp_path, [clip], vae, MICRO, progress=False)
    assert torch.equal(clip.canvas, first) and file.stat().st_size > 100
