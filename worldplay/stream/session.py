"""A streaming session's state, and saving and resuming it in one safetensors file (session_file.py format).

`SessionState` is everything the streamer changes as it runs, besides three objects it resets in
place (the KV cache, the mosaic memory and the generator): `reset` makes a fresh one, `save`
writes it, `load` swaps in the saved one, and a load that fails half-way puts back a `Snapshot`.
This module never sees the streamer itself: the streamer hands it those parts.

What a file holds, so that continuing after `load` gives exactly the frames an uninterrupted run
would have: the mosaic memory (under "memory.", so `MosaicMemory.load` reads the same file), the
KV cache ("cache."), every generated pose and time, the generator state, the chunk and frame
counters, the prompt, and the observed frames still waiting for the rest of their chunk (the TI2V
first frame before the first chunk; "pending.<i>."). The JSON header keeps the model config and
the checkpoint's sha256: a session only resumes on the weights that made it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.frame import Frame
from worldplay.memory.memory import MosaicMemory
from worldplay.model.kv_cache import KVCache
from worldplay.model.presets import ModelConfig
from worldplay.session_file import load_session, save_session

CONTENT = "worldplay-stream"
FORMAT = 2                 # 2: observed frames waiting for their chunk are "pending.<i>." (1 had "first.")
CACHE_PREFIX = "cache."
PENDING_PREFIX = "pending."
PENDING_FIELDS = ("rgb", "depth", "dynamic", "c2w")
STAGES = ("retrieve", "denoise", "clean_pass", "decode", "insert")   # the streamer's timed stages
# A load that fails on these (a tensor of the wrong shape, a missing key) leaves the session as it was.
LOAD_ERRORS = (WorldplayError, RuntimeError, KeyError, ValueError, TypeError)


def fresh_stats() -> dict:
    return {"chunks": 0, "memory_tokens": 0, "ms": {s: 0.0 for s in STAGES},
            "total_ms": {s: 0.0 for s in STAGES}}


@dataclass
class SessionState:
    """What a session has done so far. Replaced whole, never edited in place by a load."""
    seed: int
    prompt: str                        # scene words ("" when none)
    prompt_ids: Tensor                 # (1, L) their token ids, on the streamer's device
    cond: Tensor                       # (1, W) the DiT's prompt conditioning
    chunk: int = 0                     # chunks made since reset
    frame: int = 0                     # frames made since reset (the RoPE time index)
    poses: Tensor = field(default_factory=lambda: torch.zeros(0, 4, 4))               # (N, 4, 4) c2w
    times: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))  # (N,) seconds
    pending: list[Frame] = field(default_factory=list)   # observed frames waiting for their chunk
    z_pending: Tensor | None = None    # (P, C, h, w) their clean latents
    started: bool = False
    stats: dict = field(default_factory=fresh_stats)
    # (3,) float64 world point the DiT's cameras are taken relative to (Streamer.RECENTRE_M)
    origin: Tensor = field(default_factory=lambda: torch.zeros(3, dtype=torch.float64))


@dataclass(frozen=True)
class Identity:
    """What must match for a saved session to resume here: the weights and how they are run."""
    checkpoint_sha256: str
    model: ModelConfig
    steps: int
    memory_mode: str

    def header(self) -> dict:
        # the model config as JSON holds it (tuples become lists), so saved == current compares
        return {"checkpoint_sha256": self.checkpoint_sha256, "model": json.loads(json.dumps(asdict(self.model))),
                "steps": self.steps, "memory_mode": self.memory_mode}


@dataclass
class Snapshot:
    """A running session, whole: taken before a load, put back if the load fails."""
    state: SessionState
    cache: dict
    memory: dict
    rng: Tensor

    @classmethod
    def take(cls, state: SessionState, cache: KVCache, memory: MosaicMemory, generator: torch.Generator) -> Snapshot:
        # `state` is kept as is: a load builds a new one instead of editing it
        return cls(state, cache.state_dict(), memory.state_dict(), generator.get_state())

    def restore(self, cache: KVCache, memory: MosaicMemory, generator: torch.Generator) -> SessionState:
        cache.load_state_dict(self.cache)
        memory.load_state_dict(self.memory)
        generator.set_state(self.rng)
        return self.state


@dataclass
class SavedSession:
    """A session file read back and checked, before anything of the running session changes."""
    seed: int
    prompt: str
    prompt_ids: Tensor                 # (1, L)
    chunk: int
    frame: int
    poses: Tensor                      # (N, 4, 4)
    times: Tensor                      # (N,)
    rng: Tensor
    cache: dict[str, Tensor]           # KVCache.state_dict()
    tensors: dict[str, Tensor]         # the whole file, for MosaicMemory.load_session_tensors
    pending: list[Frame]               # to be re-encoded by the streamer's VAE
    origin: Tensor                     # (3,) the PRoPE origin the cached K/V are relative to


def weights_sha256(*modules: torch.nn.Module) -> str:
    """sha256 over the modules' tensors (names, shapes, dtypes, bytes): a fingerprint of the weights."""
    h = hashlib.sha256()
    for i, m in enumerate(modules):
        for name, t in sorted(m.state_dict().items()):
            t = t.detach().to("cpu").contiguous()
            h.update(f"{i}.{name}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_session(path: str | os.PathLike, state: SessionState, cache: KVCache, memory: MosaicMemory,
                  generator: torch.Generator, identity: Identity) -> None:
    tensors = memory.session_tensors()
    tensors.update({CACHE_PREFIX + k: v for k, v in cache.state_dict().items()})
    tensors.update({"rng": generator.get_state(), "poses": state.poses, "times": state.times,
                    "prompt_ids": state.prompt_ids, "origin": state.origin})
    for i, frame in enumerate(state.pending):
        tensors.update({f"{PENDING_PREFIX}{i}.{f}": getattr(frame, f) for f in PENDING_FIELDS})
    meta = {"content": CONTENT, "format": FORMAT, **identity.header(), "seed": state.seed, "chunk": state.chunk,
            "frame": state.frame, "prompt": state.prompt, "pending_t": [float(f.t) for f in state.pending]}
    save_session(path, tensors, meta)


