"""Z-buffered splat: scatter candidate features into a canvas, the nearest depth winning per cell.

The Warped Latent canvas is built this way: every memory patch that projects into the target view
is a candidate (target cell, depth, feature); each cell shows the feature of its nearest
candidate. Ties (equal depth in one cell) go to the candidate with the highest index, the same
rule as worldplay's torch z-buffer (memory/splat.py, with a one-cell footprint).

Three passes, as usual for a z-buffer on a GPU, since a cell's winner is only known once every
candidate has been seen:
  1. depth:  atomic_min of each candidate's depth into its cell. Depths are compared as int32
             bit patterns, which order like the floats for non-negative values (IEEE-754), so a
             plain integer atomic does it.
  2. winner: each candidate whose depth equals its cell's minimum does atomic_max of its index.
  3. gather: each cell copies its winner's feature into the canvas (zeros where empty).
Candidates with a cell outside [0, n_cells) or a depth that is negative, NaN or infinite are
ignored (a camera sees nothing behind it), in both the kernel and the reference.

Output: canvas (D, n_cells) in feat's dtype (channels first, as the DiT concatenates it),
depth (n_cells,) float32 (+inf where empty) and winner (n_cells,) int64 (-1 where empty).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from kernels import KernelError
from kernels.jit import Launch, cdiv, check_launch, jit, next_pow2

tl = None   # triton.language, bound by the first launch (Triton is imported lazily: kernels/jit.py)

INF_BITS = 0x7F800000        # float32 +inf as int32: larger than every finite non-negative depth
MAX_CANDIDATES = 2 ** 31 - 1  # winners are int32 indices
BLOCK_CANDIDATES = 1024       # candidates per program in passes 1 and 2 (8 per thread at 4 warps)
BLOCK_CELLS = 64              # cells per program in the gather
INTERPRET_BLOCK = 64          # the interpreter pays per program: few, small blocks
MAX_BLOCK_D = 64              # feature channels per gather step (wider features loop)


class SplatResult(NamedTuple):
    canvas: Tensor   # (D, n_cells)
    depth: Tensor    # (n_cells,) float32, +inf where no candidate landed
    winner: Tensor   # (n_cells,) int64 candidate index, -1 where no candidate landed


@jit
def _splat_depth_kernel(CELL, ZBITS, ZBUF, n, n_cells, BLOCK: tl.constexpr, INF: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = offs < n
    cell = tl.load(CELL + offs, mask=live, other=-1)
    z = tl.load(ZBITS + offs, mask=live, other=INF)
    ok = live & (cell >= 0) & (cell < n_cells) & (z >= 0) & (z < INF)   # z bits >= 0: sign bit clear
    tl.atomic_min(ZBUF + cell, z, mask=ok)


@jit
def _splat_winner_kernel(CELL, ZBITS, ZBUF, WIN, n, n_cells, BLOCK: tl.constexpr, INF: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = offs < n
    cell = tl.load(CELL + offs, mask=live, other=-1)
    z = tl.load(ZBITS + offs, mask=live, other=INF)
    ok = live & (cell >= 0) & (cell < n_cells) & (z >= 0) & (z < INF)
    front = tl.load(ZBUF + cell, mask=ok, other=-1)
    tl.atomic_max(WIN + cell, offs, mask=ok & (z == front))


@jit
def _splat_gather_kernel(WIN, FEAT, CANVAS, n_cells, dim, s_fn, s_fd, s_cd, s_cn,
                         BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
    cells = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    live = cells < n_cells
    win = tl.load(WIN + cells, mask=live, other=-1).to(tl.int64)
    hit = win >= 0
    for d0 in range(0, dim, BLOCK_D):
        ch = d0 + tl.arange(0, BLOCK_D)
        ch_ok = ch < dim
        f = tl.load(FEAT + win[:, None] * s_fn + ch[None, :] * s_fd,
                    mask=hit[:, None] & ch_ok[None, :], other=0.0)          # (BLOCK_C, BLOCK_D)
        tl.store(CANVAS + ch[None, :] * s_cd + cells[:, None] * s_cn, f.to(CANVAS.dtype.element_ty),
                 mask=live[:, None] & ch_ok[None, :])


def _check(cell: Tensor, depth: Tensor, feat: Tensor, n_cells: int) -> None:
    n = cell.shape[0] if cell.dim() == 1 else -1
    if cell.dim() != 1 or cell.dtype not in (torch.int32, torch.int64):
        raise KernelError(f"splat: cell must be a 1-D integer tensor (n,), got {cell.dtype} {tuple(cell.shape)}")
    if tuple(depth.shape) != (n,) or not depth.is_floating_point():
        raise KernelError(f"splat: depth must be a float tensor of shape ({n},) like cell, got "
                          f"{depth.dtype} {tuple(depth.shape)}")
    if feat.dim() != 2 or feat.shape[0] != n:
        raise KernelError(f"splat: feat must be ({n}, D), one row per candidate, got {tuple(feat.shape)}")
    if not feat.is_floating_point():
        raise KernelError(f"splat: feat must be floating point, got {feat.dtype}")
    if n_cells < 0:
        raise KernelError(f"splat: n_cells={n_cells} must be >= 0")
    if n > MAX_CANDIDATES:
        raise KernelError(f"splat: {n} candidates is more than {MAX_CANDIDATES}; splat in parts")
    if len({cell.device, depth.device, feat.device}) != 1:
        raise KernelError("splat: cell, depth and feat must be on one device")


def splat(cell: Tensor, depth: Tensor, feat: Tensor, n_cells: int) -> SplatResult:
    """Triton launcher: z-buffered splat of n candidates into n_cells cells (module docstring)."""
    _check(cell, depth, feat, n_cells)
    for k in (_splat_depth_kernel, _splat_winner_kernel, _splat_gather_kernel):
        check_launch(k, cell.device)
    launches, (canvas, zbuf, win) = splat_launches(cell, depth, feat, n_cells, _splat_depth_kernel.interpreted)
    for launch in launches:   # in order: each pass needs the previous one finished
        launch.run()
    return SplatResult(canvas, zbuf.view(torch.float32), win.long())


def splat_launches(cell: Tensor, depth: Tensor, feat: Tensor, n_cells: int,
                   interpreted: bool) -> tuple[list[Launch], tuple[Tensor, Tensor, Tensor]]:
    """The three passes' arguments and their buffers - canvas (D, n_cells), int32 depth bits and
    int32 winners (n_cells,) - without launching (see kernels/aot.py)."""
    _check(cell, depth, feat, n_cells)
    dev, n, dim = cell.device, cell.shape[0], feat.shape[1]
    zbits = depth.to(torch.float32).contiguous().view(torch.int32)          # (n,) same bits
    cell = cell.contiguous()
    zbuf = torch.full((n_cells,), INF_BITS, dtype=torch.int32, device=dev)
    win = torch.full((n_cells,), -1, dtype=torch.int32, device=dev)
    canvas = torch.empty(dim, n_cells, dtype=feat.dtype, device=dev)       # (D, n_cells)
    launches = []
    if n and n_cells:
        block = INTERPRET_BLOCK if interpreted else BLOCK_CANDIDATES
        grid = (cdiv(n, block),)
        consts = dict(BLOCK=block, INF=INF_BITS)
        launches.append(Launch(_splat_depth_kernel, grid, (cell, zbits, zbuf, n, n_cells), consts, {}))
        launches.append(Launch(_splat_winner_kernel, grid, (cell, zbits, zbuf, win, n, n_cells), consts, {}))
    if n_cells and dim:
        blk_c = INTERPRET_BLOCK if interpreted else BLOCK_CELLS
        consts = dict(BLOCK_C=blk_c, BLOCK_D=min(next_pow2(dim), MAX_BLOCK_D))
        args = (win, feat, canvas, n_cells, dim, *feat.stride(), *canvas.stride())
        launches.append(Launch(_splat_gather_kernel, (cdiv(n_cells, blk_c),), args, consts, {}))
    return launches, (canvas, zbuf, win)


def splat_reference(cell: Tensor, depth: Tensor, feat: Tensor, n_cells: int) -> SplatResult:
    """The same splat in torch: scatter-amin the depths, scatter-amax the front candidates' indices."""
    _check(cell, depth, feat, n_cells)
    dev, dim = cell.device, feat.shape[1]
    z = depth.to(torch.float32)
    cell = cell.long()
    ok = (cell >= 0) & (cell < n_cells) & torch.isfinite(z) & ~torch.signbit(z)   # -0.0 is dropped too
    idx = ok.nonzero()[:, 0]                                                 # (m,)
    c, zz = cell[idx], z[idx]
    zmin = torch.full((n_cells,), float("inf"), device=dev).scatter_reduce(0, c, zz, reduce="amin")
    front = zz == zmin[c]
    win = torch.full((n_cells,), -1, dtype=torch.long, device=dev)
    win = win.scatter_reduce(0, c[front], idx[front], reduce="amax")
    hit = win >= 0
    canvas = torch.zeros(n_cells, dim, dtype=feat.dtype, device=dev)
    canvas[hit] = feat[win[hit]]
    return SplatResult(canvas.T.contiguous(), zmin, win)                     # (D, n_cells)
