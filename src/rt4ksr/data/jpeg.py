"""A JPEG round trip on the device that compresses as hard as a real encoder.

kornia's ``jpeg_codec_differentiable`` replaces rounding with ``round(x) + (x - round(x))**3`` so that gradients
flow; that keeps part of every quantisation residual, and its images come out 0.3 to 0.7 dB closer to the
original than libjpeg's at the same quality (set14 LR; docs/degradations.md). A degradation needs no gradient but
needs the artefacts real files have, so this codec quantises exactly, the way libjpeg (Pillow, OpenCV, browsers)
does with its default settings:

- JFIF YCbCr on 8-bit levels (kornia's conversion), level shift by 128;
- 4:2:0 chroma: 2 x 2 averages down, the triangle ("fancy") filter up, on whole levels;
- 8 x 8 orthonormal DCT, the IJG tables of Annex K scaled by quality as ``jpeg_set_quality`` does (baseline);
- planes padded to whole blocks by repeating their last row and column, where libjpeg's encoder repeats them,
  and cropped back before upsampling, as its decoder does.

On set14's x2 LR images it gives Pillow's distortion to within 0.03 dB; 84-91% of its pixel values are within
one level of Pillow's, 0.4-0.7 levels apart on average (qualities 40-95; tests/test_jpeg.py,
docs/degradations.md). libjpeg computes in fixed point with its own rounding biases, this codec in float32;
images of 4 x 4 pixels or fewer can differ more.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-T T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance), in natural (row-major) order.
LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
        14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
CHROMA = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
          47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32


@functools.lru_cache(maxsize=8)
def _constants(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The DCT matrix and the two base tables on a device, made once: no host-to-device copy per batch."""
    return (dct_matrix(device), torch.tensor(LUMA, dtype=torch.float32, device=device).view(8, 8),
            torch.tensor(CHROMA, dtype=torch.float32, device=device).view(8, 8))


def quality_tables(quality: Tensor) -> tuple[Tensor, Tensor]:
    """(N, 8, 8) float32 luma and chroma quantisation tables for integer qualities 1..100 (one per sample, rounded
    and clamped), as libjpeg's ``jpeg_set_quality(quality, force_baseline=TRUE)`` makes them."""
    q = quality.float().round().clamp(1, 100)
    scale = torch.where(q < 50, torch.div(5000, q, rounding_mode="floor"), 200 - 2 * q)[:, None, None]
    _, luma, chroma = _constants(quality.device)
    return tuple(torch.div(t * scale + 50, 100, rounding_mode="floor").clamp(1, 255) for t in (luma, chroma))


def dct_matrix(device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """The 8 x 8 orthonormal DCT-II matrix: rows are frequencies; ``D @ block @ D.T`` is JPEG's forward DCT."""
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * 0.5
    d[0] = math.sqrt(1 / 8)
    return d.to(device=device, dtype=dtype)


@contextlib.contextmanager
def _full_fp32_matmul() -> Iterator[None]:
    """fp32 matrix products without TF32 (training sets "high"): TF32's 10-bit mantissa moves DCT coefficients
    of a few hundred by about one quantisation step at high qualities."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _pad_to(x: Tensor, multiple: int) -> Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="replicate")


def quantize_blocks(plane: Tensor, table: Tensor) -> Tensor:
    """An (N, C, H, W) level-shifted float32 plane through DCT, rounding to multiples of the sample's (N, 8, 8)
    table and the inverse DCT: what the decoder gets back. Edges are repeated to whole blocks and cropped after."""
    h, w = plane.shape[-2:]
    padded = _pad_to(plane, 8)
    n, c, hp, wp = padded.shape
    d = _constants(plane.device)[0]
    blocks = padded.reshape(n, c, hp // 8, 8, wp // 8, 8).transpose(3, 4)
    coef = d @ blocks @ d.T
    t = table[:, None, None, None]
    coef = torch.round(coef / t) * t
    return (d.T @ coef @ d).transpose(3, 4).reshape(n, c, hp, wp)[..., :h, :w]


def jpeg_codec(x: Tensor, quality: Tensor | float) -> Tensor:
    """Compress and decompress an RGB batch (N, 3, H, W) in [0, 1] at an integer quality (one per sample, or one
    for all) as libjpeg does with 4:2:0 chroma; any size. Returns 8-bit levels in x's dtype; computed in float32
    whatever the dtype or autocast, since half precision cannot hold DCT coefficients to a level."""
    n, _, h, w = x.shape
    quality = torch.as_tensor(quality, dtype=torch.float32, device=x.device).reshape(-1).expand(n)
    with torch.autocast(x.device.type, enabled=False), _full_fp32_matmul():
        rgb = torch.round(x.float().clamp(0.0, 1.0) * 255.0)
        ycc = kornia.color.rgb_to_ycbcr(rgb / 255.0) * 255.0
        ycc = torch.round(torch.cat([ycc[:, :1], ycc[:, 1:] + 0.5], dim=1))  # kornia centres chroma on 127.5
        luma_table, chroma_table = quality_tables(quality)
        y = quantize_blocks(ycc[:, :1] - 128.0, luma_table)
        # libjpeg widens full-resolution rows to whole chroma blocks before averaging, and repeats the last
        # averaged row below; the decoder keeps ceil(h / 2) x ceil(w / 2) chroma samples.
        chroma = F.pad(ycc[:, 1:], (0, -w % 16, 0, h % 2), mode="replicate")
        chroma = torch.round(F.avg_pool2d(chroma, 2))
        chroma = quantize_blocks(chroma - 128.0, chroma_table)[..., : -(-w // 2)]
        y = torch.round(y + 128.0).clamp(0.0, 255.0)
        chroma = torch.round(chroma + 128.0).clamp(0.0, 255.0)
        # libjpeg-turbo upsamples with the triangle filter, or repeats samples when chroma is 2 or fewer wide
        if chroma.shape[-1] > 2:
            chroma = torch.round(F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False))
        else:
            chroma = F.interpolate(chroma, scale_factor=2, mode="nearest")
        ycc = torch.cat([y, chroma[..., :h, :w] - 0.5], dim=1)
        out = torch.round(kornia.color.ycbcr_to_rgb(ycc / 255.0).clamp(0.0, 1.0) * 255.0) / 255.0
    return out.to(x.dtype)
