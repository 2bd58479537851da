"""One-file sessions: named tensors + a JSON header in a single safetensors file.

The streamer saves memory, KV cache, poses, RNG state and config this way; `MosaicMemory.save`
writes a memory-only session. The header lives in the safetensors metadata under "worldplay":
{"format": "worldplay-session", "version": 1, "meta": {...}}. Files are written atomically
(temp file + rename) and read with safetensors only, never pickle, so a session file from
anywhere cannot run code. Loading validates everything first and returns fresh tensors, so a
caller that fails to load has not changed anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.fileio import atomic_path

FORMAT = "worldplay-session"
VERSION = 1
HEADER_KEY = "worldplay"
SAFETENSORS_PREAMBLE = 8   # bytes: little-endian u64 length of the JSON header


def save_session(path: str | os.PathLike, tensors: dict[str, Tensor], meta: dict) -> Path:
    """Write `tensors` and JSON-able `meta` to `path` atomically. Returns the path."""
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in tensors.items()):
        raise WorldplayError("save_session: tensors must map names (str) to torch tensors")
    try:
        header = json.dumps({"format": FORMAT, "version": VERSION, "meta": meta})
    except (TypeError, ValueError) as e:
        raise WorldplayError(f"save_session: meta must be JSON-serialisable ({e}); "
                             f"put tensors in `tensors`, not in meta") from None
    # Fresh contiguous CPU copies (one copy each): safetensors refuses views that share storage.
    data = {k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True) for k, v in tensors.items()}
    p = Path(path).expanduser()
    with atomic_path(p) as tmp:
        save_file(data, str(tmp), metadata={HEADER_KEY: header})
    return p


def _fail(p: Path, what: str) -> WorldplayError:
    return WorldplayError(f"{p}: {what}")


def load_session(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """Read a session file -> (tensors, meta). Any problem -> WorldplayError naming the file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise _fail(p, "session file not found; check the path (sessions are saved as .safetensors files)")
    if p.stat().st_size < SAFETENSORS_PREAMBLE:
        raise _fail(p, "file is too short to be a session (truncated or empty); pick another file")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            header = (f.metadata() or {}).get(HEADER_KEY)
            fmt = _parse_header(p, header)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except WorldplayError:
        raise
    except Exception as e:  # safetensors raises its own error types for bad headers / short data
        raise _fail(p, f"not a readable session file (truncated, damaged or not safetensors: "
                       f"{str(e).splitlines()[0][:120]}); pick another file or start a new session") from None
    return tensors, fmt["meta"]


def _parse_header(p: Path, header: str | None) -> dict:
    if header is None:
        raise _fail(p, f"safetensors file without a {FORMAT} header (a checkpoint or another tool's "
                       f"file?); pick a session saved by worldplay")
    try:
        fmt = json.loads(header)
    except json.JSONDecodeError:
        raise _fail(p, "session header is not valid JSON; the file is damaged - start a new session") from None
    if not isinstance(fmt, dict) or fmt.get("format") != FORMAT:
        name = fmt.get("format") if isinstance(fmt, dict) else None
        raise _fail(p, f"file format is {name!r}, not {FORMAT!r}; pick a session saved by worldplay")
    version = fmt.get("version")
    if version != VERSION:
        hint = "upgrade worldplay to read it" if isinstance(version, int) and version > VERSION else \
            "this worldplay cannot read it; start a new session"
        raise _fail(p, f"session version {version!r}, this worldplay reads version {VERSION}; {hint}")
    if not isinstance(fmt.get("meta"), dict):
        raise _fail(p, "session header has no meta object; the file is damaged - start a new session")
    return fmt
