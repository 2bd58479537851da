"""RGB-D autoencoder: one frame (RGB + depth) <-> a 16-channel latent at 1/16 resolution.

Depth rides along as a fourth input channel (normalised log-depth), so every generated frame
decodes with its own depth and can be lifted into the mosaic memory without a depth network.
Per-frame (no temporal compression) and convolution-only, so it trains on CPU on random crops
(it is fully convolutional) and runs on any frame size that is a multiple of `downsample`.
Pixel (un)shuffle at both ends keeps every conv at 1/4 resolution or below: full- and
half-resolution convs would be ~90% of the cost and make decoding too slow to play on a CPU.
The latent is deterministic (a plain autoencoder, no KL sampling): the DiT needs a fixed target.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldplay.model.presets import VAEConfig

UINT8_MAX = 255.0
UINT8_HALF = UINT8_MAX / 2.0
LATENT_STD_MIN = 1e-3   # a dead latent channel must not divide by zero


# ---- value conventions ---------------------------------------------------------------------

def frames_to_tensor(frames: Tensor) -> Tensor:
    """uint8 (H, W, 3) or (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    if frames.dtype != torch.uint8:
        raise TypeError(f"frames_to_tensor expects uint8 frames, got {frames.dtype}")
    if frames.dim() == 3:
        frames = frames[None]
    return frames.permute(0, 3, 1, 2).float() / UINT8_HALF - 1.0  # (B, 3, H, W)


def tensor_to_uint8(x: Tensor) -> Tensor:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3), rounded and clamped."""
    u = ((x.detach().float() + 1.0) * UINT8_HALF).round().clamp(0, UINT8_MAX)
    return u.to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # (B, H, W, 3)


def depth_to_unit(depth: Tensor, cfg: VAEConfig) -> Tensor:
    """Metres -> [-1, 1] on a log scale over [depth_min, depth_max] (clamped outside it)."""
    lo, hi = math.log(cfg.depth_min), math.log(cfg.depth_max)
    d = depth.float().clamp(cfg.depth_min, cfg.depth_max).log()
    return 2.0 * (d - lo) / (hi - lo) - 1.0


def unit_to_depth(u: Tensor, cfg: VAEConfig) -> Tensor:
    """[-1, 1] -> metres; the inverse of `depth_to_unit` (values outside [-1, 1] are clamped)."""
    lo, hi = math.log(cfg.depth_min), math.log(cfg.depth_max)
    return torch.exp((u.clamp(-1.0, 1.0) + 1.0) * 0.5 * (hi - lo) + lo)


def latent_intrinsics(K: Tensor, cfg: VAEConfig) -> Tensor:
    """Pixel intrinsics (..., 3, 3) of a height x width frame -> those of its latent grid.

    The frame is padded by `pad_top` rows before encoding, so the principal point moves down
    by pad_top pixels before scaling by 1/downsample (latent cell centres sit at +0.5).
    """
    out = K.clone()
    out[..., 1, 2] = out[..., 1, 2] + cfg.pad_top
    out[..., :2, :] = out[..., :2, :] / cfg.downsample
    return out


# ---- layers ---------------------------------------------------------------------------------

class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a skip; the second conv starts at zero (identity block)."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, ch)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Down(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Up(nn.Module):
    """Nearest x2 then conv: no checkerboard artefacts, unlike a transposed conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _stage(ch: int, n: int, groups: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(ch, groups) for _ in range(n)])


# ---- the autoencoder ------------------------------------------------------------------------

