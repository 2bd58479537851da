"""KV cache: sink + ring against a naive list-of-chunks reference, no reallocation, sessions."""

from __future__ import annotations

from collections import deque

import pytest
import torch
from safetensors.torch import load_file, save_file

from worldplay.errors import WorldplayError
from worldplay.model.kv_cache import POS_DIMS, KVCache
from worldplay.model.presets import PRESETS

L, B, H, T, D = 3, 2, 2, 5, 4   # layers, batch, heads, tokens per chunk, head dim


def make_chunk(i: int, gen: torch.Generator):
    k = torch.randn(L, B, H, T, D, generator=gen)
    v = torch.randn(L, B, H, T, D, generator=gen)
    pos = torch.stack([torch.full((T,), float(i)), torch.arange(T, dtype=torch.float32),
                       torch.zeros(T)], dim=-1)                     # (T, POS_DIMS): chunk id, token id
    return k, v, pos


class Reference:
    """The obvious implementation: the first S chunks forever, then the last W in a deque."""

    def __init__(self, sink: int, window: int):
        self.sink, self.ring, self.n_sink = [], deque(maxlen=window), sink

    def append(self, chunk):
        (self.sink if len(self.sink) < self.n_sink else self.ring).append(chunk)

    def tensors(self, layer: int):
        chunks = self.sink + list(self.ring)
        if not chunks:
            return torch.empty(B, H, 0, D), torch.empty(B, H, 0, D), torch.empty(0, POS_DIMS)
        return (torch.cat([c[0][layer] for c in chunks], dim=2), torch.cat([c[1][layer] for c in chunks], dim=2),
                torch.cat([c[2] for c in chunks], dim=0))


def sort_by_pos(k, v, pos):
    order = torch.argsort(pos[:, 0] * T + pos[:, 1])
    return k[:, :, order], v[:, :, order], pos[order]


@pytest.mark.parametrize("sink,window", [(1, 3), (2, 2), (0, 4), (1, 1)])
def test_matches_reference_across_many_rollovers(sink, window):
    cache = KVCache(L, B, H, D, T, sink_chunks=sink, window_chunks=window)
    ref = Reference(sink, window)
    gen = torch.Generator().manual_seed(0)
    ptrs = (cache.k.data_ptr(), cache.v.data_ptr(), cache.pos.data_ptr(), cache._ordered_k.data_ptr())
    for i in range(23):
        chunk = make_chunk(i, gen)
        cache.append(*chunk)
        ref.append(chunk)
        for layer in range(L):
            rk, rv, rpos = ref.tensors(layer)
            ordered = cache.view(layer, ordered=True)
            assert ordered.valid_len == rk.shape[2]
            assert torch.equal(ordered.k, rk) and torch.equal(ordered.v, rv) and torch.equal(ordered.pos, rpos)
            raw = cache.view(layer)
            for a, b in zip(sort_by_pos(raw.k, raw.v, raw.pos), (rk, rv, rpos)):
                assert torch.equal(a, b)
            assert raw.k.data_ptr() == cache.k[layer].data_ptr()     # storage-order view is a slice
    assert ptrs == (cache.k.data_ptr(), cache.v.data_ptr(), cache.pos.data_ptr(), cache._ordered_k.data_ptr())


def test_sink_is_kept_forever():
    cache = KVCache(L, B, H, D, T, sink_chunks=1, window_chunks=2)
    gen = torch.Generator().manual_seed(1)
    first = make_chunk(0, gen)
    cache.append(*first)
    for i in range(1, 40):
        cache.append(*make_chunk(i, gen))
    view = cache.view(2, ordered=True)
    assert torch.equal(view.k[:, :, :T], first[0][2]) and torch.equal(view.pos[:T], first[2])
    assert view.pos[T:, 0].tolist() == [38.0] * T + [39.0] * T       # then the two newest, in order


