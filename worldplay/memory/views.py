"""Pixel keyframes of the mosaic memory: what the Warped Latent canvas is reprojected from.

The patch entries (store.py) place and retrieve memory at token size, which is what Warped RoPE
needs. The canvas needs more: a latent cell covers 16x16 pixels, and resampling latents between
views blurs and shifts content by a fraction of a cell, which caps a revisit near 20-25 dB even
when memory has every pixel of it. So the memory also keeps keyframes: a frame's colour and depth
at full resolution, stored when the camera has moved or turned enough since every kept keyframe.
A target view is made by forward-splatting the few keyframes that cover it best (z-buffered,
cracks closed from the nearest neighbour), and the streamer VAE-encodes that image: the canvas is
then a latent of a sharp picture, as the VAE would encode the place itself.

Moving objects are not stored when a frame says where they are (observed ground truth): memory
would freeze them where they were.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from worldplay.camera import invert_se3, pixel_grid, project, unproject
from worldplay.errors import WorldplayError
from worldplay.memory.edit import Region

KEY_DEPTH_STEP = 1e-3    # metres per z-buffer depth level (the key packs depth above the source)
KEY_SRC_BITS = 22        # source pixels per splat (4 keyframes of 640x360 < 2^22)
COVER_STRIDE = 8         # px between the sparse points that rank keyframes for a view (cheap)
FIELDS = ("rgb", "depth", "c2w", "K", "times")   # the saved state, in this order
NEAR = 0.05              # metres: points nearer the camera than this are behind the lens
TURN_METRES = 2.0        # candidate ranking: metres a full 1 - cos(angle) of turning counts as
                         # (a 30 deg turn weighs like 0.27 m of walking)
ZOOM_SPLAT = 1.05        # px between neighbouring points above which one-pixel splats leave cracks
SECONDARY_PENALTY = 0.02 # depth key factor of a magnified point's 3 other pixels (2 % behind)


class ViewStore:
    """Keyframes (colour, depth, pose, time); `add` keeps a frame only when it is new enough."""

    def __init__(self, width: int, height: int, capacity: int, min_move: float, min_turn_deg: float,
                 views_per_frame: int, candidates: int, fill_passes: int, device: torch.device):
        self.W, self.H, self.capacity = width, height, capacity
        self.min_move, self.min_cos = min_move, math.cos(math.radians(min_turn_deg))
        self.views_per_frame, self.candidates, self.fill_passes = views_per_frame, candidates, fill_passes
        self.device = device
        if views_per_frame * width * height >= 2 ** KEY_SRC_BITS:
            raise WorldplayError(f"keyframes: {views_per_frame} views of {width}x{height} exceed the z-buffer "
                                 f"key's {KEY_SRC_BITS} source bits; splat fewer views per frame")
        self._uv = pixel_grid(height, width, device=device).reshape(-1, 2)            # (HW, 2)
        self.clear()

    def clear(self) -> None:
        # Full-resolution frames are kept one tensor each: adding or evicting one then moves no
        # other (a stacked buffer would be copied whole, 184 MB at capacity, on every keyframe).
        self.rgb: list[Tensor] = []                                                  # V x (H, W, 3) uint8
        self.depth: list[Tensor] = []                                                # V x (H, W) float16, inf: not kept
        dev = self.device
        self.coarse = torch.zeros(0, *self._coarse_hw, device=dev)                   # (V, gh, gw) depth for `pick`
        self.c2w = torch.zeros(0, 4, 4, device=dev)                                  # (V, 4, 4)
        self.K = torch.zeros(0, 3, 3, device=dev)                                    # (V, 3, 3)
        self.times = torch.zeros(0, dtype=torch.float64, device=dev)                 # (V,)

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    def nbytes(self) -> int:
        small = (self.coarse, self.c2w, self.K, self.times)
        return sum(t.numel() * t.element_size() for t in (*self.rgb, *self.depth, *small))

    @property
    def _coarse_hw(self) -> tuple[int, int]:
        return math.ceil(self.H / COVER_STRIDE), math.ceil(self.W / COVER_STRIDE)

    # -- writing -------------------------------------------------------------------------------

    def is_new(self, c2w: Tensor) -> bool:
        """True when no keyframe is within `min_move` metres and `min_turn_deg` of this pose."""
        if not len(self):
            return True
        c2w = c2w.to(self.c2w)
        near = (self.c2w[:, :3, 3] - c2w[:3, 3]).norm(dim=-1) < self.min_move
        aligned = (self.c2w[:, :3, 2] * c2w[:3, 2]).sum(-1) > self.min_cos
        return not bool((near & aligned).any())

    def add(self, rgb: Tensor, depth: Tensor, c2w: Tensor, K: Tensor, t: float,
            dynamic: Tensor | None = None) -> bool:
        """Keep frame rgb (H, W, 3) uint8 with z-depth (H, W), seen by camera K at c2w, when it is
        new; the oldest keyframe goes when full. Returns whether it was kept."""
        if self.capacity < 1 or not self.is_new(c2w):
            return False
        d = depth.to(self.device, torch.float32).clone()
        if dynamic is not None:
            d[dynamic.to(self.device)] = float("inf")
        self._append(rgb.to(self.device), d.half(), c2w.to(self.device, torch.float32),
                     K.to(self.device, torch.float32), float(t))
        return True

    def _append(self, rgb: Tensor, depth: Tensor, c2w: Tensor, K: Tensor, t: float) -> None:
        keep = slice(1, None) if len(self) >= self.capacity else slice(None)
        self.rgb, self.depth = self.rgb[keep] + [rgb], self.depth[keep] + [depth]
        s = COVER_STRIDE
        self.coarse = torch.cat([self.coarse[keep], depth[::s, ::s].float()[None]])
        self.c2w = torch.cat([self.c2w[keep], c2w[None]])
        self.K = torch.cat([self.K[keep], K[None]])
        self.times = torch.cat([self.times[keep], torch.tensor([t], dtype=torch.float64, device=self.device)])

    def erase(self, region: Region) -> int:
        """Forget keyframe pixels whose 3D point lies in `region`. Returns how many. Only
        keyframes whose view frustum meets the region's bounding sphere are tested."""
        centre, radius = region.bounding_sphere()
        n = 0
        for v in range(len(self)):
            if not self._may_see(v, centre, radius):
                continue
            d = self.depth[v].reshape(-1).float()
            pts = unproject(self._uv, d.clamp(max=1e4), self.c2w[v], self.K[v])
            hit = region.contains(pts) & (d < math.inf)
            self.depth[v].view(-1)[hit] = math.inf
            self.coarse[v] = self.depth[v][::COVER_STRIDE, ::COVER_STRIDE].float()
            n += int(hit.sum())
        return n

    def _may_see(self, v: int, centre: Tensor, radius: float) -> bool:
        """Whether keyframe v's view frustum meets the sphere (centre (3,), radius)."""
        w2c = invert_se3(self.c2w[v])
        c = w2c[:3, :3] @ centre.to(w2c) + w2c[:3, 3]                                # camera frame
        fx, fy, cx, cy = (float(x) for x in (self.K[v, 0, 0], self.K[v, 1, 1], self.K[v, 0, 2], self.K[v, 1, 2]))
        sides = torch.tensor([[fx, 0.0, -(self.W - cx)], [-fx, 0.0, -cx], [0.0, fy, -(self.H - cy)], [0.0, -fy, -cy]])
        sides = sides / sides.norm(dim=1, keepdim=True)                                 # outward normals
        return float(c[2]) > -radius and bool(((sides.to(c) @ c) <= radius).all())

    # -- reading -------------------------------------------------------------------------------

    def pick(self, c2w: Tensor, K: Tensor, max_time: float) -> list[int]:
        """Keyframes (up to views_per_frame) that together cover view c2w best, taken greedily
        from the `candidates` nearest in pose, among those kept at or before `max_time`."""
        ok = (self.times <= max_time).nonzero()[:, 0]
        if not ok.numel():
            return []
        c2w = c2w.to(self.c2w)
        turn = 1 - (self.c2w[ok, :3, 2] * c2w[:3, 2]).sum(-1)                        # 1 - cos(angle)
        dist = (self.c2w[ok, :3, 3] - c2w[:3, 3]).norm(dim=-1) + TURN_METRES * turn
        cand = ok[dist.argsort()[:self.candidates]]
        s, H, W = COVER_STRIDE, self.H, self.W
        gh, gw = self._coarse_hw
        uv = self._uv.view(H, W, 2)[::s, ::s].reshape(-1, 2)                          # (M, 2)
        depth = self.coarse[cand].reshape(len(cand), -1)                               # (S, M)
        pts = unproject(uv.expand(len(cand), -1, -1), depth.clamp(max=1e4), self.c2w[cand], self.K[cand])   # (S, M, 3)
        puv, z = project(pts, invert_se3(c2w), K)
        cx, cy = (puv[..., 0] / s).floor().long(), (puv[..., 1] / s).floor().long()
        good = (z > NEAR) & torch.isfinite(depth) & (cx >= 0) & (cx < gw) & (cy >= 0) & (cy < gh)
        cover = torch.zeros(len(cand), gh * gw, dtype=torch.bool, device=self.device)
        rows = torch.arange(len(cand), device=self.device)[:, None].expand_as(cx)
        cover[rows[good], (cy * gw + cx)[good]] = True
        have = torch.zeros(gh * gw, dtype=torch.bool, device=self.device)
        picked: list[int] = []
        for _ in range(min(self.views_per_frame, len(cand))):
            gain = (cover & ~have).sum(1)
            gain[picked] = -1
            best = int(gain.argmax())
            if gain[best] <= 0:
                break
            picked.append(best)
            have |= cover[best]
        return [int(cand[i]) for i in picked]

    def reproject(self, c2w: Tensor, K: Tensor, max_time: float = math.inf) -> tuple[Tensor, Tensor, Tensor]:
        """Keyframes splatted into view c2w: rgb (H, W, 3) uint8, z-depth (H, W) (inf where
        nothing) and hit mask (H, W) bool."""
        H, W = self.H, self.W
        rgb = torch.zeros(H * W, 3, dtype=torch.uint8, device=self.device)
        views = self.pick(c2w, K, max_time)
        if not views:
            return rgb.view(H, W, 3), torch.full((H, W), math.inf, device=self.device), \
                torch.zeros(H, W, dtype=torch.bool, device=self.device)
        u, v, z, ok = self._to_view(views, c2w, K)                                    # (P,) each
        # A point lands in the pixel that holds it; a point the view magnifies (seen nearer or
        # more head-on than stored, neighbours > ZOOM_SPLAT px apart) also covers the other three
        # pixels of the 2x2 around it, slightly deeper, so the surface stays closed instead of
        # letting what is behind it show through the cracks.
        zoom = (ok & (_spread(u, v, len(views), H, W) > ZOOM_SPLAT)).nonzero()[:, 0]
        src = torch.arange(z.numel(), dtype=torch.float64, device=self.device)
        # One key orders by depth and names the source point: one scatter_reduce is the z-buffer,
        # and a min over the 3x3 neighbours' keys fills a crack from the nearest surface.
        px, py = u.floor(), v.floor()
        use = ok & (px >= 0) & (px < W) & (py >= 0) & (py < H)
        level = (z / KEY_DEPTH_STEP).round().clamp(0, 2 ** 29).double()
        key_all = [torch.where(use, level * 2 ** KEY_SRC_BITS + src, math.inf)]
        pix_all = [torch.where(use, py * W + px, 0).long()]
        uz, vz, sz = u[zoom], v[zoom], src[zoom]
        bx, by = (uz - 0.5).floor(), (vz - 0.5).floor()                               # 2x2 block's top-left
        nx, ny = (uz - 0.5 - bx >= 0.5).float(), (vz - 0.5 - by >= 0.5).float()      # the point's own pixel
        level = (z[zoom] * (1 + SECONDARY_PENALTY) / KEY_DEPTH_STEP).round().clamp(0, 2 ** 29).double()
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            px, py = bx + dx, by + dy
            use = ((nx != dx) | (ny != dy)) & (px >= 0) & (px < W) & (py >= 0) & (py < H)
            key_all.append(torch.where(use, level * 2 ** KEY_SRC_BITS + sz, math.inf))
            pix_all.append(torch.where(use, py * W + px, 0).long())
        zbuf = torch.full((H * W,), math.inf, dtype=torch.float64, device=self.device)
        zbuf = zbuf.scatter_reduce_(0, torch.cat(pix_all), torch.cat(key_all), reduce="amin").view(H, W)
        for _ in range(self.fill_passes):
            zbuf = torch.where(zbuf < math.inf, zbuf, _min3x3(zbuf))
        zbuf = zbuf.view(-1)
        hit = zbuf < math.inf
        who = torch.remainder(zbuf[hit], 2 ** KEY_SRC_BITS).long()                     # source point index
        slot = who // (H * W)
        hit_rgb = torch.empty(who.numel(), 3, dtype=torch.uint8, device=self.device)
        for j, i in enumerate(views):
            mine = slot == j
            hit_rgb[mine] = self.rgb[i].view(-1, 3)[who[mine] - j * H * W]
        rgb[hit] = hit_rgb
        out_z = torch.full((H * W,), math.inf, device=self.device)
        out_z[hit] = z[who]
        return rgb.view(H, W, 3), out_z.view(H, W), hit.view(H, W)

    def _to_view(self, views: list[int], c2w: Tensor, K: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Every pixel of keyframes `views` in view (c2w, K): u, v, z-depth and in-front (P,),
        P = len(views) * H * W. Elementwise with scalar coefficients: (N, 3) @ (3, 3) matmuls
        run ~10x slower than this on a CPU."""
        w2c = invert_se3(c2w.to(self.c2w))
        fx, fy, cx, cy = (float(x) for x in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
        us, vs, zs, oks = [], [], [], []
        for i in views:
            T = (w2c @ self.c2w[i]).tolist()                                          # source camera -> target camera
            k = self.K[i]
            d = self.depth[i].reshape(-1).float()                                     # (HW,)
            X = (self._uv[:, 0] - float(k[0, 2])) * (d / float(k[0, 0]))
            Y = (self._uv[:, 1] - float(k[1, 2])) * (d / float(k[1, 1]))
            xc, yc, zc = (X * T[r][0] + Y * T[r][1] + d * T[r][2] + T[r][3] for r in range(3))
            ok = (zc > NEAR) & (d < math.inf)
            inv = 1.0 / zc.clamp_min(NEAR)
            us.append(xc * inv * fx + cx)
            vs.append(yc * inv * fy + cy)
            zs.append(zc)
            oks.append(ok)
        return torch.cat(us), torch.cat(vs), torch.cat(zs), torch.cat(oks)

    # -- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Tensor]:
        H, W = self.H, self.W
        frames = {"rgb": torch.stack(self.rgb) if self.rgb else torch.zeros(0, H, W, 3, dtype=torch.uint8),
                  "depth": torch.stack(self.depth) if self.depth else torch.zeros(0, H, W, dtype=torch.float16)}
        return {k: (frames[k] if k in frames else getattr(self, k)).to("cpu", copy=True) for k in FIELDS}

    def load_state_dict(self, sd: dict[str, Tensor], source: str) -> None:
        n = sd["c2w"].shape[0] if "c2w" in sd else -1
        want = {"rgb": ((n, self.H, self.W, 3), torch.uint8), "depth": ((n, self.H, self.W), torch.float16),
                "c2w": ((n, 4, 4), torch.float32), "K": ((n, 3, 3), torch.float32), "times": ((n,), torch.float64)}
        for k, (shape, dtype) in want.items():
            got = sd.get(k)
            if n < 0 or got is None or tuple(got.shape) != shape or got.dtype != dtype:
                raise WorldplayError(f"{source}: memory keyframes {k!r} are damaged or from another version "
                                     f"- start a new session")
        self.clear()
        for i in range(n):
            self._append(*(sd[k][i].to(self.device) for k in ("rgb", "depth", "c2w", "K")), float(sd["times"][i]))


def _spread(u: Tensor, v: Tensor, n_views: int, H: int, W: int) -> Tensor:
    """Pixel spacing (P,) between each splatted point and its keyframe neighbours in the new
    view: the smaller of the two sides per axis (so a depth edge does not count), the larger axis."""
    g = torch.stack([u, v], -1).view(n_views, H, W, 2)
    inf = torch.full_like(g[:, :, :1, 0], math.inf)
    dx = (g[:, :, 1:] - g[:, :, :-1]).norm(dim=-1)                                     # (V, H, W-1)
    sx = torch.minimum(torch.cat([dx, inf], 2), torch.cat([inf, dx], 2))               # (V, H, W)
    inf = torch.full_like(g[:, :1, :, 0], math.inf)
    dy = (g[:, 1:] - g[:, :-1]).norm(dim=-1)                                           # (V, H-1, W)
    sy = torch.minimum(torch.cat([dy, inf], 1), torch.cat([inf, dy], 1))
    return torch.maximum(sx, sy).reshape(-1).nan_to_num(math.inf)


def _min3x3(x: Tensor) -> Tensor:
    """Minimum over each pixel's 3x3 neighbourhood of x (H, W), inf outside the image (eight
    shifted minima: float64 max-pooling runs ~3x slower on a CPU)."""
    H, W = x.shape
    p = F.pad(x[None], (1, 1, 1, 1), value=math.inf)[0]                               # (H + 2, W + 2)
    out = x
    for dy in range(3):
        for dx in range(3):
            if dy != 1 or dx != 1:
                out = torch.minimum(out, p[dy:dy + H, dx:dx + W])
    return out

