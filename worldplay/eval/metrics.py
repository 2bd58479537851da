"""Image metrics between generated and ground-truth frames: PSNR, SSIM, GMSD, optional ST-LPIPS.

All functions take uint8 frames (..., H, W, 3) as the rest of the program exchanges them and
work in [0, 1]. PSNR of identical frames is infinite; we report PSNR_CAP instead and every
caller that prints it must say it is capped (`format_psnr`). SSIM is pytorch-msssim's
(Gaussian window 11, sigma 1.5, the usual constants). GMSD is written here after Xue et al.
2014 (the maintained implementations, piq and piqa, import torchvision at package import, which
the CPU install does not have); it scores edges and fine detail, which PSNR and SSIM barely see
on scenes of large flat sky and ground. ST-LPIPS (the shift-tolerant LPIPS of
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
import torch.nn.functional as F
from torch import Tensor

from worldplay.errors import WorldplayError

PSNR_CAP = 100.0          # dB reported for identical frames (true PSNR is +inf)
MSE_FLOOR = 10.0 ** (-PSNR_CAP / 10.0)   # the MSE at which PSNR reaches the cap (peak 1.0)
SSIM_WINDOW = 11          # pytorch-msssim default; frames are far larger than the window
GMSD_C = 170.0            # Xue et al.'s stability constant for grey levels in [0, 255]
GMSD_MIN_SIDE = 6         # px; below this the halved image has no interior for the 3x3 gradient
# Luma weights (ITU-R BT.601) of the paper's reference code
LUMA = (0.299, 0.587, 0.114)
# Prewitt kernels divided by 3, as in the paper: horizontal and vertical gradients
PREWITT_X = torch.tensor([[1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [1.0, 0.0, -1.0]]) / 3.0
PREWITT = torch.stack([PREWITT_X, PREWITT_X.T])[:, None]         # (2, 1, 3, 3)
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
    from pytorch_msssim import ssim as _ssim  # pytorch_msssim: the optional eval extra, needed for SSIM only
    a, b = to_unit(gen), to_unit(gt)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise WorldplayError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
                             f"got {tuple(a.shape[-2:])}")
    return _ssim(a, b, data_range=1.0, size_average=False)


def _to_grey_levels(x: Tensor) -> Tensor:
    """uint8 (..., H, W, 3) -> float (N, 3, H, W) in [0, 255], the paper's range for c."""
    return x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).float()


def _gradient_magnitude(x: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 255] -> (N, H/2, W/2) Prewitt gradient magnitude of the luma
    after the paper's 2x2 average and downsampling by 2 (zero padding at the border, as
    MATLAB's conv2 'same' in the reference code; an odd last row or column is dropped)."""
    y = (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)   # (N, 1, H, W) luma
    y = F.avg_pool2d(y, 2)                                                # (N, 1, H/2, W/2)
    g = F.conv2d(y, PREWITT, padding=1)                                   # (N, 2, H/2, W/2)
    return g.pow(2).sum(1).sqrt()


def gmsd(gen: Tensor, gt: Tensor) -> Tensor:
    """Per-frame GMSD (N,), Xue et al. 2014: the standard deviation of the gradient magnitude
    similarity map (2 m_r m_d + c) / (m_r^2 + m_d^2 + c). 0 for identical frames; lower is better."""
    _check_pair(gen, gt)
    if min(gen.shape[-3:-1]) < GMSD_MIN_SIDE:
        raise WorldplayError(f"GMSD needs frames of at least {GMSD_MIN_SIDE}x{GMSD_MIN_SIDE} pixels, "
                             f"got {tuple(gen.shape[-3:-1])}")
    m_d = _gradient_magnitude(_to_grey_levels(gen))
    m_r = _gradient_magnitude(_to_grey_levels(gt))
    gms = (2 * m_r * m_d + GMSD_C) / (m_r.pow(2) + m_d.pow(2) + GMSD_C)  # (N, h, w), 1 where equal
    # Sample std (N - 1), as MATLAB's std2 in the reference code; piq 0.8 divides by N, so the
    # two agree to ~1e-4 on small frames and to 4 decimals at 640x360.
    return gms.flatten(1).std(1)


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
            from stlpips_pytorch import stlpips  # stlpips: optional, and often absent (see above)
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

