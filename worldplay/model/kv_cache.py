"""The streamer's KV cache: a sink kept forever plus a ring buffer of the last W clean chunks.

Storage is allocated once, (layers, B, heads, sink_tokens + window_tokens, head_dim) for K and
for V, and is never reallocated: a new chunk overwrites the oldest ring slot in place, and
`reset` only zeroes counters. Slot layout along the token axis:

    [ sink chunk 0 .. sink chunk S-1 | ring slot 0 .. ring slot W-1 ]

Chunks fill the sink first, then the ring; once the ring is full each new chunk replaces the
oldest one (the "roll"). Per-token positions (t, y, x) are stored beside K/V, in the same slot
order, so the attention can place cached tokens correctly whatever slot they sit in.

Protocol for one clean pass (the DiT writes layer by layer as it goes):
    for layer: kv = cache.view(layer); attend over [kv | memory | current]; cache.write_chunk(layer, k, v)
    cache.commit(pos)
`view(layer)` must be read before `write_chunk(layer)` in the same pass: once the ring is full,
the pending chunk's slot is the oldest chunk's. Until `commit`, views do not include the pending
chunk. Cached tensors are detached (written with copy_, no autograd through the cache).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.model.presets import ModelConfig

POS_DIMS = 3   # (t, y, x) per token: frame time and fractional grid position


class KVView(NamedTuple):
    k: Tensor          # (B, heads, valid_len, head_dim)
    v: Tensor          # (B, heads, valid_len, head_dim)
    pos: Tensor        # (valid_len, POS_DIMS) float32, same token order as k and v
    valid_len: int


class KVCache:
    def __init__(self, layers: int, batch: int, heads: int, head_dim: int, chunk_tokens: int,
                 sink_chunks: int = 1, window_chunks: int = 3, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        if min(layers, batch, heads, head_dim, chunk_tokens, window_chunks) < 1 or sink_chunks < 0:
            raise WorldplayError("KVCache sizes must be positive (sink_chunks may be 0)")
        self.layers, self.batch, self.heads, self.head_dim = layers, batch, heads, head_dim
        self.chunk_tokens, self.sink_chunks, self.window_chunks = chunk_tokens, sink_chunks, window_chunks
        self.capacity = (sink_chunks + window_chunks) * chunk_tokens
        shape = (layers, batch, heads, self.capacity, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.pos = torch.zeros(self.capacity, POS_DIMS, dtype=torch.float32, device=device)
        # Reused by ordered views once the ring has wrapped (one pair, overwritten per call).
        self._ordered_k = torch.empty(shape[1:], dtype=dtype, device=device)
        self._ordered_v = torch.empty(shape[1:], dtype=dtype, device=device)
        self._ordered_pos = torch.empty_like(self.pos)
        self.chunks_written = 0          # chunks committed since the last reset

    @classmethod
    def for_model(cls, cfg: ModelConfig, batch: int = 1, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> "KVCache":
        """Sized from a preset: one entry per DiT block, sink and window in whole chunks."""
        d = cfg.dit
        return cls(d.depth, batch, d.heads, d.head_dim, cfg.tokens_per_chunk, d.sink_chunks,
                   d.window_chunks, dtype, device)

    # ---- bookkeeping ----

    def _valid_tokens(self, chunks: int) -> int:
        """Cached tokens after `chunks` commits: the filled sink plus the filled ring."""
        sink = min(chunks, self.sink_chunks)
        ring = min(max(chunks - self.sink_chunks, 0), self.window_chunks)
        return (sink + ring) * self.chunk_tokens

    @property
    def valid_len(self) -> int:
        return self._valid_tokens(self.chunks_written)

    @property
    def nbytes(self) -> int:
        bufs = (self.k, self.v, self.pos, self._ordered_k, self._ordered_v, self._ordered_pos)
        return sum(b.numel() * b.element_size() for b in bufs)

    def _slot(self, chunk_index: int) -> int:
        """Slot (in chunks) that the `chunk_index`-th chunk since reset is written to."""
        if chunk_index < self.sink_chunks:
            return chunk_index
        return self.sink_chunks + (chunk_index - self.sink_chunks) % self.window_chunks

    def _oldest_offset(self) -> int:
        """Token offset of the oldest ring chunk; equals the sink size unless the ring has rolled."""
        if self.chunks_written <= self.sink_chunks + self.window_chunks:
            return self.sink_chunks * self.chunk_tokens
        return self._slot(self.chunks_written) * self.chunk_tokens  # the next write = the oldest

    # ---- writing ----

    def write_chunk(self, layer: int, k: Tensor, v: Tensor) -> None:
        """Write one layer's K/V (B, heads, chunk_tokens, head_dim) for the pending chunk."""
        want = (self.batch, self.heads, self.chunk_tokens, self.head_dim)
        if tuple(k.shape) != want or tuple(v.shape) != want:
            raise ValueError(f"KVCache.write_chunk expects k, v of shape {want}, got "
                             f"{tuple(k.shape)} and {tuple(v.shape)}")
        s = self._slot(self.chunks_written) * self.chunk_tokens
        self.k[layer, :, :, s:s + self.chunk_tokens].copy_(k.detach())
        self.v[layer, :, :, s:s + self.chunk_tokens].copy_(v.detach())

    def commit(self, pos: Tensor) -> None:
        """Mark the pending chunk valid; `pos` (chunk_tokens, POS_DIMS) are its positions."""
        if tuple(pos.shape) != (self.chunk_tokens, POS_DIMS):
            raise ValueError(f"KVCache.commit expects pos ({self.chunk_tokens}, {POS_DIMS}), "
                             f"got {tuple(pos.shape)}")
        s = self._slot(self.chunks_written) * self.chunk_tokens
        self.pos[s:s + self.chunk_tokens].copy_(pos)
        self.chunks_written += 1

    def append(self, k: Tensor, v: Tensor, pos: Tensor) -> None:
        """All layers at once: k, v (layers, B, heads, chunk_tokens, head_dim)."""
        if k.shape[0] != self.layers or v.shape[0] != self.layers:
            raise ValueError(f"KVCache.append expects {self.layers} layers, got {k.shape[0]}")
        for layer in range(self.layers):
            self.write_chunk(layer, k[layer], v[layer])
        self.commit(pos)

    def reset(self) -> None:
        """Forget everything in place: storage stays allocated; stale values are never read."""
        self.chunks_written = 0

    def rebase(self, M: Tensor, dims: int) -> None:
        """Re-express the cached PRoPE blocks in a moved world frame: the first `dims` of every
        head are 4-dim groups cached as P^-1 x; when the world moves, P^-1 becomes M P^-1, so each
        group of K and V is multiplied by M (4, 4) in place (at least float32 products, one rounding)."""
        if dims % 4 or dims > self.head_dim:
            raise ValueError(f"KVCache.rebase: {dims} PRoPE dims must be whole 4-dim groups of {self.head_dim}")
        n = self.valid_len
        if not dims or not n:
            return
        ct = torch.promote_types(self.k.dtype, torch.float32)
        M = M.to(self.k.device, ct)
        for buf in (self.k, self.v):
            for layer in range(self.layers):   # one layer at a time: a float32 copy of one layer only
                x = buf[layer, :, :, :n, :dims]                                           # (B, H, n, dims)
                g = x.to(ct).reshape(*x.shape[:-1], dims // 4, 4)                         # (B, H, n, G, 4)
                x.copy_((g @ M.T).reshape(x.shape))

    # ---- reading ----

    def view(self, layer: int, ordered: bool = False) -> KVView:
        """The valid cached tokens of `layer`.

        ordered=False: zero-copy slices in storage order (sink, then ring slots 0..W-1), with
        matching `pos`; attention over keys is order-free, so this is what the DiT should use.
        ordered=True: temporal order (sink, then ring oldest -> newest). Zero-copy until the
        ring wraps, then gathered into one preallocated buffer that the next call overwrites.
        """
        n = self.valid_len
        sink = self.sink_chunks * self.chunk_tokens
        oldest = self._oldest_offset()
        if not ordered or oldest == sink:
            return KVView(self.k[layer, :, :, :n], self.v[layer, :, :, :n], self.pos[:n], n)
        self._rotate(self.k[layer], self._ordered_k, 2, sink, oldest)    # (B, heads, N, head_dim)
        self._rotate(self.v[layer], self._ordered_v, 2, sink, oldest)
        self._rotate(self.pos, self._ordered_pos, 0, sink, oldest)       # (N, POS_DIMS)
        return KVView(self._ordered_k, self._ordered_v, self._ordered_pos, n)

    @staticmethod
    def _rotate(src: Tensor, dst: Tensor, axis: int, sink: int, oldest: int) -> None:
        """dst = [sink | ring from the oldest slot to the end | ring start up to the oldest]."""
        tail = src.shape[axis] - oldest
        dst.narrow(axis, 0, sink).copy_(src.narrow(axis, 0, sink))
        dst.narrow(axis, sink, tail).copy_(src.narrow(axis, oldest, tail))
        dst.narrow(axis, sink + tail, oldest - sink).copy_(src.narrow(axis, sink, oldest - sink))

    # ---- sessions ----

    def state_dict(self) -> dict[str, Tensor]:
        """Valid tokens only (storage order) plus the counter; all tensors, for safetensors."""
        n = self.valid_len
        return {"k": self.k[:, :, :, :n].clone(), "v": self.v[:, :, :, :n].clone(),
                "pos": self.pos[:n].clone(),
                "chunks_written": torch.tensor(self.chunks_written, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Copy a saved state into the existing buffers (never reallocates)."""
        chunks = int(state["chunks_written"])
        n = self._valid_tokens(chunks)
        want = (self.layers, self.batch, self.heads, n, self.head_dim)
        if tuple(state["k"].shape) != want or tuple(state["v"].shape) != want \
                or tuple(state["pos"].shape) != (n, POS_DIMS):
            raise WorldplayError(f"saved KV cache has shape {tuple(state['k'].shape)} but this model "
                                 f"expects {want}; the session was saved with another preset or "
                                 f"window setting, so start a new session")
        self.k[:, :, :, :n].copy_(state["k"])
        self.v[:, :, :, :n].copy_(state["v"])
        self.pos[:n].copy_(state["pos"])
        self.chunks_written = chunks
