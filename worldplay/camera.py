"""Camera geometry: poses, intrinsics, projection, SE(3) helpers.

Conventions (DESIGN.md §3):
- World frame is right-handed, +y up, metres.
- A pose is camera-to-world `c2w` (4x4); `w2c` is its inverse.
- The camera frame is OpenCV: x right, y down, z forward.
- Intrinsics are pinhole, in pixels, for the image they are built for (default 640x360,
  horizontal FOV 90 degrees). Pixel (u, v) = (column, row); pixel centres sit at +0.5.

Everything here is plain torch so it runs on CPU or CUDA and batches over leading dims.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

WORLD_UP = (0.0, 1.0, 0.0)


def intrinsics(width: int = 640, height: int = 360, fov_x_deg: float = 90.0,
               dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """Pinhole K (3, 3) with square pixels and the principal point at the image centre."""
    if not 1.0 <= fov_x_deg <= 179.0:
        raise ValueError(f"fov_x_deg={fov_x_deg} is outside 1..179 degrees; pick a normal field of view such as 90")
    f = (width / 2.0) / math.tan(math.radians(fov_x_deg) / 2.0)
    return torch.tensor([[f, 0.0, width / 2.0],
                         [0.0, f, height / 2.0],
                         [0.0, 0.0, 1.0]], dtype=dtype, device=device)


def scale_intrinsics(K: Tensor, sx: float, sy: float | None = None) -> Tensor:
    """K for an image resized by (sx, sy), e.g. the latent grid (1/16) of a 640x360 frame."""
    sy = sx if sy is None else sy
    S = torch.diag(torch.tensor([sx, sy, 1.0], dtype=K.dtype, device=K.device))
    return S @ K


def invert_se3(T: Tensor) -> Tensor:
    """Inverse of rigid transforms (..., 4, 4) without a general matrix inverse."""
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out


def make_pose(R: Tensor, t: Tensor) -> Tensor:
    """Assemble c2w (..., 4, 4) from rotation (..., 3, 3) and camera centre (..., 3)."""
    T = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype, device=R.device)
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def look_at(eye, target, up=WORLD_UP, dtype: torch.dtype = torch.float32) -> Tensor:
    """c2w (4, 4) of a camera at `eye` looking at `target` (OpenCV axes: y points down)."""
    eye = torch.as_tensor(eye, dtype=dtype)
    target = torch.as_tensor(target, dtype=dtype)
    up = torch.as_tensor(up, dtype=dtype)
    fwd = target - eye
    if fwd.norm() < 1e-9:
        raise ValueError("look_at: eye and target coincide; give a target away from the eye")
    fwd = fwd / fwd.norm()
    right = torch.linalg.cross(fwd, up)
    if right.norm() < 1e-6:  # looking straight up/down: any right vector orthogonal to fwd works
        right = torch.linalg.cross(fwd, torch.tensor([0.0, 0.0, 1.0], dtype=dtype))
    right = right / right.norm()
    down = torch.linalg.cross(fwd, right)
    R = torch.stack([right, down, fwd], dim=-1)  # columns are the camera axes in world coords
    return make_pose(R, eye)


def yaw_pitch_pose(position, yaw: float, pitch: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """c2w for a first-person camera. yaw: radians, positive turns right (from -z towards +x);
    pitch: radians, positive looks up. yaw = pitch = 0 looks along world -z."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    fwd = torch.tensor([sy * cp, sp, -cy * cp], dtype=dtype)
    right = torch.tensor([cy, 0.0, sy], dtype=dtype)       # horizontal, so no roll
    down = torch.linalg.cross(fwd, right)
    R = torch.stack([right, down, fwd], dim=-1)
    return make_pose(R, torch.as_tensor(position, dtype=dtype))


def yaw_pitch_of(c2w: Tensor) -> tuple[float, float]:
    """Inverse of `yaw_pitch_pose` for the rotation part (roll is ignored)."""
    fwd = c2w[..., :3, 2]
    pitch = math.asin(max(-1.0, min(1.0, float(fwd[1]))))
    yaw = math.atan2(float(fwd[0]), float(-fwd[2]))
    return yaw, pitch


