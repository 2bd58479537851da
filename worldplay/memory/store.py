"""Flat, preallocated storage of memory entries: insert with dedup, evict oldest, remove.

Every field is one tensor of `capacity` rows allocated up front, so a session of any length
never reallocates and save/load is a handful of tensors. Slots are reused: a new entry takes a
free slot (never used, or freed by dedup/erase); only when none is left does the oldest entry
(by insertion order) get evicted. `n_used` is the high-water mark: slots at or past it have never
held an entry, so scans stop there.

Dedup key: (voxel of the 3D centre, view-direction bin of the ray that saw it). A new entry
replaces whatever held its key: the newest observation of a surface, from a side, wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.memory.config import KEY_VIEW_BITS, KEY_VOXEL_BITS, MemoryConfig
from worldplay.memory.index import SlotIndex

FREE_KEY = -1   # key of an empty slot; real keys are >= 0


@dataclass
class Patches:
    """A detached set of entries (the unit of insert, copy and paste)."""
    feat: Tensor      # (N, D) features
    centre: Tensor    # (N, 3) world-space patch centre, metres
    c2w: Tensor       # (N, 4, 4) the camera that saw it
    intr: Tensor      # (N, 4) that camera's (fx, fy, cx, cy) in full-res pixels
    size: Tensor      # (N,) world width of the patch (depth * patch_px / fx): its splat footprint
    time: Tensor      # (N,) float64 seconds
    dynamic: Tensor   # (N,) in [0, 1]: fraction of the patch on moving objects

    def __len__(self) -> int:
        return int(self.centre.shape[0])

    def select(self, idx: Tensor) -> "Patches":
        return Patches(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


def K_to_intr(K: Tensor) -> Tensor:
    """Pixel K (3, 3) -> (4,) (fx, fy, cx, cy), the layout of `Patches.intr`."""
    return torch.stack([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])


def intr_to_K(intr: Tensor) -> Tensor:
    """(N, 4) (fx, fy, cx, cy) -> (N, 3, 3)."""
    K = torch.zeros(intr.shape[0], 3, 3, dtype=intr.dtype, device=intr.device)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2] = intr.unbind(-1)
    K[:, 2, 2] = 1.0
    return K


def view_keys(centre: Tensor, cam_centre: Tensor, cfg: MemoryConfig) -> Tensor:
    """int64 dedup key (N,) of (voxel of centre, bin of the direction camera -> centre)."""
    vox = torch.floor(centre.double() / cfg.voxel_size).long() + 2 ** (KEY_VOXEL_BITS - 1)
    vox = vox.clamp(0, 2 ** KEY_VOXEL_BITS - 1)                              # (N, 3)
    d = torch.nn.functional.normalize(centre - cam_centre, dim=-1)            # (N, 3)
    az = torch.atan2(d[:, 0], -d[:, 2])                                       # [-pi, pi], 0 = -z
    el = torch.asin(d[:, 1].clamp(-1.0, 1.0))                                 # [-pi/2, pi/2]
    az_bin = (torch.floor((az + math.pi) / (2 * math.pi) * cfg.view_bins).long()) % cfg.view_bins
    el_bin = torch.floor((el + math.pi / 2) / math.pi * cfg.elevation_bins).long()
    el_bin = el_bin.clamp(0, cfg.elevation_bins - 1)
    view = az_bin * cfg.elevation_bins + el_bin
    key = (vox[:, 0] << (2 * KEY_VOXEL_BITS)) | (vox[:, 1] << KEY_VOXEL_BITS) | vox[:, 2]
    return (key << KEY_VIEW_BITS) | view


class EntryStore:
    """The tensors behind MosaicMemory. Indices into them are the entry ids."""

    def __init__(self, cfg: MemoryConfig, device: str | torch.device = "cpu"):
        self.cfg = cfg
        n, dev = cfg.capacity, torch.device(device)
        self.feat = torch.zeros(n, cfg.feature_dim, dtype=cfg.torch_feature_dtype, device=dev)
        self.centre = torch.zeros(n, 3, device=dev)
        self.c2w = torch.zeros(n, 4, 4, device=dev)
        self.intr = torch.zeros(n, 4, device=dev)
        self.size = torch.zeros(n, device=dev)
        self.vdir = torch.zeros(n, 3, device=dev)     # unit ray source camera -> centre (ranking)
        self.time = torch.zeros(n, dtype=torch.float64, device=dev)
        self.dynamic = torch.zeros(n, device=dev)
        self.key = torch.full((n,), FREE_KEY, dtype=torch.long, device=dev)
        self.seq = torch.zeros(n, dtype=torch.long, device=dev)      # insertion order, for eviction
        self.valid = torch.zeros(n, dtype=torch.bool, device=dev)
        self.n_used = 0           # high-water mark of slots ever written
        self.next_seq = 0
        self.inserted_total = 0
        self.evicted_total = 0    # pushed out by the capacity cap
        self.replaced_total = 0   # superseded by a newer entry with the same key
        self.now = 0.0            # latest time seen: "current time" for recency and paste
        self.slot_of = SlotIndex(n)          # key -> slot of the entry holding it (dedup lookups)

    TENSORS = ("feat", "centre", "c2w", "intr", "size", "vdir", "time", "dynamic", "key", "seq", "valid")
    COUNTERS = ("n_used", "next_seq", "inserted_total", "evicted_total", "replaced_total", "now")

    @property
    def device(self) -> torch.device:
        return self.centre.device

    def __len__(self) -> int:
        return int(self.valid[:self.n_used].sum())

    def clear(self) -> None:
        self.valid.zero_()
        self.key.fill_(FREE_KEY)
        self.n_used = self.next_seq = self.inserted_total = self.evicted_total = self.replaced_total = 0
        self.now = 0.0
        self.slot_of.clear()

    def rebuild_index(self) -> None:
        """Recompute the key -> slot lookup from the tensors (after loading them)."""
        ids = self.valid_ids()
        self.slot_of.clear()
        self.slot_of.update(zip(self.key[ids].tolist(), ids.tolist()))

    def nbytes(self) -> int:
        return sum(getattr(self, name).element_size() * getattr(self, name).nelement() for name in self.TENSORS)

    def add(self, p: Patches) -> int:
        """Insert entries (dedup, then evict oldest if full). Returns how many were written."""
        if len(p) == 0:
            return 0
        if p.feat.dim() != 2 or p.feat.shape[1] != self.cfg.feature_dim:
            raise WorldplayError(f"memory: patches have {tuple(p.feat.shape[1:])} features, this memory stores "
                                 f"{self.cfg.feature_dim}; paste only between memories of the same model")
        dev = self.device
        p = Patches(**{f.name: getattr(p, f.name).to(dev) for f in fields(p)})
        keys = view_keys(p.centre, p.c2w[:, :3, 3], self.cfg)
        # Within one batch keep the last entry per key (later = newer by convention).
        uniq, inverse = torch.unique(keys, return_inverse=True)
        last = torch.full((uniq.shape[0],), -1, dtype=torch.long, device=dev)
        last = last.scatter_reduce(0, inverse, torch.arange(len(p), device=dev), reduce="amax")
        last = last.sort().values[-self.cfg.capacity:]   # more than capacity at once: newest fit
        p, keys = p.select(last), keys[last]
        n = len(p)

        # A dict lookup per new key: O(batch), where a tensor search would scan all of memory.
        hit = [slot for slot in map(self.slot_of.get, keys.tolist()) if slot is not None]
        if hit:
            self.replaced_total += len(hit)
            self._free(torch.tensor(hit, dtype=torch.long, device=dev))
        slots = self._allocate(n)
        self.feat[slots] = p.feat.to(self.feat.dtype)
        self.centre[slots] = p.centre.float()
        self.c2w[slots] = p.c2w.float()
        self.intr[slots] = p.intr.float()
        self.size[slots] = p.size.float()
        self.vdir[slots] = torch.nn.functional.normalize(p.centre.float() - p.c2w[:, :3, 3].float(), dim=-1)
        self.time[slots] = p.time.double()
        self.dynamic[slots] = p.dynamic.float()
        self.key[slots] = keys
        self.slot_of.update(zip(keys.tolist(), slots.tolist()))
        self.seq[slots] = torch.arange(self.next_seq, self.next_seq + n, device=dev)
        self.valid[slots] = True
        self.next_seq += n
        self.inserted_total += n
        self.n_used = max(self.n_used, int(slots.max()) + 1)
        self.now = max(self.now, float(p.time.max()))
        return n

    def _allocate(self, n: int) -> Tensor:
        """n slot indices: free ones first, then the oldest valid entries (evicted)."""
        # Holes below the high-water mark first, so scans (which stop at n_used) stay short.
        slots = (~self.valid[:self.n_used]).nonzero()[:, 0][:n]
        if slots.numel() < n:
            start = self.n_used
            fresh = torch.arange(start, min(self.cfg.capacity, start + n - slots.numel()), device=self.device)
            slots = torch.cat([slots, fresh])
        if slots.numel() < n:
            need = n - slots.numel()
            age = torch.where(self.valid, self.seq, torch.full_like(self.seq, torch.iinfo(torch.long).max))
            oldest = torch.topk(age, need, largest=False).indices
            self.evicted_total += need
            self._free(oldest)
            slots = torch.cat([slots, oldest])
        return slots

    def _free(self, ids: Tensor) -> None:
        for k in self.key[ids].tolist():
            self.slot_of.pop(k)
        self.valid[ids] = False
        self.key[ids] = FREE_KEY

    def remove(self, ids: Tensor) -> int:
        """Drop entries by id (erase). Returns how many valid entries were removed."""
        ids = ids[self.valid[ids]]
        self._free(ids)
        return int(ids.numel())

    def valid_ids(self) -> Tensor:
        return self.valid[:self.n_used].nonzero()[:, 0]

    def gather(self, ids: Tensor) -> Patches:
        """Copies of the entries `ids` (features as float32); indexing by a tensor already copies."""
        p = Patches(**{f.name: getattr(self, f.name)[ids] for f in fields(Patches)})
        p.feat = p.feat.float()
        return p
