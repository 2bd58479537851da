"""Image metrics against analytic answers; PNG round trip; report labels."""

import math

import numpy as np
import pytest
import torch

from worldplay.errors import WorldplayError
from worldplay.eval.metrics import PSNR_CAP, STLPIPS_NAME, StLpips, format_psnr, gmsd, masked_psnr, psnr, ssim
from worldplay.png import decode_png, encode_png, tile


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


def _gmsd_reference(gen: np.ndarray, gt: np.ndarray) -> float:
    """GMSD of one (H, W, 3) uint8 pair written from Xue et al. 2014 with numpy loops, apart from
    the torch code: luma, 2x2 mean and keep every other pixel, zero-padded Prewitt / 3, std of GMS."""
    def grad_mag(img):
        y = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        h, w = y.shape[0] // 2 * 2, y.shape[1] // 2 * 2
        y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        p = np.pad(y, 1)
        gx = np.zeros_like(y)
        gy = np.zeros_like(y)
        for i in range(y.shape[0]):
            for j in range(y.shape[1]):
                win = p[i:i + 3, j:j + 3]
                gx[i, j] = (win[:, 0].sum() - win[:, 2].sum()) / 3
                gy[i, j] = (win[0, :].sum() - win[2, :].sum()) / 3
        return np.hypot(gx, gy)
    m_r, m_d = grad_mag(gt), grad_mag(gen)
    gms = (2 * m_r * m_d + 170.0) / (m_r ** 2 + m_d ** 2 + 170.0)
    return float(gms.std(ddof=1))


def _box_blur(a: torch.Tensor, r: int) -> torch.Tensor:
    x = a.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)
    return x.round().to(torch.uint8).permute(0, 2, 3, 1)


def test_gmsd_identical_zero_and_matches_paper_definition():
    a = _box_blur(_frames(2, 20, 26), 1)                           # some structure, not pure noise
    assert torch.all(gmsd(a, a) == 0)
    b = _box_blur(a, 1)
    got = gmsd(b, a)
    for k in range(2):
        assert float(got[k]) == pytest.approx(_gmsd_reference(b[k].numpy(), a[k].numpy()), rel=1e-5)
    odd = _frames(1, 19, 25)                                      # odd sizes drop the last row/column
    assert float(gmsd(odd, a[:1, :19, :25])) == pytest.approx(
        _gmsd_reference(odd[0].numpy(), a[0, :19, :25].numpy()), rel=1e-5)


def test_gmsd_grows_with_blur():
    a = _box_blur(_frames(2, 48, 64), 1)
    scores = [gmsd(_box_blur(a, r), a) for r in (1, 2, 4)]
    assert torch.all(scores[0] > 0) and torch.all(scores[0] < scores[1]) and torch.all(scores[1] < scores[2])


def test_metric_input_errors_name_the_problem():
    a = _frames()
    with pytest.raises(WorldplayError, match="shape"):
        psnr(a, a[:, :10])
    with pytest.raises(WorldplayError, match="uint8"):
        ssim(a.float(), a.float())
    with pytest.raises(WorldplayError, match="GMSD needs"):
        gmsd(a[:, :4, :4], a[:, :4, :4])


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
