"""MosaicMemory: the hybrid spatial memory of MosaicMem (arXiv 2603.17117), one small facade.

Frames go in as feature grids + depth + pose (`insert`, `import_view`); target poses get back
the visible, budgeted memory tokens with their warped positions and source cameras
(`retrieve`), or a z-buffered canvas of features in the target view (`warp_canvas`). Frames that
come with their pixels may also become keyframes (views.py), which `reproject` splats into a
target view at full resolution: the streamer encodes that into the Warped Latent. Edits
(`erase`, `copy`, `paste`) and save/load act on the same flat tensors (see store.py); erase
also clears the keyframe pixels in its region, while a paste is made of entries only, so the
pasted copy reaches the model through the memory tokens.
"""

from __future__ import annotations

import json
import math
import os

import torch
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.memory import edit
from worldplay.memory.config import MemoryConfig, grid_coords
from worldplay.memory.lift import check_pose, lift_frame
from worldplay.memory.retrieve import MemoryBatch, retrieve
from worldplay.memory.rgb import RGB, colour_sub, rgb_features
from worldplay.memory.store import EntryStore, Patches
from worldplay.memory.views import ViewStore
from worldplay.memory.warp import depth_canvas, warp_canvas
from worldplay.session_file import load_session, save_session

META_KEY = "_meta"          # state_dict entry holding the config + counters as UTF-8 JSON bytes
FILE_PREFIX = "memory."     # tensor-name prefix inside a session file
VIEWS_PREFIX = "views."    # state_dict names of the keyframes (views.py)
MB = 2 ** 20


