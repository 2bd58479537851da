"""The paper's "explicit memory" baseline as a FrameSource: reproject what was seen, nothing more.

For the first `context_frames` frames after a reset it observes ground truth (renders the scene
like the world source) and keeps each frame's colour, depth, pose and moving-object mask as a
coloured point cloud. Every later frame is made purely from that memory: the few stored views
that together cover the new view best are forward-splatted into it with a z-buffer (a point
takes its nearest pixel; points the move spreads apart also cover the 2x2 pixels around them,
so surfaces seen nearer or more head-on stay closed), remaining cracks are filled from the
nearest-depth neighbour, and what was never seen stays black.

This is what a pure 3D-reprojection memory gives: revisits are sharp where geometry was seen,
new regions are empty, and moving objects freeze where they were observed (its Dynamic score
falls below ground truth's). The eval protocol sets `context_frames` to the first revisit frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from worldplay.camera import intrinsics, invert_se3, pixel_grid, project, unproject
from worldplay.config import ImageConfig
from worldplay.frame import SKY_DEPTH, Frame
from worldplay.sources.protocol import check_chunk
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene

NEAR = 0.05            # metres: points closer than this to the camera are behind the lens
FOOTPRINT = ((0, 0), (1, 0), (0, 1), (1, 1))   # pixel offsets each splatted point covers
COVER_STRIDE = 8       # px between the sparse points that rank stored views (1/64 of them: cheap)
MIN_GAIN = 0.01        # a view adding under 1% of the frame is not worth splatting
ZOOM_SPLAT = 1.05      # px between neighbouring points above which single-pixel splats leave cracks
SECONDARY_PENALTY = 0.02  # depth key factor for the 3 non-nearest footprint pixels (2% behind)
TIE_BREAK = 0.5        # cells: pose distance only decides between views of equal coverage
STICKY_SLACK = 0.03    # keep the previous views unless a new pick covers 3% more of the frame


@dataclass(frozen=True)
class ExplicitConfig:
    context_frames: int = 16      # GT frames observed after a reset (1 s at 16 FPS) before memory only
    views_per_frame: int = 4      # at most this many stored views splatted per frame (greedy coverage)
    max_views: int = 256          # memory cap; oldest views go first (bounds RAM on long sessions)
    fill_passes: int = 2          # nearest-depth 3x3 fills: closes 1-2 px cracks the splat leaves
    image: ImageConfig = field(default_factory=ImageConfig)  # output size (the product's 640x360)


@dataclass
class _View:
    depth: Tensor     # (HW,) z-depth; lifted to points only when the view is splatted (4x less RAM)
    rgb: Tensor       # (HW, 3) uint8
    dyn: Tensor       # (HW,) bool
    c2w: Tensor       # (4, 4)
    vid: int          # running number: identifies the view after older ones are evicted


class ExplicitSource:
    """FrameSource "explicit": GT context, then forward-splatted reprojection of the stored GT
    views. Capabilities: HasScene, ObservesContext."""

    chunk = 1

    def __init__(self, seed: int = 0, prompt: str | None = None, device: str = "cpu",
                 cfg: ExplicitConfig = ExplicitConfig()):
        self.name = "explicit"
        self.cfg = cfg
        self.device = device
        self.context_frames = cfg.context_frames
        img = cfg.image
        self.K = intrinsics(img.width, img.height, img.fov_x_deg)
        self._uv = pixel_grid(img.height, img.width).reshape(-1, 2)              # (HW, 2)
        self.seed, self.prompt, self.scene = int(seed), prompt, None
        self.reset()

    def reset(self, seed: int | None = None, prompt: str | None = None) -> None:
        changed = self.scene is None or (seed is not None and int(seed) != self.seed) or \
            (prompt is not None and prompt != self.prompt)
        self.seed = self.seed if seed is None else int(seed)
        self.prompt = self.prompt if prompt is None else prompt
        if changed:
            self.scene = make_scene(self.seed, self.prompt)
            self.renderer = Renderer(self.scene, image=self.cfg.image, device=self.device)
        self.views: list[_View] = []
        self._last_pick: list[int] = []
        self.count = 0
        self.last_coverage = 1.0

    def hud(self) -> dict[str, str]:
        mode = "observe (GT)" if self.count < self.context_frames else "reproject"
        return {"source": self.name, "scene": str(self.seed), "mode": mode,
                "memory": f"{len(self.views)} views", "coverage": f"{100 * self.last_coverage:.0f}%"}

    def frames(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        check_chunk("ExplicitSource", c2w, times)
        out = []
        for pose, t in zip(c2w, times):
            if self.count < self.context_frames:
                f = self.renderer.render(pose, float(t))
                self._store(f)
                self.last_coverage = 1.0
            else:
                f = self._reproject(pose.float().cpu(), float(t))
            self.count += 1
            out.append(f)
        return out

    def _store(self, f: Frame) -> None:
        self.views.append(_View(f.depth.float().cpu().reshape(-1), f.rgb.cpu().reshape(-1, 3),
                                f.dynamic.cpu().reshape(-1),
                                f.c2w.float().cpu(), self.count))
        if len(self.views) > self.cfg.max_views:
            self.views.pop(0)

    def _pick_views(self, c2w: Tensor) -> list[_View]:
        """Greedy cover: project a sparse grid of every stored view's points into the new view
        and take, up to `views_per_frame`, the view that fills the most still-empty cells.
        Using the stored depth (not just frusta) picks views that see behind occluders."""
        img, s = self.cfg.image, COVER_STRIDE
        gh, gw = math.ceil(img.height / s), math.ceil(img.width / s)
        uv = self._uv.view(img.height, img.width, 2)[::s, ::s].reshape(-1, 2)      # (M, 2)
        depth = torch.stack([v.depth.view(img.height, img.width)[::s, ::s].reshape(-1) for v in self.views])
        c2ws = torch.stack([v.c2w for v in self.views])                           # (S, 4, 4)
        pts = unproject(uv.expand(len(self.views), -1, -1), depth, c2ws, self.K)  # (S, M, 3)
        puv, z = project(pts, invert_se3(c2w), self.K)                           # (S, M, 2), (S, M)
        cx, cy = (puv[..., 0] / s).floor().long(), (puv[..., 1] / s).floor().long()
        ok = (z > NEAR) & (cx >= 0) & (cx < gw) & (cy >= 0) & (cy < gh)
        cover = torch.zeros(len(self.views), gh * gw, dtype=torch.bool)          # (S, cells)
        rows = torch.arange(len(self.views))[:, None].expand_as(cx)
        cover[rows[ok], (cy * gw + cx)[ok]] = True
        have = torch.zeros(gh * gw, dtype=torch.bool)
        picked: list[int] = []
        # ties (several views cover everything) go to the view nearest in pose: least resampling
        near = (c2ws[:, :3, 3] - c2w[:3, 3]).norm(dim=-1) + (c2ws[:, :3, 2] - c2w[:3, 2]).norm(dim=-1)
        tie = TIE_BREAK * near / (1.0 + near)                                    # < TIE_BREAK cells
        for _ in range(min(self.cfg.views_per_frame, len(self.views))):
            gain = (cover & ~have).sum(1) - tie
            gain[picked] = -1
            best = int(gain.argmax())
            if picked and gain[best] < MIN_GAIN * gh * gw:
                break
            picked.append(best)
            have |= cover[best]
        # Keep last frame's views while they cover nearly as much: switching views makes
        # ghosts of moving objects jump, flicker a memory of a frozen past should not have.
        slot = {v.vid: i for i, v in enumerate(self.views)}
        prev = [slot[v] for v in self._last_pick if v in slot]
        if prev and float(cover[prev].any(0).float().mean()) >= float(have.float().mean()) - STICKY_SLACK:
            picked = prev
        self._last_pick = [self.views[i].vid for i in picked]
        return [self.views[i] for i in picked]

    def _reproject(self, c2w: Tensor, t: float) -> Frame:
        H, W = self.cfg.image.height, self.cfg.image.width
        if not self.views:
            return Frame(torch.zeros(H, W, 3, dtype=torch.uint8), torch.full((H, W), SKY_DEPTH),
                         torch.zeros(H, W, dtype=torch.bool), c2w, t)
        views = self._pick_views(c2w)
        pts = torch.cat([unproject(self._uv, v.depth, v.c2w, self.K) for v in views])  # (P, 3) world
        rgb = torch.cat([v.rgb for v in views])
        dyn = torch.cat([v.dyn for v in views])
        uv, z = project(pts, invert_se3(c2w), self.K)                             # (P, 2), (P,)
        base = torch.floor(uv - 0.5).long()                                       # pixel left/above the point
        near = ((uv - 0.5) - base >= 0.5).long()                                  # which of the 2x2 is nearest
        zoom = self._spread(uv, len(views)) > ZOOM_SPLAT                          # (P,) would leave cracks
        pix_all, key_all, src_all = [], [], []
        for dx, dy in FOOTPRINT:
            px, py = base[:, 0] + dx, base[:, 1] + dy
            ok = (z > NEAR) & (px >= 0) & (px < W) & (py >= 0) & (py < H)
            idx = ok.nonzero().squeeze(1)
            # The nearest pixel takes a point at its own depth. Only points the move spreads
            # apart (seen nearer or more head-on than stored) also cover the other three, as a
            # slightly deeper key: that closes cracks without fattening every silhouette.
            primary = (near[idx, 0] == dx) & (near[idx, 1] == dy)
            idx, primary = idx[primary | zoom[idx]], primary[primary | zoom[idx]]
            px, py = px[idx], py[idx]
            key = z[idx] * torch.where(primary, 1.0, 1.0 + SECONDARY_PENALTY)
            pix_all.append(py * W + px)
            key_all.append(key)
            src_all.append(idx)
        pix, key, src = torch.cat(pix_all), torch.cat(key_all), torch.cat(src_all)
        zbuf = torch.full((H * W,), float("inf")).scatter_reduce_(0, pix, key, reduce="amin")
        win = key <= zbuf[pix]                                                    # front-most point per pixel
        out_rgb = torch.zeros(H * W, 3, dtype=torch.uint8)
        out_dyn = torch.zeros(H * W, dtype=torch.bool)
        out_rgb[pix[win]] = rgb[src[win]]
        out_dyn[pix[win]] = dyn[src[win]]
        zbuf[pix[win]] = z[src[win]]                                              # true depth, not the key
        hit = torch.isfinite(zbuf)
        rgb_img, depth_img, dyn_img, hit_img = self._fill(out_rgb.view(H, W, 3), zbuf.view(H, W),
                                                          out_dyn.view(H, W), hit.view(H, W))
        self.last_coverage = float(hit_img.float().mean())
        depth_img = torch.where(hit_img, depth_img, torch.full_like(depth_img, SKY_DEPTH))
        return Frame(rgb_img, depth_img.float(), dyn_img, c2w, t)

    def _spread(self, uv: Tensor, n_views: int) -> Tensor:
        """Pixel spacing (P,) between each splatted point and its stored-image neighbours in the
        new view: the smaller of the two sides per axis, so depth edges do not count."""
        H, W = self.cfg.image.height, self.cfg.image.width
        g = uv.view(n_views, H, W, 2)
        inf = torch.full_like(g[:, :, :1, 0], float("inf"))
        dx = (g[:, :, 1:] - g[:, :, :-1]).norm(dim=-1)                             # (V, H, W-1)
        sx = torch.minimum(torch.cat([dx, inf], 2), torch.cat([inf, dx], 2))       # (V, H, W)
        inf = torch.full_like(g[:, :1, :, 0], float("inf"))
        dy = (g[:, 1:] - g[:, :-1]).norm(dim=-1)                                   # (V, H-1, W)
        sy = torch.minimum(torch.cat([dy, inf], 1), torch.cat([inf, dy], 1))
        return torch.maximum(sx, sy).reshape(-1)

    def _fill(self, rgb: Tensor, depth: Tensor, dyn: Tensor, hit: Tensor):
        """Fill holes from the nearest-depth 3x3 neighbour, `fill_passes` times (naive inpainting)."""
        H, W = depth.shape
        for _ in range(self.cfg.fill_passes):
            if bool(hit.all()):
                break
            d = torch.where(hit, depth, torch.full_like(depth, float("inf")))
            cols = F.unfold(d[None, None], 3, padding=1)[0]                        # (9, HW)
            best = cols.argmin(0)                                                  # (HW,)
            dmin = cols.gather(0, best[None])[0]
            # neighbour offset -> source pixel index
            dy, dx = best // 3 - 1, best % 3 - 1
            yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
            src = ((yy.reshape(-1) + dy).clamp(0, H - 1) * W + (xx.reshape(-1) + dx).clamp(0, W - 1))
            fill = (~hit.reshape(-1)) & torch.isfinite(dmin)
            rgb = rgb.reshape(-1, 3).clone()
            dyn = dyn.reshape(-1).clone()
            depth = depth.reshape(-1).clone()
            rgb[fill] = rgb[src[fill]]
            dyn[fill] = dyn[src[fill]]
            depth[fill] = dmin[fill]
            hit = (hit.reshape(-1) | fill).view(H, W)
            rgb, dyn, depth = rgb.view(H, W, 3), dyn.view(H, W), depth.view(H, W)
        return rgb, depth, dyn, hit
