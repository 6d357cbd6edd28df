"""The operations of a degradation round on a batch: filtering, resizing, noise, JPEG and 8-bit rounding.

Each random operation takes its values from a ``Draws``, and skips the samples its host mask leaves out
(``on_rows``) instead of computing them and throwing them away.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from rt4ksr.data.degradation import imresize
from rt4ksr.data.jpeg import jpeg_codec
from rt4ksr.data.realworld.draws import Draws
from rt4ksr.data.realworld.options import RESIZE_KINDS, RESIZE_MODES, Round

MIN_SIDE = 4  # no intermediate image gets smaller than this, whatever the resize draws


def on_rows(x: Tensor, mask: Tensor, fn: Callable[[Tensor, Any, Any], Tensor]) -> Tensor:
    """``fn(subset, rows, host_rows)`` on the samples a host mask selects, no work spent on the others, which pass
    unchanged; ``rows`` index per-sample tensors on the device, ``host_rows`` the host masks."""
    if bool(mask.all()):
        return fn(x, slice(None), slice(None))
    host = mask.nonzero().flatten()
    if not len(host):
        return x
    rows = host.to(x.device, non_blocking=True)
    return x.index_copy(0, rows, fn(x.index_select(0, rows), rows, host))


def quantize(x: Tensor) -> Tensor:
    """Clamp to [0, 1] and round to 8-bit levels, as every LR image the network will meet is."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def filter_batch(x: Tensor, kernels: Tensor) -> Tensor:
    """kornia's per-sample filtering (one (K, K) kernel per sample), mirrored at the border as Real-ESRGAN's,
    replicated on images too small to mirror."""
    half = kernels.shape[-1] // 2
    border = "reflect" if min(x.shape[-2:]) > half else "replicate"
    return kornia.filters.filter2d(x, kernels, border_type=border)


def resize_batch(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """torch's resizes (no antialiasing, as Real-ESRGAN's: aliasing is one of the degradations), or ``matlab``:
    the antialiased bicubic of ``MatlabBicubic``, as the scalers of players and editors filter."""
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "matlab":
        return imresize(x, size=size)
    corners = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=size, mode=mode, **corners)


def random_resize(x: Tensor, d: Draws, spec: Round, base: tuple[int, int]) -> Tensor:
    """Up, down or keep (one draw per batch: a batch is one tensor), by a factor of ``base``, with a random mode."""
    kind = RESIZE_KINDS[d.host_choice(spec.resize_probs)]
    lo, hi = spec.resize_range
    f = d.host_uniform(1.0, hi) if kind == "up" else d.host_uniform(lo, 1.0) if kind == "down" else 1.0
    mode = RESIZE_MODES[d.host_choice(spec.resize_modes)]
    return resize_batch(x, (max(MIN_SIDE, int(base[0] * f)), max(MIN_SIDE, int(base[1] * f))), mode)


def poisson_noise(x: Tensor, d: Draws, gray: Tensor) -> Tensor:
    """Shot noise of 8-bit images, colour or (host mask ``gray``) the same in every channel from the luma.

    Real-ESRGAN counts each image's distinct levels to set the photon scale; a natural 8-bit crop has 129 to 256,
    which its rule rounds to 256, so 256 it is here, without the count's device synchronisation."""
    levels = 256.0
    img = quantize(x)

    def shot(v: Tensor) -> Tensor:
        return torch.poisson(v * levels, generator=d.gen) / levels - v

    def luma_shot(v: Tensor) -> Tensor:
        g = quantize(kornia.color.rgb_to_grayscale(v))
        return shot(g).expand(-1, 3, -1, -1)

    color = torch.zeros_like(img)
    color = on_rows(color, ~gray, lambda _, rows, host: shot(img[rows]))
    return on_rows(color, gray, lambda _, rows, host: luma_shot(img[rows]))


def add_noise(x: Tensor, d: Draws, noise_prob: float, gaussian_prob: float, sigma: tuple[float, float],
              poisson_scale: tuple[float, float], gray_prob: float) -> Tensor:
    """Gaussian (sigma in 1/255) or Poisson noise, per sample, colour or grey, clipped to [0, 1]."""
    n = x.shape[0]
    noisy, gaussian, gray = d.flags(n, noise_prob), d.flags(n, gaussian_prob), d.flags(n, gray_prob)
    sigmas = d.uniform(n, *sigma) / 255.0
    scales = d.uniform(n, *poisson_scale)

    def gaussian_noise(v: Tensor, rows: Any, host: Any) -> Tensor:
        z = d.randn(v.shape)
        z = torch.where(gray[host].to(v.device)[:, None, None, None], z[:, :1].expand_as(z), z)
        return (v + z * sigmas[rows][:, None, None, None]).clamp(0.0, 1.0)

    def shot_noise(v: Tensor, rows: Any, host: Any) -> Tensor:
        return (v + poisson_noise(v, d, gray[host]) * scales[rows][:, None, None, None]).clamp(0.0, 1.0)

    x = on_rows(x, noisy & gaussian, gaussian_noise)
    return on_rows(x, noisy & ~gaussian, shot_noise)


def random_jpeg(x: Tensor, d: Draws, prob: float, quality: tuple[float, float]) -> Tensor:
    """A libjpeg-strength JPEG round trip (``rt4ksr.data.jpeg``: 4:2:0, the IJG tables) on ``prob`` of the
    samples, at a quality per sample drawn uniformly among the integers of the range, on the device."""
    n = x.shape[0]
    lo, hi = math.ceil(quality[0]), math.floor(quality[1])
    if lo > hi:  # a range between two integers: its nearest one
        lo = hi = round(sum(quality) / 2)
    apply, q = d.flags(n, prob), d.integers(n, lo, hi)
    return on_rows(x, apply, lambda v, rows, host: jpeg_codec(v, q[rows]))
