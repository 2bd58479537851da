"""PRoPE and RoPE: the invariances that make them relative encodings, checked numerically."""

import math

import pytest
import torch
import torch.nn.functional as F
from segment_reference import Segments, segment_attention

from worldplay.camera import intrinsics, make_pose, so3_exp
from worldplay.errors import WorldplayError
from worldplay.model.prope import (ProjCams, invert_intrinsics, normalize_intrinsics, projective_cameras, prope_kv,
                                   prope_o, prope_q)
from worldplay.model.rope import HeadLayout, apply_rope, rope_angles

W, H = 640, 360
B, HEADS, N = 2, 3, 10


def random_poses(g: torch.Generator, shape, dtype=torch.float64) -> torch.Tensor:
    R = so3_exp(torch.randn(*shape, 3, generator=g, dtype=dtype))
    t = torch.randn(*shape, 3, generator=g, dtype=dtype) * 3.0
    return make_pose(R, t)


def qkv(g, dh, dtype=torch.float64):
    return [torch.randn(B, HEADS, N, dh, generator=g, dtype=dtype) for _ in range(3)]


def run(q, k, v, c2w, K, layout, pos):
    cams = projective_cameras(c2w, K, W, H)
    return segment_attention(q, k, v, segments=Segments(current=N), layout=layout, cams=cams, pos=pos)


def test_normalized_intrinsics_and_inverse():
    Kn = normalize_intrinsics(intrinsics(W, H), W, H)
    assert Kn[0, 0] == pytest.approx(0.5) and Kn[1, 1] == pytest.approx(320 / 360)
    assert Kn[0, 2] == pytest.approx(0.0) and Kn[1, 2] == pytest.approx(0.0)
    K = torch.tensor([[300.0, 0, 310], [0, 290.0, 170], [0, 0, 1]], dtype=torch.float64)
    assert torch.allclose(invert_intrinsics(K) @ K, torch.eye(3, dtype=torch.float64))


def test_p_inv_is_inverse_of_p():
    g = torch.Generator().manual_seed(0)
    c2w = random_poses(g, (B, N))
    cams = projective_cameras(c2w, intrinsics(W, H, dtype=torch.float64), W, H)
    eye = torch.eye(4, dtype=torch.float64).expand(B, N, 4, 4)
    assert torch.allclose(cams.P @ cams.P_inv, eye, atol=1e-12)


def test_scores_depend_on_relative_projective_transform():
    g = torch.Generator().manual_seed(1)
    c2w = random_poses(g, (B, N))
    cams = projective_cameras(c2w, intrinsics(W, H, dtype=torch.float64), W, H)
    q, k, _ = qkv(g, 8)
    scores = prope_q(q, cams) @ prope_kv(k, cams).transpose(-1, -2)          # (B, H, N, N)
    rel = cams.P[:, :, None] @ cams.P_inv[:, None, :]                         # (B, N, N, 4, 4)
    qg, kg = q.reshape(B, HEADS, N, 2, 4), k.reshape(B, HEADS, N, 2, 4)
    expect = torch.einsum("bhigx,bijxy,bhjgy->bhij", qg, rel, kg)
    assert torch.allclose(scores, expect, atol=1e-9)


@pytest.mark.parametrize("with_K", [True, False])
def test_rigid_motion_of_all_cameras_leaves_attention_unchanged(with_K):
    g = torch.Generator().manual_seed(2)
    layout = HeadLayout.split(32, 16)
    q, k, v = qkv(g, 32)
    c2w = random_poses(g, (B, N))
    K = intrinsics(W, H, dtype=torch.float64) if with_K else None
    pos = torch.rand(B, N, 3, generator=g, dtype=torch.float64) * 10
    out = run(q, k, v, c2w, K, layout, pos)
    G = random_poses(g, ())                                                   # one rigid motion for all
    moved = run(q, k, v, G @ c2w, K, layout, pos)
    assert torch.allclose(out, moved, atol=1e-9)
    other = run(q, k, v, random_poses(g, (B, N)), K, layout, pos)            # sanity: cameras matter
    assert not torch.allclose(out, other, atol=1e-3)


