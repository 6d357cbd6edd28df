"""Image-quality metrics by the super-resolution literature's convention (BasicSR / MATLAB).

The output is clamped and rounded to 8 bits, converted to the Y channel of MATLAB ``rgb2ycbcr`` (BT.601 studio
range, not rounded), ``crop`` border pixels are dropped, and PSNR / SSIM (11x11 Gaussian window, sigma 1.5,
valid filtering) are computed in float64 per image. Papers average the per-image values over a set.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_Y_COEFFS = (65.481, 128.553, 24.966)


def to_uint8_range(x: Tensor) -> Tensor:
    """A [0, 1] image as the 8-bit file it would be saved to, in float64 [0, 255]."""
    return (x.double().clamp(0, 1) * 255.0).round()


def rgb_to_y(img: Tensor) -> Tensor:
    """MATLAB ``rgb2ycbcr`` luma of a [0, 255] RGB batch (N, 3, H, W), in [16, 235], shape (N, 1, H, W)."""
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"expected an (N, 3, H, W) RGB batch, got {tuple(img.shape)}")
    w = img.new_tensor(_Y_COEFFS).view(1, 3, 1, 1)
    return (img * w).sum(dim=1, keepdim=True) / 255.0 + 16.0


def _crop(x: Tensor, crop: int) -> Tensor:
    return x[..., crop:-crop, crop:-crop] if crop > 0 else x


def _check(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")


def psnr(a: Tensor, b: Tensor, crop: int = 0, data_range: float = 255.0) -> Tensor:
    """Per-image PSNR in dB of two (N, C, H, W) batches; identical images give +inf."""
    _check(a, b)
    mse = (_crop(a.double(), crop) - _crop(b.double(), crop)).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_taps(size: int = 11, sigma: float = 1.5) -> list[float]:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).tolist()


def _gaussian_filter(x: Tensor, taps: list[float]) -> Tensor:
    """The 2-D Gaussian of SSIM ('valid' filtering) as two 1-D passes of shifted sums: the same numbers as a
    11x11 convolution, in memory of the image's size (a float64 11x11 convolution on the CPU unfolds the image
    into a 121x larger buffer, about 1 GB for a 1024x1024 image, which costs more kernel time than the math)."""
    k = len(taps)
    h, w = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    rows = sum(t * x[..., i:i + h, :] for i, t in enumerate(taps))
    return sum(t * rows[..., :, i:i + w] for i, t in enumerate(taps))


def ssim(a: Tensor, b: Tensor, crop: int = 0, data_range: float = 255.0) -> Tensor:
    """Per-image SSIM (Wang et al.) of (N, C, H, W) batches, averaged over channels, valid filtering."""
    _check(a, b)
    a, b = _crop(a.double(), crop), _crop(b.double(), crop)
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after the crop, got {tuple(a.shape[-2:])}")
    taps = _gaussian_taps()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def filt(x: Tensor) -> Tensor:
        return _gaussian_filter(x, taps)

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).flatten(1).mean(1)


def y_psnr_ssim(sr: Tensor, hr: Tensor, crop: int) -> tuple[list[float], list[float]]:
    """The literature's Y-channel PSNR and SSIM of an SR batch in [0, 1] against 8-bit HR, per image."""
    sr_y = rgb_to_y(to_uint8_range(sr))
    hr_y = rgb_to_y(hr.double() if hr.dtype == torch.uint8 else to_uint8_range(hr))
    p = psnr(sr_y, hr_y, crop)
    s = ssim(sr_y, hr_y, crop)
    return [float(v) if math.isfinite(v) else float("inf") for v in p.tolist()], s.tolist()