class RGBDVAE(nn.Module):
    def __init__(self, cfg: VAEConfig | None = None, seed: int = 0):
        super().__init__()
        self.cfg = cfg or VAEConfig()
        with torch.random.fork_rng(devices=[]):  # layer constructors draw from the global RNG
            self._build(self.cfg)
        # Per-channel statistics of the encoder's raw output, set once after training
        # (`calibrate`): latents leave `encode_x` at zero mean and unit variance, the scale flow
        # matching's noise assumes. Identity until calibrated, so VAE training is unaffected.
        self.register_buffer("latent_mean", torch.zeros(self.cfg.latent_ch))
        self.register_buffer("latent_std", torch.ones(self.cfg.latent_ch))
        self.reset_parameters(seed)

    def _build(self, cfg: VAEConfig) -> None:
        w, g, n = cfg.widths, cfg.groups, len(cfg.widths)
        edge_ch = cfg.in_ch * cfg.shuffle ** 2  # channels of a pixel-unshuffled frame
        self.enc_in = nn.Sequential(nn.PixelUnshuffle(cfg.shuffle), nn.Conv2d(edge_ch, w[0], 3, padding=1))
        self.enc_stages = nn.ModuleList(_stage(w[i], cfg.blocks[i], g) for i in range(n))
        self.enc_down = nn.ModuleList(Down(w[i], w[i + 1]) for i in range(n - 1))
        self.enc_mid = _stage(w[-1], cfg.mid_blocks, g)
        self.enc_out = nn.Sequential(nn.GroupNorm(g, w[-1]), nn.SiLU(),
                                     nn.Conv2d(w[-1], cfg.latent_ch, 3, padding=1))
        self.dec_in = nn.Conv2d(cfg.latent_ch, w[-1], 3, padding=1)
        self.dec_mid = _stage(w[-1], cfg.mid_blocks, g)
        self.dec_stages = nn.ModuleList(_stage(w[i], cfg.blocks[i], g) for i in range(n))
        self.dec_up = nn.ModuleList(Up(w[i + 1], w[i]) for i in range(n - 1))
        self.dec_out = nn.Sequential(nn.GroupNorm(g, w[0]), nn.SiLU(),
                                     nn.Conv2d(w[0], edge_ch, 3, padding=1), nn.PixelShuffle(cfg.shuffle))

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        """Deterministic init from `seed` that leaves the global torch RNG untouched."""
        gen = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                m.bias.zero_()
            elif isinstance(m, nn.GroupNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
        for m in self.modules():
            if isinstance(m, ResBlock):
                m.conv2.weight.zero_()  # each block starts as identity: a deep stack trains stably

    @property
    def calibrated(self) -> bool:
        return not (bool((self.latent_mean == 0).all()) and bool((self.latent_std == 1).all()))

    @torch.no_grad()
    def calibrate(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Set the latent statistics from latents z (N, C, h, w) that this VAE encoded; returns
        the (mean, std) before, so latents made with them can be converted (`renormalize`)."""
        raw = z.float() * self.latent_std[None, :, None, None] + self.latent_mean[None, :, None, None]
        old = (self.latent_mean.clone(), self.latent_std.clone())
        self.latent_mean.copy_(raw.mean(dim=(0, 2, 3)))
        self.latent_std.copy_(raw.std(dim=(0, 2, 3)).clamp_min(LATENT_STD_MIN))
        return old

    def renormalize(self, z: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """Latents (..., C, h, w) normalised with (mean, std) -> normalised with this VAE's."""
        raw = z.float() * std[:, None, None] + mean[:, None, None]
        return (raw - self.latent_mean[:, None, None].cpu()) / self.latent_std[:, None, None].cpu()

    # -- padding between the product's 640x360 and the network's 640x384 --

    def pad(self, x: Tensor) -> Tensor:
        """(B, C, height, W) -> (B, C, pad_height, W), edge rows replicated (no fake black bars)."""
        top = self.cfg.pad_top
        bottom = self.cfg.pad_height - x.shape[-2] - top
        return F.pad(x, (0, 0, top, bottom), mode="replicate")  # (B, C, pad_height, W)

    def crop(self, x: Tensor) -> Tensor:
        """(B, C, pad_height, W) -> (B, C, height, W): the inverse of `pad`."""
        top = self.cfg.pad_top
        return x[..., top:top + self.cfg.height, :]  # (B, C, height, W)

    def pack(self, rgb: Tensor, depth: Tensor) -> Tensor:
        """rgb (B, 3, H, W) in [-1, 1] + depth (B, H, W) metres -> (B, 4, H, W) network input."""
        return torch.cat([rgb.float(), depth_to_unit(depth, self.cfg)[:, None]], dim=1)

    def unpack(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 4, H, W) network output -> rgb (B, 3, H, W) in [-1, 1], depth (B, H, W) metres."""
        return x[:, :3].clamp(-1.0, 1.0), unit_to_depth(x[:, 3], self.cfg)

    # -- the networks on already-packed tensors (training uses these on random crops) --

    def encode_x(self, x: Tensor) -> Tensor:
        """(B, 4, H, W), H and W multiples of downsample -> (B, latent_ch, H/ds, W/ds), normalised."""
        h = self.enc_in(x)
        for i, stage in enumerate(self.enc_stages):
            h = stage(h)
            if i < len(self.enc_down):
                h = self.enc_down[i](h)
        raw = self.enc_out(self.enc_mid(h))
        return (raw - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def decode_x(self, z: Tensor) -> Tensor:
        """(B, latent_ch, h, w) normalised -> (B, 4, h*ds, w*ds) unclamped (losses see the raw output)."""
        z = z * self.latent_std[:, None, None].to(z.dtype) + self.latent_mean[:, None, None].to(z.dtype)
        h = self.dec_mid(self.dec_in(z))
        for i in reversed(range(len(self.dec_stages))):
            h = self.dec_stages[i](h)
            if i > 0:
                h = self.dec_up[i - 1](h)
        return self.dec_out(h)

    # -- the product-facing API --

    def encode(self, rgb: Tensor, depth: Tensor) -> Tensor:
        """rgb (B, 3, 360, 640) in [-1, 1], depth (B, 360, 640) metres -> z (B, 16, 24, 40)."""
        self._check_frame(rgb, depth)
        # log-depth in float32 whatever the weights run in: bf16 would round 100 m to +-0.4 m first
        dtype = self.latent_std.dtype
        return self.encode_x(self.pad(self.pack(rgb.float(), depth.float())).to(dtype))

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, 16, 24, 40) -> rgb (B, 3, 360, 640) in [-1, 1], depth (B, 360, 640) metres."""
        return self.unpack(self.crop(self.decode_x(z)).float())   # float32 out: depth leaves through exp()

    def _check_frame(self, rgb: Tensor, depth: Tensor) -> None:
        want = (self.cfg.height, self.cfg.width)
        if rgb.dim() != 4 or rgb.shape[1] != 3 or tuple(rgb.shape[-2:]) != want:
            raise ValueError(f"VAE.encode expects rgb (B, 3, {want[0]}, {want[1]}), got {tuple(rgb.shape)}")
        if tuple(depth.shape) != (rgb.shape[0], *want):
            raise ValueError(f"VAE.encode expects depth (B, {want[0]}, {want[1]}), got {tuple(depth.shape)}")


def load_vae_state(vae: RGBDVAE, state: dict[str, Tensor]) -> None:
    """Load weights saved before latent statistics existed too (they start as identity)."""
    state = dict(state)
    for name in ("latent_mean", "latent_std"):
        state.setdefault(name, getattr(vae, name).detach().clone().fill_(0.0 if name == "latent_mean" else 1.0))
    vae.load_state_dict(state)


def vae_param_count(cfg: VAEConfig | None = None) -> int:
    return sum(p.numel() for p in RGBDVAE(cfg).parameters())
