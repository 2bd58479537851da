"""Ray-cast a Scene into a Frame: RGB, exact z-depth and the moving-object mask.

Per frame: rotate the cached camera-frame ray grid into the world, z-test the ground and the
room walls over the whole image, then each primitive only inside its projected screen
rectangle (off-screen ones are skipped); then shade each visible surface inside its rectangle
and light every pixel once (shading.py). On the 2-core dev box a 640x360 frame of a ~30
primitive scene takes ~10-30 ms of one core (`worldplay bench --source world`).
Frames are deterministic in (scene, pose, t, intrinsics) on a given device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from worldplay.camera import camera_rays, intrinsics
from worldplay.config import ImageConfig, WorldConfig
from worldplay.devices import resolve_device, torch_threads
from worldplay.errors import WorldplayError
from worldplay.frame import SKY_DEPTH, Frame
from worldplay.world.primitives import (FIRST_PRIM_ID, GROUND, GROUND_ID, ROOM, ROOM_ID, SKY_ID, Rays, ground_t,
                                        intersect, merge, pack_constant, room_t, screen_rects, unpack)
from worldplay.world.scene import Scene
from worldplay.world.shading import GBuffer, owner_rect

ORIGIN = (0.0, 0.0, 0.0)   # ground and room are shaded in world coordinates
DEFAULT_FOG = (WorldConfig.fog_start, WorldConfig.fog_end)
# Intra-op threads while rendering on CPU. One: the per-pixel ops are small (230k floats) so a
# second core buys little, and OpenMP's spin-waiting collapses when that core is busy (2-core
# box with other load: 150-470 ms/frame at 2 threads vs 20-40 ms at 1). None = leave as is.
RENDER_THREADS = 1


class Renderer:
    """Renders one Scene. `render(c2w, t)` -> Frame with CPU tensors.

    image: output size and FOV; device: where the ray casting runs ("cpu" or "cuda");
    fog: (start, end) metres of linear distance fog towards the horizon colour;
    threads: intra-op CPU threads while rendering (restored afterwards), see RENDER_THREADS.
    """

    def __init__(self, scene: Scene, image: ImageConfig = ImageConfig(),
                 device: str | torch.device = "cpu", fog: tuple[float, float] = DEFAULT_FOG,
                 threads: int | None = RENDER_THREADS):
        if not 0.0 <= fog[0] < fog[1]:
            raise WorldplayError(f"fog={fog}: need 0 <= start < end metres, e.g. (25, 70)")
        self.scene = scene
        self.image = image
        self.device = resolve_device(device)
        self.fog = (float(fog[0]), float(fog[1]))
        self.threads = threads if self.device.type == "cpu" else None
        self.K = intrinsics(image.width, image.height, image.fov_x_deg)
        self._grid_key: tuple | None = None
        self._mats = scene.materials.tolist()                        # rows, read per surface
        self._gbuf = GBuffer(image.height, image.width, self.device)

    # -- setup -------------------------------------------------------------------------------
    def _camera_grid(self, K: Tensor) -> tuple[Tensor, Tensor]:
        """Camera-frame ray slopes: x per column (1, W) and y per row (H, 1), cached per K."""
        key = tuple(K.flatten().tolist())
        if key != self._grid_key:
            H, W = self.image.height, self.image.width
            _, d = camera_rays(torch.eye(4), K.float(), H, W)           # (H, W, 3), z = 1
            self._xs = d[0, :, 0].to(self.device).view(1, W)            # (1, W)
            self._ys = d[:, 0, 1].to(self.device).view(H, 1)            # (H, 1)
            self._grid_key = key
        return self._xs, self._ys

    # -- rendering ---------------------------------------------------------------------------
    def rays(self, c2w: Tensor, K: Tensor | None = None) -> Rays:
        """World ray planes for pose c2w; the same rays as `camera.camera_rays`."""
        xs, ys = self._camera_grid(self.K if K is None else K)
        R = c2w[:3, :3].double().tolist()
        o = tuple(float(v) for v in c2w[:3, 3])
        d = [torch.add(xs * R[k][0], ys * R[k][1]).add_(R[k][2]) for k in range(3)]  # (H, W)
        return Rays(o, *d)

    def render(self, c2w: Tensor, t: float = 0.0, K: Tensor | None = None) -> Frame:
        """Frame seen from camera-to-world pose c2w (4, 4) at time t seconds."""
        with torch_threads(self.threads):
            return self._render(c2w, t, K)

    def _render(self, c2w: Tensor, t: float, K: Tensor | None) -> Frame:
        if tuple(c2w.shape) != (4, 4):
            raise WorldplayError(f"render: c2w has shape {tuple(c2w.shape)}; pass one (4, 4) "
                                 "camera-to-world pose")
        c2w = c2w.detach().to("cpu", torch.float32)
        K = self.K if K is None else K.detach().to("cpu", torch.float32)
        H, W = self.image.height, self.image.width
        sc = self.scene
        r = self.rays(c2w, K)
        zbuf = torch.full((H, W), pack_constant(SKY_DEPTH, SKY_ID), dtype=torch.int32,
                          device=self.device)
        merge(zbuf, ground_t(r), GROUND_ID)
        merge(zbuf, room_t(r, sc.half_size, sc.wall_height), ROOM_ID)

        prims = sc.primitives(t)                                        # (N, PRIM_COLS) CPU
        rects = screen_rects(prims, c2w[:3, 3], c2w[:3, :3], K, H, W)
        rows = prims.tolist()
        for i, (row, rect) in enumerate(zip(rows, rects)):
            if rect is None:
                continue
            sl = (slice(rect[0], rect[1]), slice(rect[2], rect[3]))
            merge(zbuf[sl], intersect(r, row, sl), FIRST_PRIM_ID + i)

        depth, ids = unpack(zbuf)
        rgb = self._shade(r, depth, ids, rows, rects)
        first_dyn = FIRST_PRIM_ID + sc.statics.shape[0]
        dynamic = (ids >= first_dyn) & (ids < first_dyn + sc.n_dynamic)      # (H, W) bool
        return Frame(rgb=rgb.cpu(), depth=depth.cpu(), dynamic=dynamic.cpu(), c2w=c2w.clone(),
                     t=float(t))

    def _shade(self, r: Rays, depth: Tensor, ids: Tensor, rows: list[list[float]],
               rects: list) -> Tensor:
        sc = self.scene
        flat = ids.flatten().long()                                     # (H*W,)
        counts = torch.bincount(flat, minlength=SKY_ID + 1).tolist()    # pixels per id
        gb = self._gbuf
        gb.reset(r, depth, ids)
        for sid, kind, mat in ((GROUND_ID, GROUND, sc.ground_mat), (ROOM_ID, ROOM, sc.wall_mat)):
            if counts[sid]:
                gb.surface(sid, owner_rect(ids, sid), kind, ORIGIN, None, self._mats[mat])
        for i, (row, rect) in enumerate(zip(rows, rects)):
            sid = FIRST_PRIM_ID + i
            if rect is not None and counts[sid]:
                gb.surface(sid, rect, int(row[0]), row[1:4], row[4:7], self._mats[int(row[7])])
        if counts[SKY_ID]:
            gb.sky(sc.sky, SKY_ID, owner_rect(ids, SKY_ID))
        return gb.compose(sc.sky, self.fog, SKY_ID)
