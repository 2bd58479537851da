"""MosaicWorld scenes: what is where, as flat tensors, and how movers move with time.

`make_scene(seed, prompt)` is deterministic in (seed, prompt). The room is a square of
2 * HALF_SIZE metres bounded by walls; `center` sits at eye height in its middle. Where objects
may not stand, so that scripted camera paths stay clear, is zones.py's walkable guarantee;
layout.py places the objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from worldplay.camera import yaw_pitch_pose
from worldplay.errors import WorldplayError
from worldplay.vocab import resolve_words
from worldplay.world.layout import build_layout
from worldplay.world.palettes import SKIES, THEMES, Sky
from worldplay.world.primitives import BOX, CYLINDER, MAX_PRIMS, PRIM_COLS, SPHERE
from worldplay.world.textures import MAT_COLS, Material, material_table
from worldplay.world.zones import BOUNCE, EYE_HEIGHT, HALF_SIZE, MOVER_COLS, ORBIT, PATROL_X, PATROL_Z, RADIUS


@dataclass
class Scene:
    seed: int                 # the seed it was made from (0 for hand-built scenes)
    prompt: str               # resolved scene words, e.g. "desert dusk pillars boxes busy"
    statics: Tensor           # (Ns, PRIM_COLS) float32 rows [kind, cx, cy, cz, sx, sy, sz, mat]
    movers: Tensor            # (Nm, MOVER_COLS) float32 motion rows, see `dynamic_positions`
    materials: Tensor         # (M, MAT_COLS) float32 [pattern, scale, rgb0, rgb1]
    sky: Sky                  # sky colours, sun direction and light
    ground_mat: int = 0       # material row of the ground plane
    wall_mat: int = 1         # material row of the bounding walls
    half_size: float = HALF_SIZE
    wall_height: float = 4.0
    center: tuple[float, float, float] = (0.0, EYE_HEIGHT, 0.0)
    radius: float = RADIUS
    layout_notes: dict = field(default_factory=dict)   # counts per feature, for `world show`

    def __post_init__(self):
        n = self.statics.shape[0] + self.movers.shape[0]
        if n > MAX_PRIMS:
            raise WorldplayError(f"scene has {n} primitives; the renderer takes at most "
                                 f"{MAX_PRIMS}, so drop some objects")

    @property
    def n_dynamic(self) -> int:
        return int(self.movers.shape[0])

    def dynamic_positions(self, t: float) -> Tensor:
        """Centres (Nm, 3) of the moving objects at time t seconds; analytic in t."""
        m = self.movers
        phase = m[:, 10] * float(t) + m[:, 11]                              # (Nm,)
        amp, bob, motion = m[:, 9], m[:, 12], m[:, 5]
        zero = torch.zeros_like(phase)
        offsets = {
            ORBIT: torch.stack([amp * phase.cos(), bob * (2 * phase).sin(), amp * phase.sin()], 1),
            BOUNCE: torch.stack([zero, amp * phase.sin().abs(), zero], 1),
            PATROL_X: torch.stack([amp * phase.sin(), zero, zero], 1),
            PATROL_Z: torch.stack([zero, zero, amp * phase.sin()], 1),
        }
        off = torch.zeros_like(m[:, 6:9])
        for kind, o in offsets.items():
            off = off + (motion == kind).to(off.dtype)[:, None] * o
        return m[:, 6:9] + off

    def primitives(self, t: float) -> Tensor:
        """All solids at time t as one table (Ns + Nm, PRIM_COLS): statics first, then movers."""
        m = self.movers
        moving = torch.cat([m[:, :1], self.dynamic_positions(t), m[:, 1:5]], dim=1)
        return torch.cat([self.statics, moving], dim=0)

    def spawn_pose(self) -> Tensor:
        """c2w (4, 4): inside the free annulus, at eye height, facing the centre."""
        cx, cy, cz = self.center
        return yaw_pitch_pose((cx, cy, cz + 0.6 * self.radius), 0.0, 0.0)

    @classmethod
    def from_primitives(cls, spheres=(), boxes=(), cylinders=(), movers=(),
                        materials: list[Material] | None = None, time: str = "noon",
                        seed: int = 0, prompt: str = "custom", **kw) -> "Scene":
        """Hand-built scene (tests, demos). Rows may end in a material index (default 2):
        spheres (cx, cy, cz, r), boxes (cx, cy, cz, hx, hy, hz), cylinders (cx, cy, cz, r, hh)
        with (cx, cy, cz) the centre; movers are full MOVER_COLS rows."""
        default_mat = 2
        rows = []
        for kind, items, n in ((SPHERE, spheres, 4), (BOX, boxes, 6), (CYLINDER, cylinders, 5)):
            for it in items:
                it = [float(v) for v in it]
                mat = it[n] if len(it) > n else default_mat
                c = it[:3]
                if kind == SPHERE:
                    size = [it[3]] * 3
                elif kind == BOX:
                    size = it[3:6]
                else:
                    size = [it[3], it[4], it[3]]
                rows.append([kind, *c, *size, mat])
        if materials is None:
            th = THEMES["ruins"]
            materials = [th.ground, th.wall, th.boxes[0]]
        statics = torch.tensor(rows, dtype=torch.float32).reshape(-1, PRIM_COLS)   # (Ns, 8)
        mov = torch.tensor([list(map(float, m)) for m in movers],
                           dtype=torch.float32).reshape(-1, MOVER_COLS)  # (Nm, 13)
        return cls(seed=seed, prompt=prompt, statics=statics, movers=mov,
                   materials=material_table(materials).reshape(-1, MAT_COLS),  # (M, 8)
                   sky=SKIES[time], **kw)


def make_scene(seed: int, prompt: str | None = None) -> Scene:
    """Deterministic scene from (seed, prompt). Unknown words raise WorldplayError."""
    words = resolve_words(seed, prompt)
    theme = THEMES[words.theme]
    lay = build_layout(seed, words, theme, HALF_SIZE, RADIUS)
    return Scene(seed=int(seed), prompt=words.text, statics=lay.statics, movers=lay.movers,
                 materials=material_table(lay.materials), sky=SKIES[words.time],
                 ground_mat=0, wall_mat=1, half_size=HALF_SIZE, wall_height=theme.wall_height,
                 center=(0.0, EYE_HEIGHT, 0.0), radius=RADIUS, layout_notes=lay.notes)

