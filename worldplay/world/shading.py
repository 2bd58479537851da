"""Deferred shading once visibility is settled: per-surface albedo and normals, then light.

Each visible surface (ground, room walls, one primitive) is shaded inside its screen rectangle
with its own scalar parameters, so only its one normal formula and one texture pattern run,
on its pixels' rectangle instead of the whole image. A surface's pixels are those whose id
won the z-test; its results are added into zero-initialised buffers through a 0/1 mask
(each pixel has exactly one owner, so sums are exact). Lighting, fog and sky then run once
per pixel over the whole image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from worldplay.world.palettes import Sky
from worldplay.world.primitives import BOX, CYLINDER, GROUND, ROOM, SPHERE, Rays
from worldplay.world.textures import pattern

CAP_EPS = 1e-3          # |y| within this fraction of the half height means a cylinder's cap
HEMI_BASE, HEMI_GAIN = 0.75, 0.25   # sky light: full from above, half from below
SUN_GLOW = 0.6          # strength of the halo around the sun
SUN_GLOW_SQUARINGS = 5  # halo falls off as cos^(2^5)
SUN_DISK_COS = 0.9995   # angular radius of the sun disk, ~1.8 degrees

Rect = tuple[int, int, int, int]   # r0, r1, c0, c1


def _ge(a: Tensor, b: Tensor | float) -> Tensor:
    """(a >= b) as 0/1 float32; writing into a float `out` skips the slow bool round trip."""
    return torch.ge(a, b, out=torch.empty_like(a))


def _eq(a: Tensor, b: float) -> Tensor:
    return torch.eq(a, b, out=torch.empty_like(a))


def owner_rect(ids: Tensor, sid: int) -> Rect:
    """Bounding rectangle of the pixels whose winning id is `sid` (ids: float32 (H, W))."""
    m = _eq(ids, float(sid))
    rows = torch.nonzero(m.amax(dim=1)).flatten().tolist()
    cols = torch.nonzero(m.amax(dim=0)).flatten().tolist()
    if not rows:
        return (0, 0, 0, 0)
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


class GBuffer:
    """Albedo, normal and emitted light planes (3, H, W), filled one surface at a time.

    Allocated once per renderer and cleared per frame (fresh multi-MB buffers every frame
    cost page faults on CPU)."""

    def __init__(self, height: int, width: int, device: torch.device):
        self.albedo = torch.zeros(3, height, width, device=device)
        self.normal = torch.zeros(3, height, width, device=device)
        self.emit = torch.zeros(3, height, width, device=device)
        self.out = torch.empty(3, height, width, device=device)

    def reset(self, r: Rays, depth: Tensor, ids: Tensor) -> None:
        """Start a frame: rays, z-depth (H, W) and winning ids as float32 (H, W)."""
        self.r, self.depth, self.ids = r, depth, ids
        for buf in (self.albedo, self.normal, self.emit):
            buf.zero_()
        self.norm = r.dd.sqrt()                                    # ray length per unit depth

    def surface(self, sid: int, rect: Rect, kind: int, c, s, mat: list[float]) -> None:
        """Shade the pixels owned by id `sid` inside `rect` (kind, centre c, half sizes s)."""
        sl = (slice(rect[0], rect[1]), slice(rect[2], rect[3]))
        m = _eq(self.ids[sl], float(sid))                          # (h, w) 0/1 owner mask
        d, r = self.depth[sl], self.r
        local = [dk[sl] * d + (r.o[k] - c[k]) for k, dk in enumerate((r.dx, r.dy, r.dz))]
        lx, ly, lz = local
        if kind == GROUND:
            n, u, v = (None, m, None), lx, lz
        elif kind == ROOM:                                         # inward faces of the walls
            on_x = _ge(lx.abs(), lz.abs())
            n = (lx.sign().mul_(on_x).neg_(), None, lz.sign().mul_(1.0 - on_x).neg_())
            u, v = torch.lerp(lx, lz, on_x), ly
        elif kind == BOX:
            q = [local[k] / s[k] for k in range(3)]
            a = [qk.abs() for qk in q]
            amax = torch.maximum(a[0], torch.maximum(a[1], a[2]))
            face = [_ge(ak, amax) for ak in a]                    # one-hot hit face axis
            n = tuple(q[k].sign().mul_(face[k]) for k in range(3))
            u, v = torch.lerp(lx, lz, face[0]), torch.lerp(ly, lz, face[1])
        elif kind == SPHERE:
            inv = 1.0 / s[0]
            n = (lx * inv, ly * inv, lz * inv)
            a = [nk.abs() for nk in n]
            on_x = _ge(a[0], torch.maximum(a[1], a[2]))
            on_y = _ge(a[1], a[2]).mul_(1.0 - on_x)
            u, v = torch.lerp(lx, lz, on_x), torch.lerp(ly, lz, on_y)
        elif kind == CYLINDER:
            cap = _ge(ly.abs(), s[1] * (1.0 - CAP_EPS))
            side = (1.0 - cap).mul_(1.0 / s[0])
            n = (lx * side, ly.sign().mul_(cap), lz * side)
            u, v = lx + lz * (1.0 - cap), torch.lerp(ly, lz, cap)
        else:
            raise ValueError(f"cannot shade surface kind {kind}")
        for k in range(3):
            if n[k] is not None:
                self.normal[k][sl].addcmul_(m, n[k])
        scale = mat[1]
        w, bright = pattern(int(mat[0]), u * scale, v * scale)
        mb = m if bright is None else m * bright
        for ch in range(3):
            c0, c1 = mat[2 + ch], mat[5 + ch]
            self.albedo[ch][sl].addcmul_(mb, w * (c1 - c0) + c0)

    def sky(self, sky: Sky, sid: int, rect: Rect) -> None:
        """Emitted sky colour (gradient plus sun) on the pixels owned by `sid`."""
        sl = (slice(rect[0], rect[1]), slice(rect[2], rect[3]))
        m = _eq(self.ids[sl], float(sid))
        r, norm = self.r, self.norm[sl]
        up = (r.dy[sl] / norm).clamp_(0.0, 1.0).sqrt_()
        L = sky.sun_dir
        cos_sun = (r.dx[sl] * L[0] + r.dy[sl] * L[1] + r.dz[sl] * L[2]) / norm
        glow = cos_sun.clamp(min=0.0)
        for _ in range(SUN_GLOW_SQUARINGS):
            glow = glow * glow
        sun = glow.mul_(SUN_GLOW).add_(_ge(cos_sun, SUN_DISK_COS))
        for ch in range(3):
            col = up * (sky.top[ch] - sky.horizon[ch]) + sky.horizon[ch]
            self.emit[ch][sl].addcmul_(m, col.add_(sun, alpha=sky.sun_color[ch]))

    def compose(self, sky: Sky, fog: tuple[float, float], sky_id: int) -> Tensor:
        """Lit, fogged colour (H, W, 3) uint8."""
        n, L = self.normal, sky.sun_dir
        ndl = (n[0] * L[0]).add_(n[1], alpha=L[1]).add_(n[2], alpha=L[2]).clamp_(min=0.0)
        hemi = n[1] * HEMI_GAIN + HEMI_BASE
        solid = torch.ne(self.ids, float(sky_id), out=torch.empty_like(self.depth))
        fog_w = (self.depth * self.norm).sub_(fog[0]).mul_(1.0 / (fog[1] - fog[0]))
        fog_w = fog_w.clamp_(0.0, 1.0).mul_(solid)
        keep = 1.0 - fog_w
        out = self.out                                             # (3, H, W)
        for ch in range(3):
            light = (hemi * sky.ambient[ch]).add_(ndl, alpha=sky.sun_color[ch])
            col = light.mul_(self.albedo[ch]).mul_(keep).add_(fog_w, alpha=sky.horizon[ch])
            torch.add(col, self.emit[ch], out=out[ch])
        rgb = out.mul_(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)
        return rgb.permute(1, 2, 0).contiguous()                  # (H, W, 3)
