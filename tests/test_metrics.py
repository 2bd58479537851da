"""Image metrics against analytic answers; PNG round trip; report labels."""

import math

import pytest
import torch

from worldplay.errors import WorldplayError
from worldplay.eval.metrics import (PSNR_CAP, STLPIPS_NAME, StLpips, format_psnr, masked_psnr, psnr,
                                    ssim)
from worldplay.eval.png import decode_png, encode_png, tile


def _frames(n=2, h=48, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)


def test_psnr_identical_is_capped():
    a = _frames()
    p = psnr(a, a)
    assert torch.all(p == PSNR_CAP)
    assert "capped" in format_psnr(float(p[0]))


def test_psnr_uniform_offset_matches_formula():
    a = torch.full((1, 32, 32, 3), 100, dtype=torch.uint8)
    b = a + 10                                                  # every channel off by 10/255
    expected = -10 * math.log10((10 / 255) ** 2)
    assert float(psnr(b, a)[0]) == pytest.approx(expected, abs=1e-4)
    assert format_psnr(expected) == f"{expected:.2f}"


def test_masked_psnr_only_counts_mask():
    a = torch.full((1, 16, 16, 3), 50, dtype=torch.uint8)
    b = a.clone()
    b[:, :8] = 0                                                # top half differs
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[:, 8:] = True                                          # bottom half: identical there
    assert float(masked_psnr(b, a, mask)[0]) == PSNR_CAP
    assert math.isnan(float(masked_psnr(b, a, torch.zeros_like(mask))[0]))


def test_ssim_identical_one_and_falls_with_noise():
    a = _frames()
    assert torch.allclose(ssim(a, a), torch.ones(2), atol=1e-6)
    g = torch.Generator().manual_seed(1)
    noise = torch.randint(-1, 2, a.shape, generator=g)
    scores = [ssim((a.int() + k * noise).clamp(0, 255).to(torch.uint8), a) for k in (10, 40, 120)]
    assert torch.all(scores[0] < 1) and torch.all(scores[0] > scores[1]) and torch.all(scores[1] > scores[2])


def test_metric_input_errors_name_the_problem():
    a = _frames()
    with pytest.raises(WorldplayError, match="shape"):
        psnr(a, a[:, :10])
    with pytest.raises(WorldplayError, match="uint8"):
        ssim(a.float(), a.float())


def test_st_lpips_reports_why_missing():
    m = StLpips()
    if m.available:   # only where stlpips-pytorch and its weights are installed
        a = _frames()
        assert float(m(a, a).max()) == pytest.approx(0.0, abs=1e-6)
    else:
        assert m.reason.startswith("n/a (")
        with pytest.raises(WorldplayError, match=STLPIPS_NAME):
            m(_frames(), _frames())


def test_png_round_trip_and_tile():
    a, b = _frames(2, 20, 30)
    img = tile([[a, b], [b]], gap=2)
    assert img.shape == (42, 62, 3)
    back = decode_png(encode_png(img))
    assert torch.equal(back, img)