def transform_points(T: Tensor, pts: Tensor) -> Tensor:
    """Apply a 4x4 transform (..., 4, 4) to points (..., N, 3)."""
    return pts @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def project(pts_world: Tensor, w2c: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """World points (..., N, 3) -> pixel coords (..., N, 2) as (u, v) and camera depth z (..., N).

    Points behind the camera get z <= 0; their uv is meaningless and callers must mask them.
    """
    pc = transform_points(w2c, pts_world)                   # (..., N, 3) camera frame
    z = pc[..., 2]
    zs = torch.where(z.abs() < 1e-9, torch.full_like(z, 1e-9), z)
    uvw = pc @ K.transpose(-1, -2)                          # (..., N, 3)
    uv = uvw[..., :2] / zs[..., None]
    return uv, z


def unproject(uv: Tensor, depth: Tensor, c2w: Tensor, K: Tensor) -> Tensor:
    """Pixels (..., N, 2) with z-depth (..., N) -> world points (..., N, 3).

    `depth` is distance along the optical axis (z), which is what the renderer returns.
    """
    fx, fy, cx, cy = K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]
    x = (uv[..., 0] - cx[..., None]) / fx[..., None] * depth
    y = (uv[..., 1] - cy[..., None]) / fy[..., None] * depth
    pc = torch.stack([x, y, depth], dim=-1)                 # (..., N, 3) camera frame
    return transform_points(c2w, pc)


def pixel_grid(height: int, width: int, dtype=torch.float32, device=None) -> Tensor:
    """Pixel-centre coordinates (H, W, 2) as (u, v) = (col + 0.5, row + 0.5)."""
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device) + 0.5,
                          torch.arange(width, dtype=dtype, device=device) + 0.5, indexing="ij")
    return torch.stack([u, v], dim=-1)


def camera_rays(c2w: Tensor, K: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Ray origins (3,) and directions (H, W, 3) in world coords, scaled so that the
    camera-frame z component of each direction is 1: then ray parameter t == z-depth."""
    uv = pixel_grid(height, width, dtype=c2w.dtype, device=c2w.device)    # (H, W, 2)
    x = (uv[..., 0] - K[0, 2]) / K[0, 0]
    y = (uv[..., 1] - K[1, 2]) / K[1, 1]
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)                # (H, W, 3)
    d_world = d_cam @ c2w[:3, :3].T
    return c2w[:3, 3].clone(), d_world


def so3_exp(w: Tensor) -> Tensor:
    """Rodrigues: axis-angle (..., 3) -> rotation (..., 3, 3)."""
    theta = w.norm(dim=-1, keepdim=True)[..., None]                        # (..., 1, 1)
    small = theta < 1e-8
    k = w / torch.where(small[..., 0], torch.ones_like(theta[..., 0]), theta[..., 0])
    Kx = torch.zeros(*w.shape[:-1], 3, 3, dtype=w.dtype, device=w.device)
    Kx[..., 0, 1], Kx[..., 0, 2] = -k[..., 2], k[..., 1]
    Kx[..., 1, 0], Kx[..., 1, 2] = k[..., 2], -k[..., 0]
    Kx[..., 2, 0], Kx[..., 2, 1] = -k[..., 1], k[..., 0]
    I = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(Kx)
    R = I + torch.sin(theta) * Kx + (1 - torch.cos(theta)) * (Kx @ Kx)
    return torch.where(small, I, R)


def so3_log(R: Tensor) -> Tensor:
    """Rotation (..., 3, 3) -> axis-angle (..., 3). Accurate away from 180 degrees."""
    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.acos(cos)
    v = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                     R[..., 1, 0] - R[..., 0, 1]], dim=-1)
    scale = torch.where(theta < 1e-6, torch.full_like(theta, 0.5), theta / (2 * torch.sin(theta)))
    return v * scale[..., None]


def rotation_angle_deg(R: Tensor) -> Tensor:
    """Geodesic angle of rotation matrices (..., 3, 3) in degrees."""
    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos))
