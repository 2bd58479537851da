"""MemoryConfig and the patch geometry it implies (which pixels one memory entry covers).

One memory entry is one DiT token's patch of the frame. The tiny model pads 640x360 to 640x384
(12 rows above and below, like the VAE), encodes at 16x and patches 2x2 latents: a 20x12 token
grid whose cells are 32x32 pixels. Token-grid coordinates put cell (i, j)'s centre at (y, x) =
(i, j); pixel (u, v) maps to x = u / patch_px - 0.5, y = (v + pad_top) / patch_px - 0.5.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

from worldplay.errors import WorldplayError

KEY_VOXEL_BITS = 18   # per axis: 2^18 voxels of 0.25 m = 65 km, far beyond any scene
KEY_VIEW_BITS = 9     # up to 512 view-direction bins; 3 * 18 + 9 = 63 bits fits an int64


@dataclass(frozen=True)
class MemoryConfig:
    feature_dim: int = 64            # tiny DiT token: 16 latent channels x a 2x2 latent patch
    capacity: int = 200_000          # ~53 MB; 52 s of frames with no overlap, minutes with dedup;
                                     # retrieve + warp over all of it stays ~15 ms on one CPU core
    image_width: int = 640           # the product's frame size: K is given in these pixels
    image_height: int = 360          # 16:9 at 640 wide
    patch_px: int = 32               # 16x VAE times DiT patch 2: one entry per DiT token
    padded_height: int = 0           # 0: round height up to a multiple of patch_px (360 -> 384),
                                     # split evenly above/below as the VAE does
    voxel_size: float = 0.25         # metres; a token patch's footprint at 2.5 m, so re-observations
                                     # from nearby collapse while distant detail is kept
    view_bins: int = 8               # azimuth sectors (45 deg): each side of an object keeps its look
    elevation_bins: int = 3          # looking down / level / up
    min_depth: float = 0.05          # metres; near plane for lifting and retrieval
    max_depth: float = 80.0          # metres; past the fog (70 m) nothing shows, and sky
                                     # (SKY_DEPTH = 100 m) is skipped: it is view-independent and
                                     # would flood memory with one entry per view direction
    dynamic_max: float = 0.5         # patches mostly on moving objects are not stored: memory would
                                     # freeze them in place while the world keeps them moving
    occlusion_tol: float = 0.1       # relative depth slack: the same surface lifted from other views
                                     # lands a few % off; a wall 10% nearer hides what is behind
    splat_scale: float = 1.2         # footprints a bit wider than a patch: closes the seams between
                                     # tangent patches and gaps from mildly oblique surfaces
    max_footprint: int = 3           # cells; cap on a splat's radius so a patch right at the camera
                                     # cannot cover (and hide) the whole view
    rank_visibility: float = 1.0     # budget ranking: front-most surface first
    rank_angle: float = 1.0          # then patches seen from the direction we look from now
    rank_recency: float = 0.25       # a tie-breaker for newer ones (the world may have changed since)
    rank_dynamic: float = 1.0        # penalty per unit dynamic score (moving things go stale)
    recency_tau: float = 30.0        # seconds; recency weight exp(-age / tau)
    min_age: float = 0.0             # seconds; entries younger than this are not retrieved (the
                                     # streamer sets its KV-window span: attention already has them)
    feature_dtype: str = "float16"   # halves the largest tensor; latents/colours need ~3 digits
    keyframes: int = 160             # full-resolution frames kept for the canvas (views.py), 1.15 MB
                                     # each; 0 turns the pixel canvas off. The oldest go first
    keyframe_move: float = 0.5       # metres: a frame is kept when no keyframe is this near...
    keyframe_turn_deg: float = 15.0  # ...and looking within this angle of it (a pan keeps ~1 in 4)
    keyframe_views: int = 2          # keyframes splatted into one canvas; 2 cover a revisit ~90%
    keyframe_candidates: int = 8     # nearest keyframes (in pose) ranked by coverage for a view
    keyframe_fill: int = 2           # 3x3 nearest-depth fills closing 1-2 px splat cracks

    def __post_init__(self) -> None:
        if self.feature_dim < 1 or self.capacity < 1:
            raise WorldplayError(f"MemoryConfig feature_dim={self.feature_dim} and capacity={self.capacity} "
                                 f"must be positive")
        if self.patch_px < 1 or self.image_width % self.patch_px:
            raise WorldplayError(f"MemoryConfig image_width={self.image_width} must be a multiple of "
                                 f"patch_px={self.patch_px}")
        if self.padded_height and (self.padded_height < self.image_height or self.padded_height % self.patch_px):
            raise WorldplayError(f"MemoryConfig padded_height={self.padded_height} must be >= image_height "
                                 f"and a multiple of patch_px={self.patch_px} (or 0 for automatic)")
        bins = self.view_bins * self.elevation_bins
        if bins > 2 ** KEY_VIEW_BITS or min(self.view_bins, self.elevation_bins) < 1:
            raise WorldplayError(f"MemoryConfig view_bins x elevation_bins must be 1..{2 ** KEY_VIEW_BITS}")
        if not 0 < self.min_depth < self.max_depth or self.voxel_size <= 0:
            raise WorldplayError("MemoryConfig needs 0 < min_depth < max_depth and voxel_size > 0")
        if self.feature_dtype not in ("float16", "float32", "bfloat16"):
            raise WorldplayError(f"MemoryConfig feature_dtype={self.feature_dtype!r}; "
                                 f"use float16, bfloat16 or float32")

    @property
    def torch_feature_dtype(self) -> torch.dtype:
        return getattr(torch, self.feature_dtype)

    @property
    def padded_h(self) -> int:
        return self.padded_height or math.ceil(self.image_height / self.patch_px) * self.patch_px

    @property
    def pad_top(self) -> int:
        """Rows of padding above the image (the VAE centres the frame in the padded canvas)."""
        return (self.padded_h - self.image_height) // 2

    @property
    def grid_hw(self) -> tuple[int, int]:
        """(h, w) of the token/patch grid of one frame."""
        return self.padded_h // self.patch_px, self.image_width // self.patch_px

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MemoryConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise WorldplayError(f"memory config has unknown fields {unknown}; it was written by a "
                                 f"newer worldplay - upgrade to load it")
        return cls(**d)


def grid_coords(u, v, cfg: MemoryConfig, grid: tuple[int, int] | None = None):
    """Pixel column u and row v (tensors or floats) -> fractional (y, x) in a grid laid over the
    padded frame.

    `grid` defaults to the token grid; a finer grid (e.g. the 24x40 latent grid) divides the same
    padded frame into smaller cells. Cell (i, j)'s centre is at exactly (i, j).
    """
    h, w = grid or cfg.grid_hw
    cell_h, cell_w = cfg.padded_h / h, cfg.image_width / w
    return (v + cfg.pad_top) / cell_h - 0.5, u / cell_w - 0.5


def patch_centres_uv(cfg: MemoryConfig, dtype=torch.float32, device=None) -> torch.Tensor:
    """Pixel (u, v) of every patch centre (h, w, 2); bottom/top rows may lie in the padding."""
    h, w = cfg.grid_hw
    p = cfg.patch_px
    v, u = torch.meshgrid((torch.arange(h, dtype=dtype, device=device) + 0.5) * p - cfg.pad_top,
                          (torch.arange(w, dtype=dtype, device=device) + 0.5) * p, indexing="ij")
    return torch.stack([u, v], dim=-1)   # (h, w, 2)
