"""Looks of the scene words: per theme the materials, per time of day the sky and light.

Kept apart from layout so that adding a theme is one entry here plus its word in VOCAB.
Colours are 0..1 floats, chosen so scenes read clearly at 640x360 (contrasting ground,
walls and objects) rather than photographically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from worldplay.errors import WorldplayError
from worldplay.vocab import VOCAB
from worldplay.world.textures import BRICKS, CHECKER, FLAT, GRID, NOISE, RGB, STRIPES, Material


@dataclass(frozen=True)
class Theme:
    ground: Material                  # the floor everywhere
    wall: Material                    # bounding and interior walls
    wall_height: float                # metres; low enough that sky shows above
    pillar: Material                  # vertical cylinders (trunks, columns)
    boxes: tuple[Material, ...]       # crates, blocks, hedges
    spheres: tuple[Material, ...]     # static balls (boulders, canopies, domes)
    movers: tuple[Material, ...]      # moving objects: saturated so they stand out


@dataclass(frozen=True)
class Sky:
    top: RGB                          # zenith colour
    horizon: RGB                      # horizon colour; also the fog colour
    sun_dir: tuple[float, float, float]  # unit vector towards the sun (world, +y up)
    sun_color: RGB                    # direct light colour times intensity
    ambient: RGB                      # sky light reaching every surface


def _sun(elevation_deg: float, azimuth_deg: float) -> tuple[float, float, float]:
    """Unit vector to the sun; azimuth 0 = -z (the spawn view direction), 90 = +x."""
    e, a = math.radians(elevation_deg), math.radians(azimuth_deg)
    return (math.cos(e) * math.sin(a), math.sin(e), -math.cos(e) * math.cos(a))


def M(pattern: int, scale: float, c0: RGB, c1: RGB) -> Material:
    return Material(pattern, scale, c0, c1)


_MOVERS_BRIGHT = (
    M(CHECKER, 2.0, (0.95, 0.25, 0.20), (0.98, 0.92, 0.85)),
    M(STRIPES, 3.0, (0.20, 0.45, 0.95), (0.95, 0.95, 0.30)),
    M(CHECKER, 2.5, (0.95, 0.75, 0.10), (0.15, 0.15, 0.20)),
    M(STRIPES, 2.0, (0.85, 0.20, 0.80), (0.20, 0.90, 0.80)),
)

THEMES: dict[str, Theme] = {
    "desert": Theme(
        ground=M(NOISE, 0.35, (0.86, 0.74, 0.52), (0.74, 0.58, 0.38)),
        wall=M(BRICKS, 2.0, (0.80, 0.62, 0.42), (0.62, 0.50, 0.36)),
        wall_height=3.5,
        pillar=M(STRIPES, 1.5, (0.84, 0.70, 0.50), (0.70, 0.52, 0.34)),
        boxes=(M(GRID, 1.0, (0.72, 0.45, 0.30), (0.50, 0.32, 0.22)),
               M(FLAT, 1.0, (0.90, 0.80, 0.60), (0.8, 0.7, 0.5))),
        spheres=(M(NOISE, 1.2, (0.70, 0.50, 0.34), (0.52, 0.36, 0.26)),),
        movers=_MOVERS_BRIGHT),
    "forest": Theme(
        ground=M(NOISE, 0.5, (0.30, 0.48, 0.20), (0.22, 0.34, 0.14)),
        wall=M(BRICKS, 2.5, (0.42, 0.44, 0.38), (0.26, 0.32, 0.22)),
        wall_height=4.0,
        pillar=M(STRIPES, 4.0, (0.42, 0.30, 0.20), (0.30, 0.20, 0.13)),
        boxes=(M(NOISE, 1.5, (0.22, 0.42, 0.18), (0.14, 0.30, 0.12)),
               M(STRIPES, 3.0, (0.48, 0.34, 0.22), (0.36, 0.24, 0.16))),
        spheres=(M(NOISE, 1.5, (0.20, 0.52, 0.20), (0.12, 0.36, 0.14)),
                 M(NOISE, 2.0, (0.52, 0.54, 0.50), (0.38, 0.40, 0.36))),
        movers=_MOVERS_BRIGHT),
    "city": Theme(
        ground=M(GRID, 0.5, (0.36, 0.36, 0.38), (0.58, 0.57, 0.52)),
        wall=M(BRICKS, 3.0, (0.62, 0.30, 0.24), (0.80, 0.78, 0.74)),
        wall_height=5.0,
        pillar=M(STRIPES, 2.0, (0.70, 0.70, 0.72), (0.45, 0.46, 0.50)),
        boxes=(M(GRID, 1.2, (0.30, 0.45, 0.62), (0.85, 0.85, 0.85)),
               M(GRID, 0.8, (0.75, 0.68, 0.55), (0.30, 0.28, 0.26)),
               M(CHECKER, 1.0, (0.55, 0.55, 0.58), (0.40, 0.40, 0.44))),
        spheres=(M(CHECKER, 2.0, (0.85, 0.85, 0.88), (0.30, 0.32, 0.36)),),
        movers=_MOVERS_BRIGHT),
    "snow": Theme(
        ground=M(NOISE, 0.4, (0.88, 0.90, 0.94), (0.76, 0.80, 0.88)),
        wall=M(BRICKS, 1.5, (0.74, 0.84, 0.94), (0.92, 0.95, 0.99)),
        wall_height=3.5,
        pillar=M(STRIPES, 3.0, (0.34, 0.26, 0.20), (0.46, 0.36, 0.28)),
        boxes=(M(NOISE, 1.2, (0.62, 0.78, 0.90), (0.88, 0.94, 0.98)),
               M(GRID, 1.0, (0.50, 0.36, 0.28), (0.90, 0.92, 0.95))),
        spheres=(M(FLAT, 1.0, (0.96, 0.97, 1.00), (0.9, 0.9, 0.95)),
                 M(NOISE, 1.5, (0.20, 0.36, 0.26), (0.85, 0.90, 0.92))),
        movers=_MOVERS_BRIGHT),
    "ruins": Theme(
        ground=M(CHECKER, 1.0, (0.52, 0.48, 0.42), (0.42, 0.38, 0.34)),
        wall=M(BRICKS, 2.0, (0.58, 0.54, 0.46), (0.36, 0.34, 0.30)),
        wall_height=3.0,
        pillar=M(STRIPES, 1.2, (0.86, 0.84, 0.78), (0.70, 0.68, 0.62)),
        boxes=(M(BRICKS, 2.5, (0.56, 0.50, 0.42), (0.40, 0.36, 0.30)),
               M(NOISE, 1.5, (0.46, 0.50, 0.36), (0.36, 0.36, 0.30))),
        spheres=(M(NOISE, 2.0, (0.60, 0.58, 0.52), (0.42, 0.40, 0.36)),),
        movers=_MOVERS_BRIGHT),
    "garden": Theme(
        ground=M(CHECKER, 0.5, (0.40, 0.62, 0.28), (0.34, 0.54, 0.24)),
        wall=M(NOISE, 2.0, (0.20, 0.44, 0.18), (0.14, 0.32, 0.12)),
        wall_height=2.5,
        pillar=M(STRIPES, 2.0, (0.92, 0.90, 0.86), (0.80, 0.78, 0.74)),
        boxes=(M(NOISE, 2.0, (0.18, 0.46, 0.18), (0.12, 0.34, 0.12)),
               M(GRID, 2.0, (0.80, 0.56, 0.40), (0.92, 0.90, 0.86))),
        spheres=(M(NOISE, 3.0, (0.90, 0.40, 0.55), (0.95, 0.85, 0.30)),
                 M(NOISE, 3.0, (0.60, 0.40, 0.90), (0.95, 0.95, 0.95))),
        movers=_MOVERS_BRIGHT),
}

SKIES: dict[str, Sky] = {
    "dawn": Sky(top=(0.38, 0.50, 0.78), horizon=(0.96, 0.74, 0.58),
                sun_dir=_sun(12.0, 80.0), sun_color=(0.80, 0.58, 0.40),
                ambient=(0.38, 0.36, 0.42)),
    "noon": Sky(top=(0.30, 0.52, 0.90), horizon=(0.76, 0.86, 0.96),
                sun_dir=_sun(65.0, 30.0), sun_color=(0.72, 0.70, 0.66),
                ambient=(0.32, 0.35, 0.40)),
    "dusk": Sky(top=(0.26, 0.22, 0.48), horizon=(0.92, 0.50, 0.36),
                sun_dir=_sun(8.0, -100.0), sun_color=(0.80, 0.44, 0.28),
                ambient=(0.36, 0.30, 0.40)),
    "night": Sky(top=(0.02, 0.03, 0.10), horizon=(0.12, 0.16, 0.28),
                 sun_dir=_sun(40.0, 150.0), sun_color=(0.42, 0.48, 0.66),
                 ambient=(0.26, 0.28, 0.38)),
}

# One look per scene word, in the vocabulary's order (the seed picks words by position).
if tuple(THEMES) != VOCAB["theme"] or tuple(SKIES) != VOCAB["time"]:
    raise WorldplayError(f"palettes: themes {tuple(THEMES)} / skies {tuple(SKIES)} must match the scene "
                         f"words {VOCAB['theme']} / {VOCAB['time']} in worldplay/vocab.py, in order")
