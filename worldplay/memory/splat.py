"""Project stored entries into target views and z-buffer them over a grid of cells.

Shared by retrieval (which entries are visible) and the warp canvas (which entry shows in each
cell). A patch is a small square facing the camera: its footprint in a target grid is its world
width over its target depth, in cells. Splatting that footprint (not just the centre's cell) is
what lets a near wall hide everything behind it even where its patch centres are sparser than
the target grid, and fills holes in the canvas when the camera walks towards a surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from worldplay.camera import invert_se3
from worldplay.errors import WorldplayError
from worldplay.memory.config import MemoryConfig, grid_coords
from worldplay.memory.store import EntryStore


@dataclass
class Candidates:
    """Entries in front of a target camera whose centre falls inside the grid (one row per pair)."""
    target: Tensor   # (n,) which target view
    ids: Tensor      # (n,) entry id
    gy: Tensor       # (n,) fractional grid row
    gx: Tensor       # (n,) fractional grid column
    z: Tensor        # (n,) depth in the target view
    ext: Tensor      # (n,) footprint width in cells
    cell: Tensor     # (n,) linear index target * h * w + row * w + col of the centre's cell

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def as_targets(c2w: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """(4, 4) or (T, 4, 4) poses and (3, 3) or (T, 3, 3) intrinsics -> (T, 4, 4), (T, 3, 3)."""
    c2w = c2w.float()
    c2w = c2w[None] if c2w.dim() == 2 else c2w
    if c2w.dim() != 3 or tuple(c2w.shape[1:]) != (4, 4):
        raise WorldplayError(f"memory: target poses must be (4, 4) or (T, 4, 4) c2w, got {tuple(c2w.shape)}")
    K = K.float()
    if tuple(K.shape[-2:]) != (3, 3) or K.dim() not in (2, 3) or (K.dim() == 3 and K.shape[0] != c2w.shape[0]):
        raise WorldplayError(f"memory: K must be (3, 3) or ({c2w.shape[0]}, 3, 3) intrinsics, "
                             f"got {tuple(K.shape)}")
    return c2w, K.expand(c2w.shape[0], 3, 3)


def project_candidates(store: EntryStore, cfg: MemoryConfig, c2w: Tensor, K: Tensor,
                       grid: tuple[int, int], min_age: float = 0.0, subset: Tensor | None = None) -> Candidates:
    """Frustum test of stored entries (all, or the ids in `subset`) against T targets
    (c2w (T, 4, 4), K (T, 3, 3)).

    Two stages so the per-candidate work only runs on entries inside the frustum: a
    division-free frustum test over all (T x n) pairs, then projection of the survivors.
    """
    h, w = grid
    dev = store.device
    if subset is None:
        centre, valid, time = store.centre[:store.n_used], store.valid[:store.n_used], store.time[:store.n_used]
    else:
        subset = subset.to(dev)
        centre, valid, time = (x.index_select(0, subset) for x in (store.centre, store.valid, store.time))
    n = centre.shape[0]
    c2w, K = c2w.to(dev), K.to(dev)
    w2c = invert_se3(c2w)                                                   # (T, 4, 4)
    T = c2w.shape[0]
    # One GEMM against the transposed view: (3T, 3) @ (3, n) -> rows of x, y, z per target.
    pc = torch.addmm(w2c[:, :3, 3].reshape(T * 3, 1), w2c[:, :3, :3].reshape(T * 3, 3), centre.T)
    pc = pc.reshape(T, 3, n)                                                # (T, xyz, n)
    x, y, z = pc[:, 0], pc[:, 1], pc[:, 2]
    ok = (z >= cfg.min_depth) & (z <= cfg.max_depth) & valid                # (T, n)
    # Inside the padded frame, u in [0, W) and v in [-pad_top, padded_h - pad_top), tested
    # without dividing by z (K's rows times the camera point, against z times the bounds).
    fxz, cxz = K[:, 0, 0, None] * x, K[:, 0, 2, None] * z
    fyz, cyz = K[:, 1, 1, None] * y, K[:, 1, 2, None] * z
    ok &= (fxz + cxz >= 0) & (fxz + cxz < cfg.image_width * z)
    ok &= (fyz + cyz >= -cfg.pad_top * z) & (fyz + cyz < (cfg.padded_h - cfg.pad_top) * z)
    if min_age > 0:
        ok &= (store.now - time) >= min_age
    lin = ok.reshape(-1).nonzero()[:, 0]                                    # (m,) into T * n
    if T == 1:
        t_idx, ids = torch.zeros_like(lin), lin
    else:
        t_idx, ids = lin // n, lin % n
    if subset is not None:
        ids = subset[ids]
    xc, yc, zc = (pc[:, i].reshape(-1).index_select(0, lin) for i in range(3))  # (m,) each
    fx, fy, cx0, cy0 = (K[:, i, j].index_select(0, t_idx) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    u = fx * xc / zc + cx0
    v = fy * yc / zc + cy0
    gy, gx = grid_coords(u, v, cfg, grid)
    # The frustum test put gy in [-0.5, h - 0.5); the clamp only catches rounding at the edges.
    cy = torch.floor(gy + 0.5).long().clamp_(0, h - 1)
    cx = torch.floor(gx + 0.5).long().clamp_(0, w - 1)
    cell_w = cfg.image_width / w                                           # pixels per grid column
    ext = store.size.index_select(0, ids) * (fx * cfg.splat_scale / cell_w) / zc
    cell = (t_idx * h + cy) * w + cx
    return Candidates(target=t_idx, ids=ids, gy=gy, gx=gx, z=zc, ext=ext, cell=cell)


def footprint_rects(c: Candidates, grid: tuple[int, int], max_radius: int) -> tuple[Tensor, ...]:
    """Each candidate's footprint as an inclusive rectangle of cells: (y0, x0, dy, dx).

    A cell is covered when its centre lies within half a footprint of the patch centre; the
    centre's own cell is always covered; the rectangle is clipped to the grid and to
    `max_radius` cells around the own cell.
    """
    h, w = grid
    half = c.ext * 0.5
    own_y, own_x = (c.cell // w) % h, c.cell % w
    lo_y = torch.maximum(torch.ceil(c.gy - half).long(), own_y - max_radius).clamp_min(0)
    lo_x = torch.maximum(torch.ceil(c.gx - half).long(), own_x - max_radius).clamp_min(0)
    hi_y = torch.minimum(torch.floor(c.gy + half).long(), own_y + max_radius).clamp_max(h - 1)
    hi_x = torch.minimum(torch.floor(c.gx + half).long(), own_x + max_radius).clamp_max(w - 1)
    y0, x0 = torch.minimum(lo_y, own_y), torch.minimum(lo_x, own_x)
    y1, x1 = torch.maximum(hi_y, own_y), torch.maximum(hi_x, own_x)
    return y0, x0, y1 - y0, x1 - x0


def zbuffer(c: Candidates, n_targets: int, grid: tuple[int, int], max_radius: int,
            want_winner: bool = False) -> tuple[Tensor, Tensor | None]:
    """Nearest footprint depth per cell (T*h*w,) (+inf where nothing lands) and, if asked, the
    candidate index shown there (-1 if none; ties between equal depths are broken consistently).

    Rectangles of the same shape (dy, dx) are splatted together: a min-scatter of their depths
    into their top-left cell, then a min-pool that spreads each corner over its rectangle. That
    is exact and costs O(candidates + shapes x cells), however large the footprints.
    """
    h, w = grid
    dev = c.z.device
    n_cells = n_targets * h * w
    zmin = torch.full((n_cells,), float("inf"), device=dev)
    win = torch.full((n_cells,), -1, dtype=torch.long, device=dev) if want_winner else None
    y0, x0, dy, dx = footprint_rects(c, grid, max_radius)
    side = 2 * max_radius + 1
    shape = dy * side + dx                                                  # (m,) in [0, side^2)
    key = shape * n_cells + (c.target * h + y0) * w + x0                    # (m,) shape-major corner
    # Per shape, the nearest depth (and its candidate) at each rectangle's top-left corner.
    corner_z = torch.full((side * side * n_cells,), float("inf"), device=dev)
    corner_z = corner_z.scatter_reduce(0, key, c.z, reduce="amin")
    if want_winner:
        front = (c.z <= corner_z[key]).nonzero()[:, 0]
        corner_w = torch.full((side * side * n_cells,), -1, dtype=torch.long, device=dev)
        corner_w = corner_w.scatter_reduce(0, key[front], front, reduce="amax").view(side * side, n_cells)
    corner_z = corner_z.view(side * side, n_cells)
    for s in torch.bincount(shape, minlength=side * side).nonzero()[:, 0].tolist():
        a, b = divmod(s, side)
        cz = corner_z[s]
        cw = corner_w[s] if want_winner else None
        if a or b:  # spread each corner over its (a+1) x (b+1) rectangle: a min-pool
            neg = F.pad(-cz.view(n_targets, 1, h, w), (b, 0, a, 0), value=-float("inf"))  # (T, 1, h+a, w+b)
            pooled, idx = F.max_pool2d(neg, (a + 1, b + 1), stride=1, return_indices=True)  # (T, 1, h, w)
            cz = -pooled.reshape(-1)
            if want_winner:
                src = idx.reshape(n_targets, -1)                                # flat index in (h+a, w+b)
                py, px = src // (w + b) - a, src % (w + b) - b
                t = torch.arange(n_targets, device=dev)[:, None]
                lin = ((t * h + py.clamp_min(0)) * w + px.clamp_min(0)).reshape(-1)
                cw = torch.where(torch.isfinite(cz), cw[lin], torch.full_like(lin, -1))
        better = cz < zmin
        zmin = torch.where(better, cz, zmin)
        if want_winner:
            win = torch.where(better, cw, win)
    return zmin, win
