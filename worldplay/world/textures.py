"""Procedural surface textures: a pattern weight from surface (u, v) in metres, then two colours.

Everything is a pure function of surface coordinates, so a surface looks the same from every
viewpoint and at every time (what memory and revisit metrics rely on). The renderer shades one
surface at a time inside its screen rectangle, so only that surface's pattern is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

RGB = tuple[float, float, float]

# Pattern ids, stored as floats in the material table.
FLAT = 0       # one colour with a faint value-noise mottle
CHECKER = 1    # tiles alternating color0 / color1
STRIPES = 2    # horizontal bands (triangle wave, so soft edges)
BRICKS = 3     # running-bond bricks (color0) with mortar (color1), per-brick shade
GRID = 4       # color0 panels framed by color1 lines (tiles, windows)
NOISE = 5      # value-noise blotches between the two colours
N_PATTERNS = 6

MORTAR = 0.08            # fraction of a cell taken by a joint line
BRICK_ASPECT = 0.5       # bricks are twice as wide as tall
BRICK_SHADE = 0.25       # how much per-brick hash darkens a brick
MOTTLE = 0.18            # brightness variation that value noise gives FLAT surfaces
MOTTLE_SCALE = 0.7       # value-noise cells per pattern cell for that mottle
HASH_A, HASH_B, HASH_C = 12.9898, 78.233, 43758.5453   # classic shader hash constants

# Material table columns: [pattern, scale, r0, g0, b0, r1, g1, b1]
MAT_COLS = 8


@dataclass(frozen=True)
class Material:
    pattern: int      # one of the pattern ids above
    scale: float      # pattern cells per metre
    color0: RGB       # main colour, linear-ish 0..1
    color1: RGB       # secondary colour (mortar, second checker, noise peaks)

    def row(self) -> list[float]:
        return [float(self.pattern), self.scale, *self.color0, *self.color1]


def material_table(materials: list[Material], device=None) -> Tensor:
    """(M, MAT_COLS) float32 table; the renderer reads one row per visible surface."""
    return torch.tensor([m.row() for m in materials], dtype=torch.float32, device=device)


def fract(x: Tensor) -> Tensor:
    """x - floor(x), in [0, 1) also for negative x (torch.frac keeps the sign)."""
    return x - torch.floor(x)


def cell_hash(i: Tensor, j: Tensor) -> Tensor:
    """Pseudo-random value in [0, 1) per integer cell (i, j); deterministic per device."""
    return torch.frac(torch.sin(i * HASH_A + j * HASH_B) * HASH_C).abs()


def value_noise(u: Tensor, v: Tensor) -> Tensor:
    """Smooth noise in [0, 1): hashed lattice values blended with a smoothstep."""
    iu, iv = torch.floor(u), torch.floor(v)
    fu, fv = u - iu, v - iv
    su = fu * fu * (3.0 - 2.0 * fu)
    sv = fv * fv * (3.0 - 2.0 * fv)
    a = cell_hash(iu, iv)
    b = cell_hash(iu + 1.0, iv)
    c = cell_hash(iu, iv + 1.0)
    d = cell_hash(iu + 1.0, iv + 1.0)
    top = torch.lerp(a, b, su)
    bottom = torch.lerp(c, d, su)
    return torch.lerp(top, bottom, sv)


def _line(x: Tensor) -> Tensor:
    """1.0 within MORTAR of a cell edge, else 0.0 (compared straight into a float tensor)."""
    return torch.lt(fract(x), MORTAR, out=torch.empty_like(x))


def pattern(kind: int, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor | None]:
    """Weight of color1 in [0, 1] and an optional brightness factor for one pattern.

    u, v: surface coordinates in pattern cells (metres times the material's scale).
    """
    if kind == CHECKER:
        return fract((torch.floor(u) + torch.floor(v)) * 0.5) * 2.0, None
    if kind == STRIPES:
        return (fract(v) * 2.0 - 1.0).abs_(), None
    if kind == BRICKS:
        fv = torch.floor(v)
        bu = u * BRICK_ASPECT + fract(fv * 0.5)            # odd rows shift half a brick
        mortar = torch.maximum(_line(bu), _line(v))
        shade = 1.0 - BRICK_SHADE * cell_hash(torch.floor(bu), fv) * (1.0 - mortar)
        return mortar, shade
    if kind == GRID:
        return torch.maximum(_line(u), _line(v)), None
    if kind == NOISE:
        return value_noise(u, v), None
    if kind == FLAT:
        return torch.zeros_like(u), mottle(u, v)
    raise ValueError(f"unknown pattern id {kind}; use one of 0..{N_PATTERNS - 1}")


def mottle(u: Tensor, v: Tensor) -> Tensor:
    """Low-frequency brightness factor around 1.0 so flat areas are not featureless."""
    n = value_noise(u * MOTTLE_SCALE, v * MOTTLE_SCALE)
    return n.mul_(MOTTLE).add_(1.0 - MOTTLE * 0.5)
