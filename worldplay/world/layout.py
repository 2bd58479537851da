"""Where things go: seeded placement of objects and movers around the free annulus.

Zones, by distance d from the centre in the ground plane (radius R, see zones.py):
  d <= CLEAR_INNER * R - CLEARANCE       one centrepiece
  up to R + CLEARANCE                    free below HEADROOM (camera paths); flyers above it
  R + CLEARANCE .. + LANE_WIDTH          ground-level orbiters circle here, nothing else
  beyond, to the walls                   static objects, bouncers and patrollers, never overlapping
Every footprint is an axis-aligned rectangle in xz, checked against its zone and the others.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch
from torch import Tensor

from worldplay.vocab import SceneWords
from worldplay.world.palettes import Theme
from worldplay.world.primitives import BOX, CYLINDER, PRIM_COLS, SPHERE
from worldplay.world.textures import Material
from worldplay.world.zones import BOUNCE, CLEAR_INNER, CLEARANCE, HEADROOM, MOVER_COLS, ORBIT, PATROL_X, PATROL_Z

LANE_WIDTH = 2.0        # metres of ring reserved for ground-level orbiters
GAP = 0.4               # metres between any two footprints
WALL_MARGIN = 0.6       # metres kept free along the bounding walls
TRIES = 200             # placement attempts per object before giving up on it

COUNTS = {"pillars": 6, "boxes": 6, "spheres": 4, "walls": 3, "arches": 2}
# Mover counts: flyers (at most len(FLYER_BANDS)), lane orbiters, bouncers, patrollers.
MOVERS = {"calm": (1, 1, 1, 0), "busy": (2, 2, 1, 1)}
SPEED = {"calm": 1.0, "busy": 1.6}                      # movers' speed factor
# Orbit radii (x R) of flyers: separate bands, more than two flyer diameters apart, no collisions.
FLYER_BANDS = ((0.35, 0.45), (0.65, 0.8))
BOX_MOVER_SQUASH = 0.8  # moving boxes are a bit flatter than wide, so they read as vehicles


@dataclass
class Layout:
    statics: Tensor                        # (Ns, PRIM_COLS)
    movers: Tensor                         # (Nm, MOVER_COLS)
    materials: list[Material]
    notes: dict = field(default_factory=dict)


class _Placer:
    def __init__(self, rng: random.Random, half: float, min_dist: float):
        self.rng, self.half, self.min_dist = rng, half, min_dist
        self.taken: list[tuple[float, float, float, float]] = []    # x0, x1, z0, z1

    def _free(self, x0, x1, z0, z1) -> bool:
        nx = max(x0, min(0.0, x1))                  # closest footprint point to the centre
        nz = max(z0, min(0.0, z1))
        if math.hypot(nx, nz) < self.min_dist:
            return False
        return all(x0 >= b[1] + GAP or x1 <= b[0] - GAP or z0 >= b[3] + GAP or z1 <= b[2] - GAP
                   for b in self.taken)

    def place(self, hx: float, hz: float) -> tuple[float, float] | None:
        """Centre (x, z) for a footprint of half sizes (hx, hz), or None if the room is full."""
        lim_x, lim_z = self.half - WALL_MARGIN - hx, self.half - WALL_MARGIN - hz
        for _ in range(TRIES):
            x, z = self.rng.uniform(-lim_x, lim_x), self.rng.uniform(-lim_z, lim_z)
            fp = (x - hx, x + hx, z - hz, z + hz)
            if self._free(*fp):
                self.taken.append(fp)
                return x, z
        return None


def _materials(theme: Theme) -> tuple[list[Material], dict[str, list[int]]]:
    mats = [theme.ground, theme.wall, theme.pillar]
    index = {"pillar": [2]}
    for key, group in (("box", theme.boxes), ("sphere", theme.spheres), ("mover", theme.movers)):
        index[key] = list(range(len(mats), len(mats) + len(group)))
        mats.extend(group)
    index["wall"] = [1]
    return mats, index


class _Builder:
    """Accumulates table rows for one scene; every random draw comes from `rng`, in order."""

    def __init__(self, rng: random.Random, theme: Theme, half: float, radius: float):
        self.rng, self.theme, self.radius = rng, theme, radius
        self.mats, self.mi = _materials(theme)
        self.lane_mid = radius + CLEARANCE + LANE_WIDTH / 2
        self.placer = _Placer(rng, half, radius + CLEARANCE + LANE_WIDTH + GAP)
        self.rows: list[list[float]] = []
        self.movers: list[list[float]] = []

    def add(self, kind, x, y, z, sx, sy, sz, mat) -> None:
        self.rows.append([kind, x, y, z, sx, sy, sz, mat])

    def pick(self, group: str) -> int:
        return self.rng.choice(self.mi[group])

    def centrepiece(self) -> None:
        """One landmark inside CLEAR_INNER * radius - CLEARANCE (1.75 m at R = 9)."""
        inner = CLEAR_INNER * self.radius - CLEARANCE
        ball = 0.5 * inner
        style = self.rng.randrange(3)
        if style == 0:                                  # column with a ball on top
            r, h = 0.45 * inner, 2.2
            self.add(CYLINDER, 0, h / 2, 0, r, h / 2, r, self.mi["pillar"][0])
            self.add(SPHERE, 0, h + ball, 0, ball, ball, ball, self.pick("sphere"))
        elif style == 1:                                # pedestal block (corners stay inside)
            hb = 0.6 * inner
            self.add(BOX, 0, 0.5, 0, hb, 0.5, hb, self.pick("box"))
            self.add(SPHERE, 0, 1.0 + ball, 0, ball, ball, ball, self.pick("sphere"))
        else:                                           # one big ball
            r = 0.85 * inner
            self.add(SPHERE, 0, r, 0, r, r, r, self.pick("sphere"))

    def feature(self, feat: str) -> int:
        """Place COUNTS[feat] objects of one kind; returns how many fitted."""
        rng, placed = self.rng, 0
        for _ in range(COUNTS[feat]):
            if feat == "pillars":
                r, h = rng.uniform(0.3, 0.6), rng.uniform(3.0, 6.0)
                at = self.placer.place(r, r)
                if at:
                    self.add(CYLINDER, at[0], h / 2, at[1], r, h / 2, r, self.mi["pillar"][0])
            elif feat == "boxes":
                hx, hy, hz = rng.uniform(0.5, 1.5), rng.uniform(0.4, 1.6), rng.uniform(0.5, 1.5)
                at = self.placer.place(hx, hz)
                if at:
                    self.add(BOX, at[0], hy, at[1], hx, hy, hz, self.pick("box"))
            elif feat == "spheres":
                r = rng.uniform(0.6, 1.4)
                at = self.placer.place(r, r)
                if at:
                    self.add(SPHERE, at[0], r, at[1], r, r, r, self.pick("sphere"))
            elif feat == "walls":                       # thin, axis-aligned, below the room walls
                length, thick = rng.uniform(2.0, 4.0), 0.2
                hx, hz = (length, thick) if rng.random() < 0.5 else (thick, length)
                hy = self.theme.wall_height * rng.uniform(0.6, 0.9) / 2
                at = self.placer.place(hx, hz)
                if at:
                    self.add(BOX, at[0], hy, at[1], hx, hy, hz, self.mi["wall"][0])
            elif feat == "arches":                      # two columns and a lintel
                span, r, h, lintel = rng.uniform(1.2, 1.8), 0.35, 3.2, 0.3
                along_x = rng.random() < 0.5
                hx, hz = (span + r, r) if along_x else (r, span + r)
                at = self.placer.place(hx, hz)
                if at:
                    for sgn in (-1.0, 1.0):
                        px = at[0] + (sgn * span if along_x else 0.0)
                        pz = at[1] + (0.0 if along_x else sgn * span)
                        self.add(CYLINDER, px, h / 2, pz, r, h / 2, r, self.mi["pillar"][0])
                    self.add(BOX, at[0], h + lintel, at[1], hx, lintel, hz, self.mi["wall"][0])
            else:
                raise ValueError(f"no layout for feature '{feat}'")
            placed += at is not None
        return placed

    def mover(self, kind, size, motion, anchor, amp, omega, phase, bob=0.0) -> None:
        sy = size if kind == SPHERE else size * BOX_MOVER_SQUASH
        self.movers.append([kind, size, sy, size, self.pick("mover"), motion, *anchor, amp,
                            omega, phase, bob])

    def add_movers(self, motion_word: str) -> None:
        rng, two_pi = self.rng, 2 * math.pi
        n_fly, n_lane, n_bounce, n_patrol = MOVERS[motion_word]
        speed = SPEED[motion_word]

        def spin() -> float:                            # orbit direction
            return rng.choice((-1.0, 1.0))

        for band in FLYER_BANDS[:n_fly]:                # above the walkable annulus
            size, bob = rng.uniform(0.4, 0.6), 0.3
            amp = rng.uniform(*band) * self.radius
            y = HEADROOM + size + bob + rng.uniform(0.3, 1.2)
            self.mover(SPHERE, size, ORBIT, (0.0, y, 0.0), amp,
                       spin() * speed * rng.uniform(0.25, 0.45), rng.uniform(0, two_pi), bob)
        # Lane orbiters share one angular speed, evenly spaced, so they never run into each other.
        lane_omega, lane_phase = spin() * speed * rng.uniform(0.15, 0.3), rng.uniform(0, two_pi)
        for i in range(n_lane):                         # on the ground, in the lane
            kind = SPHERE if i % 2 == 0 else BOX
            size = rng.uniform(0.4, 0.6)
            y = size if kind == SPHERE else size * BOX_MOVER_SQUASH
            self.mover(kind, size, ORBIT, (0.0, y, 0.0), self.lane_mid, lane_omega,
                       lane_phase + two_pi * i / n_lane)
        for _ in range(n_bounce):                       # footprint reserved like a static
            size, height = rng.uniform(0.4, 0.6), rng.uniform(1.0, 2.0)
            at = self.placer.place(size, size)
            if at:
                self.mover(SPHERE, size, BOUNCE, (at[0], size, at[1]), height,
                           speed * rng.uniform(2.0, 3.0), rng.uniform(0, math.pi))
        for _ in range(n_patrol):                       # footprint covers the whole stroke
            size, amp = rng.uniform(0.4, 0.6), rng.uniform(1.5, 3.0)
            along_x = rng.random() < 0.5
            at = self.placer.place(size + amp if along_x else size,
                                   size if along_x else size + amp)
            if at:
                self.mover(BOX, size, PATROL_X if along_x else PATROL_Z,
                           (at[0], size * BOX_MOVER_SQUASH, at[1]), amp,
                           speed * rng.uniform(0.6, 1.0), rng.uniform(0, two_pi))


def build_layout(seed: int, words: SceneWords, theme: Theme, half: float, radius: float) -> Layout:
    """Deterministic layout for (seed, resolved words)."""
    b = _Builder(random.Random(f"worldplay-layout:{int(seed)}:{words.text}"), theme, half, radius)
    b.centrepiece()
    notes = {feat: b.feature(feat) for feat in words.features}
    b.add_movers(words.motion)
    notes["movers"] = len(b.movers)
    statics = torch.tensor(b.rows, dtype=torch.float32).reshape(-1, PRIM_COLS)     # (Ns, 8)
    movers = torch.tensor(b.movers, dtype=torch.float32).reshape(-1, MOVER_COLS)   # (Nm, 13)
    return Layout(statics, movers, b.mats, notes)
