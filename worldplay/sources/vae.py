"""The "vae" source: ground truth passed through the model's VAE (encode, then decode).

No model on this VAE can show more than its decoder can draw, so this row is the ceiling of
any model trained on it: the eval's gap between `vae` and `model` is the DiT's, the gap between
`world` and `vae` the autoencoder's. The frames keep the renderer's pose, time and moving-object
mask; depth is the decoded one (the VAE is RGB-D). `vae:NAME|PATH` picks the checkpoint like
`model:` does (default: checkpoints.toml's default).
"""

from __future__ import annotations

import torch
from torch import Tensor

from worldplay.config import ImageConfig
from worldplay.frame import Frame
from worldplay.model.vae import RGBDVAE, frames_to_tensor, tensor_to_uint8
from worldplay.sources.protocol import check_chunk
from worldplay.sources.weights import load_weights
from worldplay.sources.world import OverWorld, WorldSource


class VaeSource(OverWorld):
    """FrameSource "vae" (chunk = 1: the VAE is per frame). Capabilities: HasScene."""

    chunk = 1

    def __init__(self, model: str | None = None, seed: int = 0, prompt: str | None = None, device: str = "cpu",
                 *, vae: RGBDVAE | None = None, label: str | None = None):
        if vae is None:
            w = load_weights(model, with_dit=False)
            vae, label = w.vae, label or w.info.label
        self.vae = vae.to(device).eval()
        self.label = label or "vae"
        self.name = "vae" if model is None else f"vae:{model}"
        v = self.vae.cfg
        # the VAE's own frame size (640x360 for every preset): ground truth is rendered at it
        self.world = WorldSource(seed, prompt, device, ImageConfig(width=v.width, height=v.height))

    @torch.no_grad()
    def frames(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        """c2w (F, 4, 4), times (F,) -> the ground truth at each pose, as the VAE reconstructs it."""
        check_chunk("VaeSource", c2w, times)
        truth = self.world.frames(c2w, times)
        dev, dt = next(self.vae.parameters()).device, next(self.vae.parameters()).dtype
        rgb = frames_to_tensor(torch.stack([f.rgb for f in truth])).to(dev, dt)      # (F, 3, H, W)
        depth = torch.stack([f.depth for f in truth]).to(dev, dt)                     # (F, H, W)
        out_rgb, out_depth = self.vae.decode(self.vae.encode(rgb, depth))             # (F, 3, H, W), (F, H, W)
        out_rgb, out_depth = tensor_to_uint8(out_rgb).cpu(), out_depth.float().cpu()  # (F, H, W, 3), (F, H, W)
        return [Frame(rgb=out_rgb[i], depth=out_depth[i], dynamic=f.dynamic, c2w=f.c2w, t=f.t)
                for i, f in enumerate(truth)]

    def hud(self) -> dict[str, str]:
        return {"source": self.name, "scene": self.scene.prompt, "seed": str(self.seed),
                "view": f"ground truth through the VAE of {self.label}"}