def test_pending_chunk_is_invisible_until_commit():
    cache = KVCache(L, B, H, D, T, sink_chunks=1, window_chunks=1)
    gen = torch.Generator().manual_seed(2)
    cache.append(*make_chunk(0, gen))
    cache.append(*make_chunk(1, gen))
    before = cache.view(0, ordered=True).k.clone()                    # ring full: next write rolls
    k, v, pos = make_chunk(2, gen)
    view = cache.view(1)
    assert torch.equal(view.k[:, :, T:], cache.k[1, :, :, T:2 * T])   # read before this layer writes
    cache.write_chunk(0, k[0], v[0])
    assert cache.valid_len == 2 * T and cache.view(1, ordered=True).pos[T:, 0].tolist() == [1.0] * T
    for layer in range(1, L):
        cache.write_chunk(layer, k[layer], v[layer])
    cache.commit(pos)
    after = cache.view(0, ordered=True)
    assert torch.equal(after.k[:, :, :T], before[:, :, :T]) and torch.equal(after.k[:, :, T:], k[0])


def test_reset_is_in_place():
    cache = KVCache(L, B, H, D, T, sink_chunks=1, window_chunks=2)
    gen = torch.Generator().manual_seed(3)
    for i in range(5):
        cache.append(*make_chunk(i, gen))
    ptr = cache.k.data_ptr()
    cache.reset()
    assert cache.valid_len == 0 and cache.view(0).k.shape == (B, H, 0, D)
    chunk = make_chunk(9, gen)
    cache.append(*chunk)
    assert cache.k.data_ptr() == ptr
    assert torch.equal(cache.view(1, ordered=True).k, chunk[0][1])


def test_state_dict_round_trip_through_safetensors(tmp_path):
    gen = torch.Generator().manual_seed(4)
    a = KVCache(L, B, H, D, T, sink_chunks=1, window_chunks=3)
    for i in range(7):
        a.append(*make_chunk(i, gen))
    save_file(a.state_dict(), str(tmp_path / "kv.safetensors"))
    b = KVCache(L, B, H, D, T, sink_chunks=1, window_chunks=3)
    ptr = b.k.data_ptr()
    b.load_state_dict(load_file(str(tmp_path / "kv.safetensors")))
    assert b.k.data_ptr() == ptr and b.chunks_written == 7
    nxt = make_chunk(7, gen)
    for c in (a, b):
        c.append(*nxt)
    for layer in range(L):
        va, vb = a.view(layer, ordered=True), b.view(layer, ordered=True)
        assert torch.equal(va.k, vb.k) and torch.equal(va.v, vb.v) and torch.equal(va.pos, vb.pos)


def test_state_dict_is_a_copy_and_partial_state_loads():
    gen = torch.Generator().manual_seed(5)
    a = KVCache(L, B, H, D, T, sink_chunks=1, window_chunks=3)
    first = make_chunk(0, gen)
    a.append(*first)
    state = a.state_dict()
    a.reset()
    a.append(*make_chunk(1, gen))                                     # overwrites slot 0 in place
    assert torch.equal(state["k"], first[0]) and torch.equal(state["pos"], first[2])
    b = KVCache(L, B, H, D, T, sink_chunks=1, window_chunks=3)
    b.load_state_dict(state)
    assert b.valid_len == T and torch.equal(b.view(2).v, first[1][2])


def test_shape_errors_are_named():
    cache = KVCache(L, B, H, D, T)
    with pytest.raises(ValueError, match=r"write_chunk expects k, v of shape \(2, 2, 5, 4\)"):
        cache.write_chunk(0, torch.zeros(B, H, T + 1, D), torch.zeros(B, H, T + 1, D))
    with pytest.raises(ValueError, match=r"commit expects pos \(5, 3\)"):
        cache.commit(torch.zeros(T, 2))
    other = KVCache(L, B, H + 1, D, T)
    other.append(torch.zeros(L, B, H + 1, T, D), torch.zeros(L, B, H + 1, T, D), torch.zeros(T, POS_DIMS))
    with pytest.raises(WorldplayError, match="saved KV cache has shape .* start a new session"):
        cache.load_state_dict(other.state_dict())


def test_sized_from_the_tiny_preset():
    cfg = PRESETS["tiny"]
    cache = KVCache.for_model(cfg, batch=1)
    d = cfg.dit
    assert cache.capacity == (d.sink_chunks + d.window_chunks) * 4 * 240
    assert cache.k.shape == (d.depth, 1, d.heads, cache.capacity, d.head_dim)
    per_layer = cache.capacity * d.heads * d.head_dim * 4
    assert cache.nbytes == 2 * d.depth * per_layer + 2 * per_layer + 2 * cache.capacity * POS_DIMS * 4