class MosaicMemory:
    def __init__(self, cfg: MemoryConfig = MemoryConfig(), device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.store = EntryStore(cfg, device)
        self.views = ViewStore(cfg.image_width, cfg.image_height, cfg.keyframes, cfg.keyframe_move,
                               cfg.keyframe_turn_deg, cfg.keyframe_views, cfg.keyframe_candidates,
                               cfg.keyframe_fill, self.store.device)

    def __len__(self) -> int:
        return len(self.store)

    @property
    def now(self) -> float:
        return self.store.now

    def reset(self) -> None:
        self.store.clear()
        self.views.clear()

    # -- writing -------------------------------------------------------------------------------

    def insert(self, features: Tensor, depth: Tensor, c2w: Tensor, K: Tensor, t: float,
               dynamic: Tensor | None = None, rgb: Tensor | None = None) -> int:
        """Lift one frame's patches (features (h, w, D)) and store them. Returns how many. With
        the frame's pixels `rgb` (H, W, 3) uint8 and full-resolution depth, the frame may also
        become a keyframe of the canvas."""
        if rgb is not None:
            self.views.add(rgb, depth, c2w, K, t, dynamic)
        return self.store.add(lift_frame(features.to(self.store.device), depth, c2w, K, t, self.cfg, dynamic))

    def import_view(self, rgb_or_features: Tensor, depth: Tensor, c2w: Tensor, K: Tensor,
                    t: float | None = None, dynamic: Tensor | None = None) -> int:
        """Insert an outside view: a uint8 (H, W, 3) image (colour memories only) or (h, w, D) features."""
        x = rgb_or_features
        if x.dtype == torch.uint8:
            sub = colour_sub(self.cfg.feature_dim)
            if sub is None:
                raise WorldplayError(f"import_view: this memory stores {self.cfg.feature_dim}-dim features, not "
                                     f"colours; encode the image to features first (or use a colour memory "
                                     f"with feature_dim = 3 * sub * sub)")
            if tuple(x.shape) != (self.cfg.image_height, self.cfg.image_width, RGB):
                want = (self.cfg.image_height, self.cfg.image_width, RGB)
                raise WorldplayError(f"import_view: image must be {want}, got {tuple(x.shape)}; resize it first")
            x = rgb_features(x, self.cfg.patch_px, sub, self.cfg.padded_h)
        return self.insert(x, depth, c2w, K, self.now if t is None else t, dynamic)

    # -- reading -------------------------------------------------------------------------------

    def retrieve(self, c2w: Tensor, K: Tensor, budget: int, *, min_age: float | None = None,
                 unique_entries: bool = True, pad: bool = False) -> MemoryBatch:
        """Visible memory tokens for target poses (T, 4, 4) or (4, 4), at most `budget` of them."""
        return retrieve(self.store, self.cfg, c2w, K, budget, min_age=min_age,
                        unique_entries=unique_entries, pad=pad)

    def warp_canvas(self, c2w: Tensor, K: Tensor, grid: tuple[int, int] | None = None,
                    ids: Tensor | None = None, min_age: float = 0.0) -> tuple[Tensor, Tensor]:
        """(canvas (D, h, w), mask (1, h, w)) of memory splatted into one target view."""
        return warp_canvas(self.store, self.cfg, c2w, K, grid, ids, min_age)

    def reproject(self, c2w: Tensor, K: Tensor, max_time: float = math.inf) -> tuple[Tensor, Tensor, Tensor]:
        """Keyframes kept at or before `max_time` splatted into view c2w: rgb (H, W, 3) uint8,
        z-depth (H, W) (inf where nothing) and hit mask (H, W)."""
        check_pose(c2w, K)
        return self.views.reproject(c2w, K, max_time)

    def pick(self, c2w: Tensor, K: Tensor, uv) -> float | None:
        """z-depth of the nearest remembered surface under pixel uv = (u, v), or None."""
        check_pose(c2w, K)
        zmap = depth_canvas(self.store, self.cfg, c2w, K)                     # (h, w)
        gy, gx = map(float, grid_coords(*torch.tensor(uv, dtype=torch.float32), self.cfg))
        y, x = math.floor(gy + 0.5), math.floor(gx + 0.5)
        if not (0 <= y < zmap.shape[0] and 0 <= x < zmap.shape[1]) or not math.isfinite(float(zmap[y, x])):
            return None
        return float(zmap[y, x])

    # -- editing -------------------------------------------------------------------------------

    def erase(self, region: edit.Region) -> int:
        """Forget the entries in `region` (returned: how many) and the keyframe pixels there."""
        self.views.erase(region)
        return edit.erase(self.store, region)

    def copy(self, region: edit.Region) -> Patches:
        return edit.copy(self.store, region)

    def paste(self, patches: Patches, transform: Tensor) -> int:
        return edit.paste(self.store, patches, transform)

    # -- state -------------------------------------------------------------------------------

    def stats(self) -> dict:
        s = self.store
        return {"entries": len(s), "capacity": self.cfg.capacity, "inserted": s.inserted_total,
                "evicted": s.evicted_total, "replaced": s.replaced_total, "slots_used": s.n_used,
                "keyframes": len(self.views), "mb": (s.nbytes() + self.views.nbytes()) / MB, "now": s.now}

    def state_dict(self) -> dict[str, Tensor]:
        s = self.store
        meta = {"config": self.cfg.to_dict(), "counters": {k: getattr(s, k) for k in s.COUNTERS}}
        sd = {name: getattr(s, name)[:s.n_used].to("cpu", copy=True) for name in s.TENSORS}
        sd.update({VIEWS_PREFIX + k: v for k, v in self.views.state_dict().items()})
        sd[META_KEY] = torch.frombuffer(bytearray(json.dumps(meta).encode()), dtype=torch.uint8).clone()
        return sd

    def load_state_dict(self, sd: dict[str, Tensor], source: str = "state dict") -> None:
        """Replace the contents with `sd`; everything is checked before anything changes."""
        meta = _read_meta(sd, source)
        cfg = _config_of(meta, source)
        mine, theirs = self.cfg.to_dict(), cfg.to_dict()
        mine.pop("capacity"), theirs.pop("capacity")
        diff = sorted(k for k in mine if mine[k] != theirs[k])
        if diff:
            raise WorldplayError(f"{source}: memory was saved with a different config ({', '.join(diff)}); "
                                 f"load it with MosaicMemory.load, which rebuilds the saved config")
        n = int(meta["counters"]["n_used"])
        if n > self.cfg.capacity:
            raise WorldplayError(f"{source}: holds {n} memory slots but this memory's capacity is "
                                 f"{self.cfg.capacity}; raise MemoryConfig.capacity")
        s = self.store
        for name in s.TENSORS:
            want = getattr(s, name)
            got = sd.get(name)
            if got is None or tuple(got.shape) != (n, *want.shape[1:]) or got.dtype != want.dtype:
                shape = None if got is None else (tuple(got.shape), got.dtype)
                raise WorldplayError(f"{source}: memory tensor {name!r} is {shape}, expected "
                                     f"{((n, *want.shape[1:]), want.dtype)}; the file is damaged or from "
                                     f"another version - start a new session")
        views = {k[len(VIEWS_PREFIX):]: v for k, v in sd.items() if k.startswith(VIEWS_PREFIX)}
        if views:   # files from before keyframes hold none: the canvas starts over
            self.views.load_state_dict(views, source)
        else:
            self.views.clear()
        s.clear()
        for name in s.TENSORS:
            getattr(s, name)[:n] = sd[name].to(s.device)
        for k in s.COUNTERS:
            setattr(s, k, type(getattr(s, k))(meta["counters"][k]))
        s.rebuild_index()

    # -- session files: the memory's tensors under a "memory." prefix, beside other state ------

    def session_tensors(self) -> dict[str, Tensor]:
        """state_dict with prefixed names, for save_session together with KV cache, poses, RNG."""
        return {FILE_PREFIX + k: v for k, v in self.state_dict().items()}

    def load_session_tensors(self, tensors: dict[str, Tensor], source: str = "session") -> None:
        """In-place load from a session's tensors (validated first; untouched on error)."""
        self.load_state_dict(_memory_part(tensors, source), source)

    @classmethod
    def from_session_tensors(cls, tensors: dict[str, Tensor], source: str = "session",
                             device: str | torch.device = "cpu") -> "MosaicMemory":
        """A new memory with the saved config and contents."""
        sd = _memory_part(tensors, source)
        mem = cls(_config_of(_read_meta(sd, source), source), device)
        mem.load_state_dict(sd, source)
        return mem

    def save(self, path: str | os.PathLike, meta: dict | None = None) -> None:
        """Write the memory alone (atomically) as a worldplay session file."""
        save_session(path, self.session_tensors(), {"content": "mosaic-memory", **(meta or {})})

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "MosaicMemory":
        return cls.from_session_tensors(load_session(path)[0], str(path), device)

    def restore(self, path: str | os.PathLike) -> None:
        """Load in place; a bad file raises WorldplayError and leaves this memory untouched."""
        self.load_session_tensors(load_session(path)[0], str(path))


def _memory_part(tensors: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    sd = {k[len(FILE_PREFIX):]: v for k, v in tensors.items() if k.startswith(FILE_PREFIX)}
    if META_KEY not in sd:
        raise WorldplayError(f"{source}: this session file holds no mosaic memory; pick a file saved "
                             f"with memory (worldplay play's save, or MosaicMemory.save)")
    return sd


def _read_meta(sd: dict[str, Tensor], source: str) -> dict:
    raw = sd.get(META_KEY)
    try:
        meta = json.loads(bytes(raw.to(torch.uint8).tolist()).decode())
        meta["config"], [meta["counters"][k] for k in EntryStore.COUNTERS]
    except Exception:
        raise WorldplayError(f"{source}: memory header is missing or unreadable; the file is damaged - "
                             f"start a new session or pick another file") from None
    return meta


def _config_of(meta: dict, source: str) -> MemoryConfig:
    try:
        return MemoryConfig.from_dict(meta["config"])
    except (WorldplayError, TypeError) as e:
        raise WorldplayError(f"{source}: saved memory config is invalid ({e}); "
                             f"the file is damaged or from another version") from None