def read_session(path: str | os.PathLike, identity: Identity) -> SavedSession:
    """The session in `path`, if it was saved by this model run this way; else one clear error."""
    tensors, meta = load_session(path)
    if meta.get("content") != CONTENT:
        raise WorldplayError(f"{path}: not a streaming session (it holds {meta.get('content')!r}); "
                             f"pick a file saved from worldplay play")
    if meta.get("format") != FORMAT:
        raise WorldplayError(f"{path}: session file format {meta.get('format', 1)} is from another worldplay "
                             f"version (this one reads {FORMAT}); start a new session")
    _check_identity(path, meta, identity)
    pending_t = meta.get("pending_t", [])
    needed = ["rng", "poses", "times", "prompt_ids", CACHE_PREFIX + "chunks_written"]
    needed += [f"{PENDING_PREFIX}{i}.{f}" for i in range(len(pending_t)) for f in PENDING_FIELDS]
    for key in needed:
        if key not in tensors:
            raise WorldplayError(f"{path}: session lacks {key!r}; the file is damaged - start a new session")
    pending = [Frame(**{f: tensors[f"{PENDING_PREFIX}{i}.{f}"] for f in PENDING_FIELDS}, t=float(t))
               for i, t in enumerate(pending_t)]
    cache = {k[len(CACHE_PREFIX):]: v for k, v in tensors.items() if k.startswith(CACHE_PREFIX)}
    return SavedSession(seed=int(meta["seed"]), prompt=meta.get("prompt") or "", prompt_ids=tensors["prompt_ids"],
                        chunk=int(meta["chunk"]), frame=int(meta["frame"]), poses=tensors["poses"].float(),
                        times=tensors["times"].double(), rng=tensors["rng"], cache=cache, tensors=tensors,
                        pending=pending,
                        # files from before re-centring never moved it: the world origin is right
                        origin=tensors.get("origin", torch.zeros(3)).to(torch.float64))


def _check_identity(path, meta: dict, identity: Identity) -> None:
    want = identity.header()
    if meta.get("checkpoint_sha256") != want["checkpoint_sha256"]:
        raise WorldplayError(f"{path}: session was made with another checkpoint (sha256 "
                             f"{str(meta.get('checkpoint_sha256'))[:12]}..., this model is "
                             f"{identity.checkpoint_sha256[:12]}...); "
                             f"load it with the model it was saved with, or start a new session")
    if meta.get("model") != want["model"]:
        raise WorldplayError(f"{path}: session was saved with model config {meta.get('model', {}).get('name')!r} "
                             f"that differs from this one; load it with the same model and preset")
    if meta.get("steps") != identity.steps or meta.get("memory_mode") != identity.memory_mode:
        raise WorldplayError(f"{path}: session used {meta.get('steps')} steps and memory mode "
                             f"{meta.get('memory_mode')!r}; resume with the same settings (this streamer: "
                             f"{identity.steps} steps, memory {identity.memory_mode!r})")
