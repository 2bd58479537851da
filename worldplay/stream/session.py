"""Save and resume a whole streaming session in one safetensors file (session_file.py format).

What a session holds, so that continuing after `load` gives exactly the frames an uninterrupted
run would have: the mosaic memory (under "memory.", so `MosaicMemory.load` reads the same file),
the KV cache ("cache."), every generated pose and time, the generator state, the chunk and frame
counters, the prompt, and the observed frames still waiting for the rest of their chunk (the TI2V
first frame before the first chunk; "pending.<i>."). The JSON header keeps the model config and
the checkpoint's sha256: a session only resumes on the weights that made it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from typing import TYPE_CHECKING

import torch

from worldplay.errors import WorldplayError
from worldplay.frame import Frame
from worldplay.session_file import load_session, save_session

if TYPE_CHECKING:
    from worldplay.stream.streamer import Streamer

CONTENT = "worldplay-stream"
FORMAT = 2                 # 2: observed frames waiting for their chunk are "pending.<i>." (1 had "first.")
CACHE_PREFIX = "cache."
PENDING_PREFIX = "pending."
PENDING_FIELDS = ("rgb", "depth", "dynamic", "c2w")


def weights_sha256(*modules: torch.nn.Module) -> str:
    """sha256 over the modules' tensors (names, shapes, dtypes, bytes): a fingerprint of the weights."""
    h = hashlib.sha256()
    for i, m in enumerate(modules):
        for name, t in sorted(m.state_dict().items()):
            t = t.detach().to("cpu").contiguous()
            h.update(f"{i}.{name}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _model_meta(s: "Streamer") -> dict:
    """The model config as the JSON header holds it (tuples become lists), so saved == current."""
    return json.loads(json.dumps(asdict(s.cfg)))


def save_streamer(s: "Streamer", path: str | os.PathLike) -> None:
    tensors = s.memory.session_tensors()
    tensors.update({CACHE_PREFIX + k: v for k, v in s.cache.state_dict().items()})
    tensors.update({"rng": s.generator.get_state(), "poses": s.poses, "times": s.times,
                    "prompt_ids": s.prompt_ids})
    for i, frame in enumerate(s.pending):
        tensors.update({f"{PENDING_PREFIX}{i}.{f}": getattr(frame, f) for f in PENDING_FIELDS})
    meta = {"content": CONTENT, "format": FORMAT, "checkpoint_sha256": s.checkpoint_sha,
            "model": _model_meta(s), "seed": s.seed, "chunk": s.chunk, "frame": s.frame, "prompt": s.prompt,
            "pending_t": [float(f.t) for f in s.pending],
            "steps": s.schedule.steps, "memory_mode": s.memory_mode}
    save_session(path, tensors, meta)


def load_streamer(s: "Streamer", path: str | os.PathLike) -> None:
    """Resume `s` from `path`. The header (checkpoint, config, settings) is checked before anything
    changes; a file damaged past that point is rolled back, so `s` goes on as if never asked."""
    tensors, meta = load_session(path)
    if meta.get("content") != CONTENT:
        raise WorldplayError(f"{path}: not a streaming session (it holds {meta.get('content')!r}); "
                             f"pick a file saved from worldplay play")
    if meta.get("format") != FORMAT:
        raise WorldplayError(f"{path}: session file format {meta.get('format', 1)} is from another worldplay "
                             f"version (this one reads {FORMAT}); start a new session")
    if meta.get("checkpoint_sha256") != s.checkpoint_sha:
        raise WorldplayError(f"{path}: session was made with another checkpoint (sha256 "
                             f"{str(meta.get('checkpoint_sha256'))[:12]}..., this model is {s.checkpoint_sha[:12]}...); "
                             f"load it with the model it was saved with, or start a new session")
    if meta.get("model") != _model_meta(s):
        raise WorldplayError(f"{path}: session was saved with model config {meta.get('model', {}).get('name')!r} "
                             f"that differs from this one; load it with the same model and preset")
    if meta.get("steps") != s.schedule.steps or meta.get("memory_mode") != s.memory_mode:
        raise WorldplayError(f"{path}: session used {meta.get('steps')} steps and memory mode "
                             f"{meta.get('memory_mode')!r}; resume with the same settings (this streamer: "
                             f"{s.schedule.steps} steps, memory {s.memory_mode!r})")
    for key in ("rng", "poses", "times", "prompt_ids", CACHE_PREFIX + "chunks_written"):
        if key not in tensors:
            raise WorldplayError(f"{path}: session lacks {key!r}; the file is damaged - start a new session")
    pending_t = meta.get("pending_t", [])
    for key in (f"{PENDING_PREFIX}{i}.{f}" for i in range(len(pending_t)) for f in PENDING_FIELDS):
        if key not in tensors:
            raise WorldplayError(f"{path}: session lacks {key!r}; the file is damaged - start a new session")
    chunk = int(meta["chunk"])
    cache = {k[len(CACHE_PREFIX):]: v for k, v in tensors.items() if k.startswith(CACHE_PREFIX)}
    snapshot = _snapshot(s)
    try:
        _apply(s, path, tensors, meta, cache, chunk)
    except (WorldplayError, RuntimeError, KeyError, ValueError, TypeError) as e:
        _restore(s, snapshot)
        raise WorldplayError(f"{path}: {e}; the running session is unchanged") from None


# Everything `_reset_state` / `reset` rebind on the streamer; restored as a whole on a failed load.
STATE_ATTRS = ("seed", "chunk", "frame", "poses", "times", "prompt", "prompt_ids", "cond", "pending",
               "z_pending", "started", "stats")


def _snapshot(s: "Streamer") -> dict:
    return {"cache": s.cache.state_dict(),
            "memory": s.memory.state_dict(),          # already a copy
            "rng": s.generator.get_state(),
            "attrs": {a: getattr(s, a, None) for a in STATE_ATTRS}}


def _restore(s: "Streamer", snap: dict) -> None:
    s.cache.load_state_dict(snap["cache"])
    s.memory.load_state_dict(snap["memory"])
    s.generator.set_state(snap["rng"])
    for a, v in snap["attrs"].items():
        setattr(s, a, v)


def _apply(s: "Streamer", path, tensors: dict, meta: dict, cache: dict, chunk: int) -> None:
    s._reset_state(meta.get("prompt") or None)
    s.cache.load_state_dict({k: v.to(s.device) for k, v in cache.items()})
    s.memory.load_session_tensors(tensors, str(path))
    s.generator.set_state(tensors["rng"])
    s.seed, s.chunk, s.frame = int(meta["seed"]), chunk, int(meta["frame"])
    s.poses, s.times = tensors["poses"].float(), tensors["times"].double()
    s.prompt_ids = tensors["prompt_ids"].to(s.device)
    with torch.no_grad():
        s.cond = s.dit.condition(s.prompt_ids)
    s.stats["chunks"] = chunk
    s.started = True
    # re-encoded from the same pixels, they are the latents the saved session held
    s._hold([Frame(**{f: tensors[f"{PENDING_PREFIX}{i}.{f}"] for f in PENDING_FIELDS}, t=float(t))
             for i, t in enumerate(meta.get("pending_t", []))])
