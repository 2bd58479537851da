"""PRoPE far from the world origin: bf16 serving stays as exact 300 m out as at the start.

bf16 keeps ~3 significant digits. PRoPE's K/V carry each camera's translation, so a camera
300 m from the origin would round away the camera-relative part of its logits. The streamer
re-centres its cameras on the player (Streamer._recentre) and moves the cached K/V with them
(KVCache.rebase); attention sees only relative poses, so this changes nothing but the rounding.
"""

from __future__ import annotations

import math

import pytest
import torch
from micro_model import micro_streamer, orbit, run_chunks

import worldplay.stream.streamer as streamer_mod
from worldplay.camera import intrinsics, look_at
from worldplay.model.kv_cache import KVCache
from worldplay.model.prope import projective_cameras, prope_kv, prope_q, recentred, translation
from worldplay.stream.streamer import RECENTRE_M

HEAD, PROPE = 64, 32      # the tiny preset's head dim and PRoPE dims
TOKENS = 96
W, H = 40.0, 24.0         # tiny's latent grid: PRoPE normalises intrinsics by it
FAR_M = 300.0


def _cameras(centre: tuple[float, float, float], n: int, seed: int) -> torch.Tensor:
    """n float64 poses within a few metres of `centre`, looking in varied directions."""
    g = torch.Generator().manual_seed(seed)
    poses = []
    for _ in range(n):
        jitter = (torch.rand(3, generator=g, dtype=torch.float64) - 0.5) * 6.0
        eye = torch.tensor(centre, dtype=torch.float64) + jitter
        a = float(torch.rand(1, generator=g)) * 2 * math.pi
        target = eye + torch.tensor([math.sin(a), 0.1, math.cos(a)], dtype=torch.float64) * 5.0
        poses.append(look_at(eye.tolist(), target.tolist(), dtype=torch.float64))
    return torch.stack(poses)                                                       # (n, 4, 4)


def _logits(q: torch.Tensor, k: torch.Tensor, c2w: torch.Tensor, K: torch.Tensor, dtype: torch.dtype,
            origin: torch.Tensor | None) -> torch.Tensor:
    """q k^T over the PRoPE dims after the encodings, cameras in float32 (the serving path) or
    float64, q/k in `dtype`; cameras relative to `origin` when given."""
    cam_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    poses = c2w if origin is None else recentred(c2w, origin)
    cams = projective_cameras(poses.to(cam_dtype)[None], K.to(cam_dtype), W, H)
    qe = prope_q(q.to(dtype), cams).to(torch.float64)                               # (1, 1, N, D)
    ke = prope_kv(k.to(dtype), cams).to(torch.float64)
    return qe[0, 0] @ ke[0, 0].T                                                    # (N, N)


def _error(centre, origin_rule: str) -> float:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, TOKENS, PROPE, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, TOKENS, PROPE, generator=g, dtype=torch.float64)
    c2w = _cameras(centre, TOKENS, seed=1)
    K = intrinsics(640, 360, 90.0).to(torch.float64) / 16.0
    K[2, 2] = 1.0
    exact = _logits(q, k, c2w, K, torch.float64, None)
    # the streamer's rule: the origin sits at a recent eye once the camera is RECENTRE_M away
    origin = c2w[-1, :3, 3].clone() if origin_rule == "streamer" else None
    if origin is not None and float(origin.norm()) <= RECENTRE_M:
        origin = torch.zeros(3, dtype=torch.float64)
    served = _logits(q, k, c2w, K, torch.bfloat16, origin)
    return float((served - exact).abs().max() / exact.abs().max())


def test_bf16_logits_300m_out_are_as_close_to_fp64_as_at_the_origin():
    near = _error((0.0, 1.6, 0.0), "streamer")
    far = _error((FAR_M, 1.6, -0.5 * FAR_M), "streamer")
    assert far <= 1.5 * near + 1e-3, (near, far)
    # without re-centring the same cameras lose the relative part: the reason the streamer moves
    unmoved = _error((FAR_M, 1.6, -0.5 * FAR_M), "world")
    assert unmoved > 5 * far, (far, unmoved)


def test_rebase_moves_cached_kv_exactly():
    """Cached P^-1 k under the old origin, rebased, equals P'^-1 k computed under the new one."""
    g = torch.Generator().manual_seed(2)
    c2w = _cameras((20.0, 1.6, 5.0), 8, seed=3)
    K = intrinsics(640, 360, 90.0).to(torch.float64)
    cache = KVCache(layers=2, batch=1, heads=2, head_dim=8, chunk_tokens=8, sink_chunks=1, window_chunks=1,
                    dtype=torch.float64)
    k = torch.randn(2, 1, 2, 8, 8, generator=g, dtype=torch.float64)
    cams_old = projective_cameras(c2w[None], K, 640.0, 360.0)
    enc = lambda x, cams: torch.cat([prope_kv(x[..., :4], cams), x[..., 4:]], -1)   # noqa: E731
    cache.append(torch.stack([enc(k[i], cams_old) for i in range(2)]),
                 torch.stack([enc(k[i], cams_old) for i in range(2)]), torch.zeros(8, 3))
    d = torch.tensor([20.0, 0.0, 5.0], dtype=torch.float64)
    cache.rebase(translation(-d), dims=4)
    cams_new = projective_cameras(recentred(c2w, d)[None], K, 640.0, 360.0)
    want = torch.stack([enc(k[i], cams_new) for i in range(2)])
    torch.testing.assert_close(cache.k[:, :, :, :8], want, rtol=1e-6, atol=1e-5)   # float32 products
    torch.testing.assert_close(cache.v[:, :, :, :8], want, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("path", ["orbit"])
def test_streamer_recentring_changes_no_frame(path, monkeypatch):
    """Re-centring at every chunk (threshold ~0) gives the frames of never re-centring. The
    canvas is left out (memory mode "rope"): it is made in world coordinates, never sees the
    origin, and its z-buffer would turn float32 noise into a flipped pixel now and then."""
    _, first, traj = orbit(12)
    runs = []
    for threshold in (1e9, 1e-3):
        monkeypatch.setattr(streamer_mod, "RECENTRE_M", threshold)
        s = micro_streamer(memory_mode="rope")
        s.reset(first, "desert")
        runs.append((run_chunks(s, traj, 0, 12), s.state.origin.clone()))
    (a, origin_a), (b, origin_b) = runs
    assert float(origin_a.norm()) == 0.0 and float(origin_b.norm()) > 0.0
    for x, y in zip(a, b):
        assert (x.rgb.int() - y.rgb.int()).abs().max() <= 2
        torch.testing.assert_close(x.depth, y.depth, rtol=1e-3, atol=1e-3)


def test_session_keeps_the_origin(tmp_path, monkeypatch):
    monkeypatch.setattr(streamer_mod, "RECENTRE_M", 1e-3)
    _, first, traj = orbit(8)
    s = micro_streamer()
    s.reset(first, "desert")
    run_chunks(s, traj, 0, 4)
    s.save(tmp_path / "s.safetensors")
    t = micro_streamer()
    t.load(tmp_path / "s.safetensors")
    torch.testing.assert_close(t.state.origin, s.state.origin)
    assert run_chunks(s, traj, 4, 8)[0].rgb.equal(run_chunks(t, traj, 4, 8)[0].rgb)
