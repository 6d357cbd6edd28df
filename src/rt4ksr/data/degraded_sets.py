"""Degraded benchmark sets, named by their recipe and made from the HR test sets, byte for byte the same everywhere.

``set14_bicubic_n5_q75`` is Set14's MATLAB-bicubic LR with Gaussian noise of sigma 5/255, rounded to 8 bits,
then JPEG at quality 75 (Pillow's encoder, 4:2:0) and decoded back. The form is

    <set>[_b<sigma>]_bicubic[_n<sigma>][_q<quality>]

with the tokens in the order they are applied:

- ``b<sigma>``: Gaussian blur of the HR image, sigma in HR pixels (taps to 3 sigma, mirrored borders), rounded
  to 8 bits, before the downscaling;
- ``bicubic``: the exact MATLAB bicubic downscaling (mod-crop, ``imresize(HR, 1/scale)``), as the clean sets';
- ``n<sigma>``: Gaussian noise of sigma/255, independent per pixel and channel, rounded half up and saturated;
- ``q<quality>``: JPEG at quality 1..100 with Pillow's encoder, decoded back with Pillow.

The noise of each image comes from a PCG64 stream seeded by a hash of the set's canonical name, the scale and
the image's file stem, turned into normal deviates by Box-Muller in float64: numpy keeps PCG64's stream the same
across versions, so the LR bytes follow from the name alone, not from a numpy or torch release.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from rt4ksr.core.errors import ConfigValueError
from rt4ksr.data.degradation import imresize, mod_crop

FORM = "<set>[_b<blur sigma>]_bicubic[_n<noise sigma>][_q<JPEG quality>]"
EXAMPLE = "set14_bicubic_n5_q75"
_NUM = r"\d+(?:\.\d+)?"
_NAME = re.compile(rf"^(?P<base>[^_]+)(?:_b(?P<blur>{_NUM}))?_bicubic(?:_n(?P<noise>{_NUM}))?(?:_q(?P<quality>\d+))?$")


def _num(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class DegradedSet:
    """A degraded set's recipe: its base set and the optional blur, noise and JPEG steps."""

    base: str
    blur: float | None = None
    noise: float | None = None
    quality: int | None = None

    @property
    def canonical(self) -> str:
        """The name with numbers written one way (``n5.0`` -> ``n5``): what the noise seed is made from."""
        parts = [self.base]
        if self.blur is not None:
            parts.append(f"b{_num(self.blur)}")
        parts.append("bicubic")
        if self.noise is not None:
            parts.append(f"n{_num(self.noise)}")
        if self.quality is not None:
            parts.append(f"q{self.quality}")
        return "_".join(parts)


def form_hint(name: str) -> str:
    return (f"benchmark {name!r} is neither a test set folder nor a degraded set name of the form {FORM} "
            f"(tokens in this order, at least one of b/n/q; b: Gaussian blur sigma in HR pixels, n: noise sigma in "
            f"1/255, q: JPEG quality 1..100), e.g. {EXAMPLE} or set5_b1.2_bicubic_n10")


def parse_degraded(name: str) -> DegradedSet:
    """The recipe a name spells; ``ConfigValueError`` showing the valid form when it spells none."""
    m = _NAME.match(name)
    if m is None or not any(m.group(k) for k in ("blur", "noise", "quality")):
        raise ConfigValueError(form_hint(name))
    blur = float(m.group("blur")) if m.group("blur") else None
    noise = float(m.group("noise")) if m.group("noise") else None
    quality = int(m.group("quality")) if m.group("quality") else None
    if (blur is not None and blur <= 0) or (noise is not None and noise <= 0) or (
            quality is not None and not 1 <= quality <= 100):
        raise ConfigValueError(form_hint(name))
    return DegradedSet(m.group("base"), blur, noise, quality)


def image_seed(spec: DegradedSet, scale: int, stem: str) -> int:
    digest = hashlib.sha256(f"rt4ksr-degraded|{spec.canonical}|x{scale}|{stem}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def standard_normal(seed: int, n: int) -> np.ndarray:
    """n normal deviates (float64) from PCG64's raw 64-bit stream by Box-Muller: stable across numpy versions."""
    raw = np.random.PCG64(seed).random_raw(2 * ((n + 1) // 2))
    u = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53  # in (0, 1): the log never sees 0
    r, t = np.sqrt(-2.0 * np.log(u[0::2])), 2.0 * np.pi * u[1::2]
    z = np.empty(len(u))
    z[0::2], z[1::2] = r * np.cos(t), r * np.sin(t)
    return z[:n]


def _round_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """H x W x C uint8 -> uint8: a separable float64 Gaussian (taps to 3 sigma), half-sample mirrored borders."""
    r = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    out = img.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="symmetric")
        n = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
    return _round_u8(out)


def pillow_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode with Pillow (baseline, 4:2:0, the IJG tables at ``quality``) and decode back: H x W x 3 uint8."""
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False,
                              progressive=False)
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.array(im.convert("RGB"))


def degraded_lr(hr: np.ndarray, scale: int, spec: DegradedSet, stem: str) -> np.ndarray:
    """The LR image of one HR image (H x W x 3 uint8 RGB) under a recipe; ``stem`` names the image in the seed."""
    if spec.blur is not None:
        hr = gaussian_blur(hr, spec.blur)
    t = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))
    lr = imresize(mod_crop(t, scale), 1.0 / scale).numpy().transpose(1, 2, 0)
    if spec.noise is not None:
        z = standard_normal(image_seed(spec, scale, stem), lr.size).reshape(lr.shape)
        lr = _round_u8(lr.astype(np.float64) + spec.noise * z)
    if spec.quality is not None:
        lr = pillow_jpeg(np.ascontiguousarray(lr), spec.quality)
    return np.ascontiguousarray(lr)