def test_rigid_invariance_float32():
    g = torch.Generator().manual_seed(3)
    layout = HeadLayout.split(64, 32)
    q, k, v = qkv(g, 64, torch.float32)
    c2w = random_poses(g, (B, N), torch.float32)
    K = intrinsics(W, H)
    pos = torch.rand(B, N, 3, generator=g) * 10
    G = random_poses(g, (), torch.float32)
    assert torch.allclose(run(q, k, v, c2w, K, layout, pos), run(q, k, v, G @ c2w, K, layout, pos), atol=1e-3)


def test_equal_cameras_reduce_to_plain_rope_attention():
    g = torch.Generator().manual_seed(4)
    layout = HeadLayout.split(32, 16)
    q, k, v = qkv(g, 32)
    c2w = random_poses(g, (B, 1)).expand(B, N, 4, 4)
    pos = torch.rand(N, 3, generator=g, dtype=torch.float64) * 8
    out = run(q, k, v, c2w, intrinsics(W, H, dtype=torch.float64), layout, pos)
    cos, sin = rope_angles(pos, layout.rope_dims)
    p = layout.prope_dims
    qr = torch.cat([q[..., :p], apply_rope(q[..., p:], cos, sin)], -1)
    kr = torch.cat([k[..., :p], apply_rope(k[..., p:], cos, sin)], -1)
    assert torch.allclose(out, F.scaled_dot_product_attention(qr, kr, v), atol=1e-9)


def test_prope_output_transform_undoes_value_transform():
    g = torch.Generator().manual_seed(5)
    cams = projective_cameras(random_poses(g, (B, N)), intrinsics(W, H, dtype=torch.float64), W, H)
    v = torch.randn(B, HEADS, N, 8, generator=g, dtype=torch.float64)
    assert torch.allclose(prope_o(prope_kv(v, cams), cams), v, atol=1e-9)


def test_rope_depends_on_position_differences_only():
    g = torch.Generator().manual_seed(6)
    layout = HeadLayout.split(24, 0)
    q, k, v = qkv(g, 24)
    pos = torch.rand(N, 3, generator=g, dtype=torch.float64) * 12
    out = segment_attention(q, k, v, segments=Segments(current=N), layout=layout, pos=pos)
    shift = torch.tensor([3.25, -1.5, 7.75], dtype=torch.float64)            # fractional shifts too
    shifted = segment_attention(q, k, v, segments=Segments(current=N), layout=layout, pos=pos + shift)
    assert torch.allclose(out, shifted, atol=1e-9)
    cos, sin = rope_angles(pos, layout.rope_dims)
    assert torch.allclose(apply_rope(apply_rope(q, cos, sin), cos, -sin), q, atol=1e-12)


def test_rope_angles_follow_axis_split():
    dims = (4, 6, 6)
    pos = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.5, 0.0]], dtype=torch.float64)
    cos, sin = rope_angles(pos, dims, base=100.0)
    assert cos.shape == (2, 8)
    assert sin[0, 0] == pytest.approx(math.sin(2.0)) and sin[0, 1] == pytest.approx(math.sin(2.0 * 100 ** -0.5))
    assert torch.all(sin[0, 2:] == 0) and torch.all(sin[1, :2] == 0)
    assert sin[1, 2] == pytest.approx(math.sin(0.5))


def test_head_layout_split():
    lay = HeadLayout.split(64, 32)
    assert lay.prope_dims + lay.rope_total == 64 and all(d % 2 == 0 for d in lay.rope_dims)
    assert lay.rope_dims[1] == lay.rope_dims[2] >= lay.rope_dims[0]
    with pytest.raises(WorldplayError):
        HeadLayout.split(64, 30)


def test_proj_cams_slice_and_cat():
    g = torch.Generator().manual_seed(7)
    cams = projective_cameras(random_poses(g, (B, N)), None, W, H)
    parts = [cams[:, :4], cams[:, 4:]]
    joined = ProjCams.cat(parts)
    assert torch.equal(joined.P, cams.P) and torch.equal(joined.P_inv, cams.P_inv)
