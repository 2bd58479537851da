"""Image metrics between generated and ground-truth frames: PSNR, SSIM, optional ST-LPIPS.

All functions take uint8 frames (..., H, W, 3) as the rest of the program exchanges them and
work in [0, 1]. PSNR of identical frames is infinite; we report PSNR_CAP instead and every
caller that prints it must say it is capped (`format_psnr`). SSIM is pytorch-msssim's
(Gaussian window 11, sigma 1.5, the usual constants). ST-LPIPS (the shift-tolerant LPIPS of
Ghildyal & Liu 2022, which the paper reports) needs the `stlpips_pytorch` package *and* its
pretrained weights on disk; without them it is reported as "n/a", never replaced by anything
else and never labelled plain LPIPS. FID/FVD need Inception/I3D weights that cannot be had
offline, so they are not computed (see `NOT_COMPUTED`).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
from torch import Tensor

from worldplay.errors import WorldplayError

PSNR_CAP = 100.0          # dB reported for identical frames (true PSNR is +inf)
MSE_FLOOR = 10.0 ** (-PSNR_CAP / 10.0)   # the MSE at which PSNR reaches the cap (peak 1.0)
SSIM_WINDOW = 11          # pytorch-msssim default; frames are far larger than the window
STLPIPS_NAME = "ST-LPIPS"
NOT_COMPUTED = {
    "FID": "needs Inception-v3 weights, which cannot be fetched offline",
    "FVD": "needs I3D weights, which cannot be fetched offline",
}


def _check_pair(gen: Tensor, gt: Tensor) -> None:
    if gen.shape != gt.shape:
        raise WorldplayError(f"metric inputs differ in shape: generated {tuple(gen.shape)} vs ground truth "
                             f"{tuple(gt.shape)}; render both at the same size")
    if gen.dtype != torch.uint8 or gt.dtype != torch.uint8:
        raise WorldplayError(f"metrics take uint8 frames (..., H, W, 3), got {gen.dtype} and {gt.dtype}")
    if gen.shape[-1] != 3:
        raise WorldplayError(f"metrics take RGB frames (..., H, W, 3), got shape {tuple(gen.shape)}")


def to_unit(x: Tensor) -> Tensor:
    """uint8 (..., H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    x = x.reshape(-1, *x.shape[-3:])                              # (N, H, W, 3)
    return x.permute(0, 3, 1, 2).float() / 255.0                   # (N, 3, H, W)


def psnr(gen: Tensor, gt: Tensor) -> Tensor:
    """Per-frame PSNR in dB (N,), capped at PSNR_CAP (identical frames give exactly the cap)."""
    _check_pair(gen, gt)
    a, b = to_unit(gen), to_unit(gt)
    mse = (a - b).pow(2).flatten(1).mean(1)                       # (N,)
    return -10.0 * torch.log10(mse.clamp_min(MSE_FLOOR))


def masked_psnr(gen: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
    """PSNR (N,) over the pixels where `mask` (..., H, W) is True; NaN for frames with no pixel."""
    _check_pair(gen, gt)
    a, b = to_unit(gen), to_unit(gt)
    m = mask.reshape(-1, 1, *mask.shape[-2:]).float()              # (N, 1, H, W)
    n = m.flatten(1).sum(1) * 3
    mse = ((a - b).pow(2) * m).flatten(1).sum(1) / n.clamp_min(1)
    out = -10.0 * torch.log10(mse.clamp_min(MSE_FLOOR))
    return torch.where(n > 0, out, torch.full_like(out, float("nan")))


def ssim(gen: Tensor, gt: Tensor) -> Tensor:
    """Per-frame SSIM (N,) in [-1, 1]; identical frames give 1.0."""
    _check_pair(gen, gt)
    from pytorch_msssim import ssim as _ssim
    a, b = to_unit(gen), to_unit(gt)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise WorldplayError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
                             f"got {tuple(a.shape[-2:])}")
    return _ssim(a, b, data_range=1.0, size_average=False)


def is_capped(value: float) -> bool:
    return value >= PSNR_CAP - 1e-6


def format_psnr(value: float) -> str:
    """PSNR for tables: capped values say so, so nobody reads 100 dB as a measurement."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if is_capped(value):
        return f"{PSNR_CAP:.0f} (capped: identical)"
    return f"{value:.2f}"


class StLpips:
    """ST-LPIPS when `stlpips_pytorch` and its weights are available; otherwise `available` is
    False and `reason` says why. It never downloads: the package fetches its backbone from the
    network, so we only build it when the backbone is already in the torch hub cache."""

    BACKBONE_FILE = "alexnet-owt-7be5be79.pth"   # torchvision's AlexNet, which ST-LPIPS wraps

    def __init__(self, device: str = "cpu"):
        self.model = None
        self.reason = ""
        self.device = device
        if importlib.util.find_spec("stlpips_pytorch") is None:
            self.reason = "n/a (stlpips-pytorch not installed)"
            return
        ckpt = torch.hub.get_dir() + "/checkpoints/" + self.BACKBONE_FILE
        if not importlib.util.find_spec("torchvision") or not Path(ckpt).is_file():
            self.reason = f"n/a (ST-LPIPS backbone weights not on disk: {ckpt})"
            return
        try:
            from stlpips_pytorch import stlpips
            self.model = stlpips.LPIPS(net="alex", variant="shift_tolerant").to(device).eval()
        except Exception as e:  # a broken optional install must not take eval down
            self.reason = f"n/a (stlpips-pytorch failed to load: {type(e).__name__})"
            self.model = None

    @property
    def available(self) -> bool:
        return self.model is not None

    @torch.no_grad()
    def __call__(self, gen: Tensor, gt: Tensor) -> Tensor:
        """Per-frame ST-LPIPS distance (N,); lower is better."""
        if self.model is None:
            raise WorldplayError(f"{STLPIPS_NAME} is unavailable: {self.reason}")
        _check_pair(gen, gt)
        a = to_unit(gen).to(self.device) * 2 - 1                  # the network takes [-1, 1]
        b = to_unit(gt).to(self.device) * 2 - 1
        return self.model(a, b).flatten().cpu()

