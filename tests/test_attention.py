"""Segment attention: mask semantics, cache equivalence and a naive reference."""

import pytest
import torch
from segment_reference import (CURRENT, MEMORY, Segments, build_block_mask, decode_o, encode_kv, encode_q,
                               segment_attention)

from worldplay.camera import intrinsics, make_pose, so3_exp
from worldplay.errors import WorldplayError
from worldplay.model.prope import projective_cameras
from worldplay.model.rope import HeadLayout

B, HEADS, DH = 2, 2, 32
LAYOUT = HeadLayout.split(DH, 16)
SEG = Segments(sink=4, window=6, memory=5, current=8, frames=2)


def fresh_inputs(g, n, dtype=torch.float64):
    q, k, v = (torch.randn(B, HEADS, n, DH, generator=g, dtype=dtype) for _ in range(3))
    c2w = make_pose(so3_exp(torch.randn(B, n, 3, generator=g, dtype=dtype)),
                    torch.randn(B, n, 3, generator=g, dtype=dtype))
    cams = projective_cameras(c2w, intrinsics(dtype=dtype), 640, 360)
    pos = torch.rand(B, n, 3, generator=g, dtype=dtype) * 10
    return q, k, v, cams, pos


def cache_for(g, n, dtype=torch.float64):
    return (torch.randn(B, HEADS, n, DH, generator=g, dtype=dtype) for _ in range(2))


def test_block_mask_rules():
    m = build_block_mask(SEG, SEG.memory + SEG.current)
    mem_rows, cur_rows = m[:SEG.memory], m[SEG.memory:]
    n_cached = SEG.sink + SEG.window
    assert mem_rows[:, :n_cached + SEG.memory].all()          # memory sees sink, window, memory
    assert not mem_rows[:, n_cached + SEG.memory:].any()      # ... never the noisy current tokens
    assert cur_rows.all()                                     # bidirectional: current sees everything
    causal = build_block_mask(SEG, SEG.current, "block_causal")
    per = SEG.current // SEG.frames
    assert causal[:per, :n_cached + SEG.memory + per].all()   # frame 0 sees its own frame
    assert not causal[:per, n_cached + SEG.memory + per:].any()  # ... but not frame 1
    assert causal[per:].all()
    with pytest.raises(WorldplayError):
        build_block_mask(SEG, 3, "causal")


def test_memory_tokens_do_not_see_noisy_tokens():
    g = torch.Generator().manual_seed(0)
    n_fresh = SEG.memory + SEG.current
    q, k, v, cams, pos = fresh_inputs(g, n_fresh)
    ck, cv = cache_for(g, SEG.sink + SEG.window)
    out = segment_attention(q, k, v, segments=SEG, layout=LAYOUT, cams=cams, pos=pos, cache_k=ck, cache_v=cv)
    noisy = [x.clone() for x in (q, k, v)]
    for x in noisy:
        x[:, :, SEG.memory:] += torch.randn(x[:, :, SEG.memory:].shape, generator=g, dtype=x.dtype)
    out2 = segment_attention(*noisy, segments=SEG, layout=LAYOUT, cams=cams, pos=pos, cache_k=ck, cache_v=cv)
    assert torch.allclose(out[:, :, :SEG.memory], out2[:, :, :SEG.memory], atol=1e-12)
    assert not torch.allclose(out[:, :, SEG.memory:], out2[:, :, SEG.memory:], atol=1e-3)


def test_block_causal_frames_do_not_see_later_frames():
    g = torch.Generator().manual_seed(1)
    q, k, v, cams, pos = fresh_inputs(g, SEG.current)
    ck, cv = cache_for(g, SEG.total - SEG.current)
    kw = dict(segments=SEG, layout=LAYOUT, cams=cams, pos=pos, cache_k=ck, cache_v=cv, mask_mode="block_causal")
    out = segment_attention(q, k, v, **kw)
    per = SEG.current // SEG.frames
    k2, v2 = k.clone(), v.clone()
    k2[:, :, per:] += 1.0
    v2[:, :, per:] -= 1.0
    out2 = segment_attention(q, k2, v2, **kw)
    assert torch.allclose(out[:, :, :per], out2[:, :, :per], atol=1e-12)
    assert not torch.allclose(out[:, :, per:], out2[:, :, per:], atol=1e-3)


