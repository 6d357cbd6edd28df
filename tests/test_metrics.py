"""Metrics against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from rt4ksr.quality.measures import psnr, rgb_to_y, ssim, to_uint8_range, y_psnr_ssim


def test_y_of_pure_colours_matches_matlab_rgb2ycbcr():
    px = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.float64)
    y = rgb_to_y(px.T.reshape(1, 3, 1, 5)).flatten().tolist()
    assert y == pytest.approx([16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], abs=1e-12)


def test_psnr_of_known_mse():
    a = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    assert psnr(a, a + 10).item() == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-12)


def test_psnr_crops_the_border():
    a = torch.zeros(1, 1, 8, 8)
    b = a.clone()
    b[..., 0, :] = 50
    assert math.isinf(psnr(a, b, crop=2).item())
    assert math.isfinite(psnr(a, b, crop=0).item())


def _ssim_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    """Direct per-window weighted statistics, no filtering library."""
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_the_definition():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (15, 14)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).round()
    got = ssim(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]).item()
    assert got == pytest.approx(_ssim_by_hand(a, b), abs=1e-12)


def test_ssim_of_constant_images_closed_form():
    a = torch.full((1, 1, 12, 12), 100.0)
    b = torch.full((1, 1, 12, 12), 120.0)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b).item() == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1), abs=1e-12)
    assert ssim(a, a).item() == pytest.approx(1.0, abs=1e-12)


def test_ssim_too_small_image_is_an_error():
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.zeros(1, 1, 12, 12), torch.zeros(1, 1, 12, 12), crop=1)


def test_mismatched_shapes_are_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


def test_output_is_quantized_to_8_bits_before_the_metric():
    assert to_uint8_range(torch.tensor([-0.2, 0.0, 0.5, 1.3, 0.1])).tolist() == [0, 0, 128, 255, 26]
    hr = torch.full((1, 3, 16, 16), 128, dtype=torch.uint8)
    sr = torch.full((1, 3, 16, 16), 128.4 / 255)  # rounds to 128: identical
    p, s = y_psnr_ssim(sr, hr, crop=2)
    assert math.isinf(p[0]) and s[0] == pytest.approx(1.0)
