"""Stage 1, `worldplay train vae`: the RGB-D autoencoder on random crops of rendered frames.

Losses (per crop, averaged):
    rgb     L1 + MSE on RGB in [-1, 1]: L1 keeps edges and textures sharp, MSE is what PSNR
            (the eval's number) measures, so both are optimised
    depth   L1 on normalised log-depth: near surfaces, which the player sees large and the memory
            lifts most precisely, get the most weight per metre (DESIGN §4)
The VAE is fully convolutional, so crops train it for the whole 640x384 frame at a fraction of
the cost. Validation is on full frames of scenes the stream never reaches, through the same
pad / encode / decode / crop the product uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from worldplay.config import ImageConfig
from worldplay.model.presets import VAEConfig
from worldplay.model.vae import RGBDVAE, frames_to_tensor, load_vae_state, tensor_to_uint8
from worldplay.png import downscale, tile, write_png
from worldplay.train.frames import FramePool, FrameStream, validation_frames


@dataclass(frozen=True)
class VAETrainConfig:
    batch: int = 8                 # crops per step: ~0.2 s a step on 2 CPU cores
    crop_h: int = 192              # crop size, multiples of the 16x downsample; big enough to hold
    crop_w: int = 256              # whole objects, small enough to be cheap
    pool: int = 512                # rendered frames kept; ~350 MB of RGB + fp16 depth
    refresh: int = 2               # new frames rendered per step (~15 ms each): the pool keeps moving
    per_scene: int = 32            # consecutive stream frames from one scene (one scene build each)
    depth_weight: float = 0.5      # depth L1 against RGB L1 + MSE
    mse_weight: float = 1.0        # MSE term beside L1 on RGB
    val_frames: int = 8            # full validation frames (PSNR in the log and the strip)


def psnr_rgb(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two [-1, 1] RGB tensors on the uint8 scale the eval uses."""
    mse = F.mse_loss(tensor_to_uint8(a).float(), tensor_to_uint8(b).float())
    return float(10 * torch.log10(255.0 ** 2 / mse.clamp_min(1e-10)))


class VAEStage:
    name = "vae"
    loss_names = ["rgb_l1", "rgb_mse", "depth_l1"]

    def __init__(self, vae: RGBDVAE, cfg: VAETrainConfig = VAETrainConfig(), image: ImageConfig = ImageConfig(),
                 device: str = "cpu"):
        self.module, self.cfg, self.device = vae.to(device), cfg, torch.device(device)
        self.config = {"stage": asdict(cfg), "vae": asdict(vae.cfg), "image": asdict(image)}
        self.generator = torch.Generator()
        self.stream = FrameStream(per_scene=cfg.per_scene, image=image)
        self.pool = FramePool(self.stream, cfg.pool)
        self.val = validation_frames(cfg.val_frames, image)

    def data_pos(self) -> int:
        return self.pool.pos

    def seek(self, pos: int) -> None:
        self.pool = FramePool(self.stream, self.cfg.pool, start=pos)

    def shard(self, rank: int, world: int) -> None:
        """Ranks share the frame pool; their crops differ through their generators."""

    def _batch(self) -> Tensor:
        """(B, 4, crop_h, crop_w) packed RGB-D crops from random pool frames."""
        c, g = self.cfg, self.generator
        idx = torch.randint(0, c.pool, (c.batch,), generator=g)
        H, W = self.pool.rgb.shape[1:3]
        ys = torch.randint(0, H - c.crop_h + 1, (c.batch,), generator=g)
        xs = torch.randint(0, W - c.crop_w + 1, (c.batch,), generator=g)
        rgb = torch.stack([self.pool.rgb[i, y:y + c.crop_h, x:x + c.crop_w] for i, y, x in zip(idx, ys, xs)])
        depth = torch.stack([self.pool.depth[i, y:y + c.crop_h, x:x + c.crop_w] for i, y, x in zip(idx, ys, xs)])
        flip = torch.rand(c.batch, generator=g) < 0.5          # mirror half: the world has no handedness
        rgb[flip], depth[flip] = rgb[flip].flip(2), depth[flip].flip(2)
        return self.module.pack(frames_to_tensor(rgb), depth.float()).to(self.device)   # (B, 4, h, w)

    def loss(self, step: int) -> dict[str, Tensor]:
        x = self._batch()
        y = self.module.decode_x(self.module.encode_x(x))                               # (B, 4, h, w)
        l1 = (y[:, :3] - x[:, :3]).abs().mean()
        mse = F.mse_loss(y[:, :3], x[:, :3])
        dl1 = (y[:, 3] - x[:, 3]).abs().mean()
        self.pool.refresh(self.cfg.refresh)
        c = self.cfg
        return {"loss": l1 + c.mse_weight * mse + c.depth_weight * dl1, "rgb_l1": l1, "rgb_mse": mse,
                "depth_l1": dl1}

    def _recon(self, module: RGBDVAE, frames) -> tuple[Tensor, Tensor, Tensor]:
        rgb = frames_to_tensor(torch.stack([f.rgb for f in frames])).to(self.device)   # (N, 3, H, W)
        depth = torch.stack([f.depth.float() for f in frames]).to(self.device)         # (N, H, W)
        out_rgb, out_depth = module.decode(module.encode(rgb, depth))
        return rgb, out_rgb, (out_depth.log() - depth.log()).abs().mean()

    def validate(self, module: RGBDVAE) -> dict[str, float]:
        rgb, out, dlog = self._recon(module, self.val)
        return {"val_psnr": psnr_rgb(out, rgb), "val_depth_logerr": float(dlog)}

    def sample(self, module: RGBDVAE, path: Path) -> None:
        """Ground truth (top) over reconstruction (bottom) for three validation frames."""
        rgb, out, _ = self._recon(module, self.val[:3])
        gt, rec = tensor_to_uint8(rgb.cpu()), tensor_to_uint8(out.cpu())
        write_png(path, tile([[downscale(i, 2) for i in gt], [downscale(i, 2) for i in rec]]))


def make_vae(cfg: VAEConfig, init_state: dict[str, Tensor] | None, seed: int = 0) -> RGBDVAE:
    vae = RGBDVAE(cfg, seed=seed)
    if init_state is not None:
        load_vae_state(vae, init_state)
    return vae