def test_cached_keys_equal_fresh_keys():
    """Caching encoded K/V (what the streamer does) gives the same result as recomputing them."""
    g = torch.Generator().manual_seed(2)
    q, k, v, cams, pos = fresh_inputs(g, SEG.total)
    full = segment_attention(q, k, v, segments=SEG, layout=LAYOUT, cams=cams, pos=pos)
    n_cache = SEG.total - SEG.current
    ck, cv = encode_kv(k[:, :, :n_cache], v[:, :, :n_cache], LAYOUT, cams[:, :n_cache], pos[:, :n_cache])
    cur = slice(n_cache, None)
    part = segment_attention(q[:, :, cur], k[:, :, cur], v[:, :, cur], segments=SEG, layout=LAYOUT,
                             cams=cams[:, cur], pos=pos[:, cur], cache_k=ck, cache_v=cv)
    assert torch.allclose(full[:, :, cur], part, atol=1e-10)


def test_matches_naive_softmax_reference():
    g = torch.Generator().manual_seed(3)
    n_fresh = SEG.memory + SEG.current
    q, k, v, cams, pos = fresh_inputs(g, n_fresh)
    ck, cv = cache_for(g, SEG.sink + SEG.window)
    out, ke, ve = segment_attention(q, k, v, segments=SEG, layout=LAYOUT, cams=cams, pos=pos, cache_k=ck,
                                    cache_v=cv, mask_mode="block_causal", return_kv=True)
    keys, vals = torch.cat([ck, ke], 2), torch.cat([cv, ve], 2)
    qe = encode_q(q, LAYOUT, cams, pos)
    mask = build_block_mask(SEG, n_fresh, "block_causal")
    logits = qe @ keys.transpose(-1, -2) / DH ** 0.5
    logits = logits.masked_fill(~mask, float("-inf"))
    ref = decode_o(torch.softmax(logits, -1) @ vals, LAYOUT, cams)
    assert torch.allclose(out, ref, atol=1e-10)


def test_padded_memory_keys_are_ignored():
    g = torch.Generator().manual_seed(4)
    q, k, v, cams, pos = fresh_inputs(g, SEG.current)
    ck, cv = cache_for(g, SEG.total - SEG.current)
    valid = torch.ones(B, SEG.total, dtype=torch.bool)
    ids = SEG.segment_ids()
    pad_slots = (ids == MEMORY).nonzero()[-2:, 0]                            # last two memory slots unused
    valid[:, pad_slots] = False
    kw = dict(segments=SEG, layout=LAYOUT, cams=cams, pos=pos, key_valid=valid)
    out = segment_attention(q, k, v, cache_k=ck, cache_v=cv, **kw)
    ck2, cv2 = ck.clone(), cv.clone()
    ck2[:, :, pad_slots] = 100.0
    cv2[:, :, pad_slots] = -100.0
    assert torch.allclose(out, segment_attention(q, k, v, cache_k=ck2, cache_v=cv2, **kw), atol=1e-12)
    assert (ids == CURRENT).sum() == SEG.current


def test_bad_shapes_are_clear_errors():
    g = torch.Generator().manual_seed(5)
    q, k, v, cams, pos = fresh_inputs(g, SEG.current)
    with pytest.raises(WorldplayError, match="cached tokens"):
        segment_attention(q, k, v, segments=SEG, layout=LAYOUT, cams=cams, pos=pos)
    with pytest.raises(WorldplayError, match="head_dim"):
        segment_attention(q, k, v, segments=Segments(current=SEG.current), layout=HeadLayout.split(16, 8))
