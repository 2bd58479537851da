"""Memory editing: regions of the world, erase, copy and paste with a rigid transform.

Edits act on stored entries only; because every later frame is conditioned on what retrieval
returns, erasing a region makes the model stop "remembering" it and a pasted copy shows up at
its new place on the next visit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from worldplay.camera import unproject
from worldplay.errors import WorldplayError
from worldplay.memory.store import EntryStore, Patches

RIGID_TOL = 1e-3   # max deviation of R^T R from identity accepted as a rotation (float32 poses)


@dataclass(frozen=True)
class Region:
    """An axis-aligned box (lo, hi corners) or a sphere (centre, radius) in world coordinates.

    Build one with Region.box / Region.sphere, or region_at to aim at a point on screen.
    """
    kind: str                                          # "box" or "sphere"
    lo: tuple[float, float, float] = (0.0, 0.0, 0.0)   # box min corner
    hi: tuple[float, float, float] = (0.0, 0.0, 0.0)   # box max corner
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)  # sphere centre
    radius: float = 0.0                                # sphere radius, metres

    @classmethod
    def box(cls, lo, hi) -> "Region":
        lo, hi = tuple(float(v) for v in lo), tuple(float(v) for v in hi)
        if len(lo) != 3 or len(hi) != 3 or any(a > b for a, b in zip(lo, hi)):
            raise WorldplayError(f"Region.box needs 3D corners with lo <= hi, got {lo} and {hi}")
        return cls("box", lo=lo, hi=hi)

    @classmethod
    def sphere(cls, centre, radius: float) -> "Region":
        c = tuple(float(v) for v in centre)
        if len(c) != 3 or not radius > 0:
            raise WorldplayError(f"Region.sphere needs a 3D centre and radius > 0, got {c}, {radius}")
        return cls("sphere", centre=c, radius=float(radius))

    def bounding_sphere(self) -> tuple[Tensor, float]:
        """(centre (3,), radius) of a sphere holding the region (a box's circumscribed one)."""
        if self.kind == "sphere":
            return torch.tensor(self.centre), self.radius
        lo, hi = torch.tensor(self.lo), torch.tensor(self.hi)
        return (lo + hi) / 2, float((hi - lo).norm()) / 2

    def contains(self, pts: Tensor) -> Tensor:
        """(N, 3) world points -> (N,) bool."""
        if self.kind == "sphere":
            c = torch.tensor(self.centre, dtype=pts.dtype, device=pts.device)
            return (pts - c).norm(dim=-1) <= self.radius
        if self.kind != "box":
            raise WorldplayError(f"Region kind {self.kind!r} is unknown; use Region.box or Region.sphere")
        lo = torch.tensor(self.lo, dtype=pts.dtype, device=pts.device)
        hi = torch.tensor(self.hi, dtype=pts.dtype, device=pts.device)
        return ((pts >= lo) & (pts <= hi)).all(dim=-1)


def region_at(c2w: Tensor, K: Tensor, uv, depth: float, radius: float) -> Region:
    """"Aim at something": the sphere of `radius` around the point seen at pixel uv = (u, v)
    at z-depth `depth` from camera c2w (get the depth from the frame, or MosaicMemory.pick)."""
    if not depth > 0:
        raise WorldplayError(f"region_at: nothing was hit at pixel {tuple(uv)} (depth {depth}); aim at a surface")
    uv_t = torch.as_tensor(uv, dtype=torch.float32).reshape(1, 2)
    p = unproject(uv_t, torch.tensor([float(depth)]), c2w.float(), K.float())[0]
    return Region.sphere(p.tolist(), radius)


def region_ids(store: EntryStore, region: Region) -> Tensor:
    ids = store.valid_ids()
    return ids[region.contains(store.centre[ids])]


def erase(store: EntryStore, region: Region) -> int:
    """Forget every entry whose centre lies in `region`. Returns how many."""
    return store.remove(region_ids(store, region))


def copy(store: EntryStore, region: Region) -> Patches:
    """A detached copy of the entries in `region` (editing memory later does not change it)."""
    return store.gather(region_ids(store, region))


def check_rigid(T: Tensor) -> Tensor:
    T = torch.as_tensor(T, dtype=torch.float32)
    if tuple(T.shape) != (4, 4):
        raise WorldplayError(f"paste: transform must be a (4, 4) matrix, got {tuple(T.shape)}")
    R = T[:3, :3]
    rigid = (R.T @ R - torch.eye(3)).abs().max() < RIGID_TOL and abs(float(torch.det(R)) - 1.0) < RIGID_TOL
    if not rigid or (T[3] - torch.tensor([0.0, 0.0, 0.0, 1.0])).abs().max() > RIGID_TOL:
        raise WorldplayError("paste: transform must be rigid (rotation + translation, last row 0 0 0 1); "
                             "scaling or shearing would break the stored depths and cameras")
    return T


def transformed(p: Patches, T: Tensor, now: float) -> Patches:
    """`p` moved rigidly by T (world -> world) and stamped with time `now`."""
    T = check_rigid(T).to(p.centre.device)
    return Patches(feat=p.feat.clone(), centre=p.centre @ T[:3, :3].T + T[:3, 3],
                   c2w=T @ p.c2w, intr=p.intr.clone(), size=p.size.clone(),
                   time=torch.full_like(p.time, now), dynamic=p.dynamic.clone())


def paste(store: EntryStore, patches: Patches, T: Tensor) -> int:
    """Insert a moved copy of `patches` as new entries at the memory's current time."""
    return store.add(transformed(patches, T, store.now))
