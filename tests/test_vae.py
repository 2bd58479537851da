"""RGB-D VAE: shapes, padding/cropping, value conventions, seeded init, and that it can learn."""

from __future__ import annotations

import math

import pytest
import torch

from worldplay.camera import intrinsics
from worldplay.frame import SKY_DEPTH
from worldplay.model.presets import DEPTH_MAX, DEPTH_MIN, PRESETS, VAEConfig
from worldplay.model.vae import (RGBDVAE, depth_to_unit, frames_to_tensor, latent_intrinsics, tensor_to_uint8,
                                 unit_to_depth, vae_param_count)

CFG = VAEConfig()


def test_encode_decode_shapes_and_ranges():
    vae = RGBDVAE(seed=0).eval()
    rgb = torch.rand(2, 3, 360, 640) * 2 - 1
    depth = torch.rand(2, 360, 640) * 20 + 0.5
    with torch.no_grad():
        z = vae.encode(rgb, depth)
        out_rgb, out_depth = vae.decode(z)
    assert z.shape == (2, 16, 24, 40)
    assert out_rgb.shape == (2, 3, 360, 640) and out_depth.shape == (2, 360, 640)
    assert out_rgb.min() >= -1 and out_rgb.max() <= 1
    assert out_depth.min() >= DEPTH_MIN - 1e-5 and out_depth.max() <= DEPTH_MAX * (1 + 1e-5)


def test_pad_then_crop_is_exact_and_replicates_edges():
    vae = RGBDVAE(seed=0)
    x = torch.randn(1, 4, 360, 640)
    padded = vae.pad(x)
    assert padded.shape == (1, 4, 384, 640)
    assert torch.equal(vae.crop(padded), x)
    assert torch.equal(padded[:, :, 0], x[:, :, 0]) and torch.equal(padded[:, :, -1], x[:, :, -1])


def test_latent_intrinsics_account_for_the_padding():
    """The frame centre pixel (320, 180) lands on the latent grid centre (20, 12)."""
    K = intrinsics(640, 360, 90.0)
    Kl = latent_intrinsics(K, CFG)
    centre = Kl @ torch.tensor([0.0, 0.0, 1.0])
    assert centre[:2].tolist() == pytest.approx([20.0, 12.0])
    assert Kl[0, 0].item() == pytest.approx(K[0, 0].item() / 16)
    # a pixel row maps to the latent row that holds it after padding by pad_top rows
    row = 100.5
    v = Kl @ torch.tensor([0.0, (row - 180) / K[1, 1].item(), 1.0])
    assert int(v[1]) == int((row + CFG.pad_top) // 16)


def test_uint8_round_trip_is_exact():
    values = torch.arange(256, dtype=torch.uint8)
    frames = values.view(1, 16, 16, 1).expand(2, 16, 16, 3).contiguous()   # (B, H, W, 3)
    x = frames_to_tensor(frames)
    assert x.shape == (2, 3, 16, 16)
    assert x.min() == -1.0 and x.max() == 1.0
    assert torch.equal(tensor_to_uint8(x), frames)
    assert frames_to_tensor(frames[0]).shape == (1, 3, 16, 16)
    assert torch.equal(tensor_to_uint8(torch.full((1, 3, 2, 2), 5.0)), torch.full((1, 2, 2, 3), 255, dtype=torch.uint8))
    with pytest.raises(TypeError):
        frames_to_tensor(frames.float())


def test_depth_encoding_is_log_and_invertible():
    assert SKY_DEPTH == DEPTH_MAX
    d = torch.tensor([DEPTH_MIN, 1.0, SKY_DEPTH, 0.01, 1e4])
    u = depth_to_unit(d, CFG)
    assert u[0] == pytest.approx(-1.0) and u[2] == pytest.approx(1.0)
    # log scale: 1 m sits at its log-fraction of [0.1, 100] (one third of the way)
    assert u[1].item() == pytest.approx(2 * math.log(10) / math.log(1000) - 1, abs=1e-6)
    assert u[3] == -1.0 and u[4] == 1.0                     # clamped outside the range
    grid = torch.logspace(math.log10(DEPTH_MIN), math.log10(DEPTH_MAX), 50)
    back = unit_to_depth(depth_to_unit(grid, CFG), CFG)
    assert torch.allclose(back, grid, rtol=1e-4)


def test_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = RGBDVAE(seed=3), RGBDVAE(seed=3), RGBDVAE(seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.enc_in[1].weight, c.enc_in[1].weight)


def test_sizes_of_presets():
    assert 1_000_000 < vae_param_count(PRESETS["tiny"].vae) < 3_000_000
    assert PRESETS["tiny"].tokens_per_frame == 240
    assert PRESETS["base"].vae.latent_hw == (48, 80)


def test_bad_config_and_input_are_named():
    from worldplay.errors import WorldplayError
    with pytest.raises(WorldplayError, match="widths/blocks need 3 entries"):
        VAEConfig(widths=(64, 128))
    with pytest.raises(WorldplayError, match="downsample=12"):
        VAEConfig(downsample=12)
    with pytest.raises(ValueError, match=r"rgb \(B, 3, 360, 640\)"):
        RGBDVAE(seed=0).encode(torch.zeros(1, 3, 384, 640), torch.ones(1, 384, 640))


def test_fully_convolutional_and_learns_a_crop():
    """A few Adam steps on one 32x32 RGB-D crop cut the reconstruction error several-fold."""
    vae = RGBDVAE(seed=0)
    gen = torch.Generator().manual_seed(1)
    coarse = torch.rand(1, 4, 4, 4, generator=gen) * 2 - 1
    x = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear")  # (B, 4, 32, 32)
    assert vae.encode_x(x).shape == (1, 16, 2, 2)
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        loss = (vae.decode_x(vae.encode_x(x)) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_calibrated_latents_are_unit_scale_and_decode_the_same():
    """Latent statistics normalise what the encoder makes without changing what decodes."""
    from worldplay.model.vae import RGBDVAE, load_vae_state
    vae = RGBDVAE(VAEConfig(width=64, height=32, pad_height=32, widths=(8, 8, 8), groups=4), seed=1).eval()
    x = torch.rand(6, 4, 32, 64) * 2 - 1
    with torch.no_grad():
        z = vae.encode_x(x)
        before = vae.decode_x(z)
        old = vae.calibrate(z)
        assert vae.calibrated
        zn = vae.encode_x(x)
        assert zn.mean(dim=(0, 2, 3)).abs().max() < 1e-4
        assert (zn.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3
        assert torch.allclose(vae.decode_x(zn), before, atol=1e-4)
        assert torch.allclose(vae.renormalize(z, *old), zn, atol=1e-4)
    fresh = RGBDVAE(vae.cfg, seed=1)
    load_vae_state(fresh, {k: v for k, v in vae.state_dict().items() if not k.startswith("latent_")})
    assert not fresh.calibrated                        # older checkpoints load as uncalibrated
