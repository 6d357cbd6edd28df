"""The degradations' JPEG codec against libjpeg (through Pillow): same tables, same strength, nearly the same
pixels; any size, one quality per sample, on the tensor's device."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from rt4ksr.data.jpeg import dct_matrix, jpeg_codec, quality_tables

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def picture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A deterministic 8-bit RGB test picture with what JPEG finds hard: edges, texture, colour and smooth ramps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 5.0) * np.cos(yy / 7.0)], axis=-1)
    base[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (h / 4) ** 2] = [0.9, 0.2, 0.1]  # a sharp-edged red disc
    base += 0.12 * np.sin(xx * 1.3 + yy * 0.7)[..., None]  # fine texture
    base += rng.normal(0.0, 0.03, base.shape)
    return np.round(np.clip(base, 0.0, 1.0) * 255).astype(np.uint8)


def pillow_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def ours(img: np.ndarray, quality: int, device: str = "cpu") -> np.ndarray:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).to(device)
    y = jpeg_codec(x, torch.tensor([float(quality)], device=device))
    return np.round(y[0].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_tables_are_libjpegs_at_every_quality():
    qualities = torch.arange(1, 101, dtype=torch.float32)
    luma, chroma = quality_tables(qualities)
    for q in range(1, 101):
        buf = io.BytesIO()
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, "JPEG", quality=q)
        written = Image.open(buf).quantization  # natural (row-major) order
        assert luma[q - 1].flatten().int().tolist() == list(written[0]), q
        assert chroma[q - 1].flatten().int().tolist() == list(written[1]), q


def test_dct_is_orthonormal():
    d = dct_matrix(torch.device("cpu"), torch.float64)
    torch.testing.assert_close(d @ d.T, torch.eye(8, dtype=torch.float64))


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 95])
def test_compresses_as_hard_as_libjpeg_and_nearly_to_its_pixels(quality):
    img = picture()
    ref, mine = pillow_jpeg(img, quality), ours(img, quality)
    assert abs(psnr(img, mine) - psnr(img, ref)) < 0.1  # the same strength
    assert psnr(ref, mine) > 38.0
    assert np.mean(np.abs(ref.astype(int) - mine.astype(int)) <= 1) > 0.7  # integer vs float DCT


@pytest.mark.parametrize("device", DEVICES)
def test_any_size_and_one_quality_per_sample(device):
    imgs = [picture(37, 53, seed=s) for s in range(3)]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div(255).to(device)
    qualities = torch.tensor([20.0, 60.0, 95.0], device=device)
    batch = jpeg_codec(x, qualities)
    assert batch.shape == x.shape and batch.device.type == device
    assert torch.equal(torch.round(batch * 255) / 255, batch)  # 8-bit levels, as a decoder returns
    for i in range(3):
        alone = jpeg_codec(x[i : i + 1], float(qualities[i]))  # a plain number is one quality for all
        assert ((batch[i : i + 1] - alone).abs() > 1.5 / 255).float().mean() < 0.01  # ties may round apart
        ref = pillow_jpeg(imgs[i], int(qualities[i]))
        assert abs(psnr(imgs[i], ours(imgs[i], int(qualities[i]), device)) - psnr(imgs[i], ref)) < 0.15


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 4), (4, 6), (9, 16), (16, 9), (17, 33)])
def test_small_and_odd_sizes_match_libjpeg(size):
    """Edges repeated where libjpeg repeats them, chroma repeated instead of filtered when it is 2 samples
    wide or less (images of 4 pixels or less: libjpeg-turbo's rule)."""
    img = picture(*size, seed=3)
    for quality in (30, 90):
        ref, mine = pillow_jpeg(img, quality), ours(img, quality)
        # whole 16 x 16 images of this picture differ by 1.1-1.7 levels on average (fixed against floating
        # point); a misplaced edge rule costs far more
        assert np.abs(ref.astype(int) - mine.astype(int)).mean() < 2.5, (size, quality)


def test_half_precision_and_autocast_give_the_fp32_result():
    x = torch.from_numpy(picture(32, 48)).permute(2, 0, 1)[None].float().div(255)
    ref = jpeg_codec(x, 75)
    out = jpeg_codec(x.bfloat16(), 75)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() <= 1 / 255  # only bf16's rounding of the output levels
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(jpeg_codec(x, 75), ref)
