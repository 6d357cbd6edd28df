"""Upscaling one picture: the input's bit depth, gray and alpha kept, then resized to ``outscale``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rt4ksr.data.io import Picture, read_picture, write_picture
from rt4ksr.inference.upscaler import Upscaler
from rt4ksr.inference.upscaling.options import OutputOptions


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``img`` (H x W [x C], uint8/uint16) at ``size`` (height, width): Lanczos enlarging, area shrinking."""
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    shrink = h < img.shape[0]
    out = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)
    return out.reshape(h, w, *img.shape[2:])


def output_size(size: tuple[int, int], scale: int, outscale: float | None) -> tuple[int, int]:
    """(height, width) of the output: the model's scale, or ``outscale`` x the input (rounded)."""
    factor = scale if outscale is None else outscale
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


def _single_channel(up: Upscaler, plane: np.ndarray) -> np.ndarray:
    """A gray plane (H x W) through the 3-channel model, as a neutral gray: the mean of the output channels
    (the network tints gray by a few levels per channel; the mean removes the tint)."""
    sr = up.run(up.to_tensor(np.repeat(plane[:, :, None], 3, axis=2)))
    return up.to_array(sr.float().mean(dim=1, keepdim=True), plane.dtype)[0, :, :, 0]


def upscale_picture(up: Upscaler, pic: Picture, alpha: str = "model", outscale: float | None = None) -> Picture:
    """The upscaled picture, with the input's depth, channels and alpha."""
    size = output_size(pic.size, up.scale, outscale)
    color = _single_channel(up, pic.color[:, :, 0])[:, :, None] if pic.gray else up(pic.color)
    color = resize(color, size)
    a = None
    if pic.alpha is not None:
        if pic.alpha.min() == pic.alpha.max():  # uniform (often fully opaque): nothing to upscale
            a = np.full(size, pic.alpha.flat[0], pic.alpha.dtype)
        elif alpha == "model":
            a = resize(_single_channel(up, pic.alpha), size)
        else:
            a = cv2.resize(pic.alpha, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    return Picture(color, a)


def upscale_image(up: Upscaler, src: Path, dst: Path, opts: OutputOptions | None = None) -> Path:
    """One image file to ``dst`` (its suffix picks the format), written atomically."""
    opts = opts or OutputOptions()
    pic = read_picture(src)
    return write_picture(dst, upscale_picture(up, pic, opts.alpha, opts.outscale), opts.quality)
