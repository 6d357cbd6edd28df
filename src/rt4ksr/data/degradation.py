"""MATLAB-exact bicubic resizing in torch, batched, on the tensor's device.

The benchmark LR images were made with MATLAB ``imresize(HR, 1/s, 'bicubic')``: an antialiased cubic kernel
(a = -0.5) stretched by 1/scale when shrinking, half-sample-symmetric borders, rows resized before columns,
and, for uint8 images, rounding after each one-dimensional pass. Training on anything else shifts the input
distribution away from the test one. This module reproduces it bit for bit on uint8 images.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn


def cubic(x: Tensor) -> Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


BORDERS = ("replicate", "symmetric")


def _raw_contributions(in_len: int, out_len: int, scale: float, antialias: bool,
                       device: torch.device | None) -> tuple[Tensor, Tensor]:
    """Unmapped 0-based input positions (may lie outside the image) and normalised float64 weights."""
    width = 4.0 / scale if (scale < 1 and antialias) else 4.0
    x = torch.arange(1, out_len + 1, dtype=torch.float64, device=device)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    ind = left[:, None] + torch.arange(taps, dtype=torch.float64, device=device)[None]  # 1-based
    dist = u[:, None] - ind
    w = scale * cubic(scale * dist) if (scale < 1 and antialias) else cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    nz = (w != 0).any(dim=0).nonzero().flatten()  # drop all-zero outer taps; inner ones keep indices consecutive
    lo, hi = int(nz[0]), int(nz[-1]) + 1
    return (ind[:, lo:hi] - 1).long(), w[:, lo:hi]


def _map_border(ind: Tensor, in_len: int, border: str) -> Tensor:
    if border == "replicate":
        return ind.clamp(0, in_len - 1)
    aux = torch.cat([torch.arange(in_len, device=ind.device), torch.arange(in_len - 1, -1, -1, device=ind.device)])
    return aux[torch.remainder(ind, 2 * in_len)]


def contributions(in_len: int, out_len: int, scale: float, antialias: bool = True, border: str = "replicate",
                  device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """MATLAB's ``contributions``: for every output sample, the input indices (0-based) and the normalised
    float64 weights, each (out_len, taps).

    ``border`` says which input sample stands for an index outside the image. ``replicate`` (the nearest edge
    sample) reproduces the benchmark LR files of the literature bit for bit; ``symmetric`` is the
    half-sample mirror of the ``imresize.m`` source (``aux = [1:n, n:-1:1]``); they differ only in the
    outermost output rows and columns.
    """
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    ind, w = _raw_contributions(in_len, out_len, scale, antialias, device)
    return _map_border(ind, in_len, border), w


@functools.lru_cache(maxsize=64)
def resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True, border: str = "replicate",
                  dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> Tensor:
    """The (out_len, in_len) matrix of one 1-D pass: row i holds output i's weights at its input indices.

    A banded matmul beats a gather or a one-channel strided convolution on every device (25 ms against
    about 230 ms for a batch of 64 256x256 crops on 2 CPU cores), and it serves every factor.
    """
    ind, w = contributions(in_len, out_len, scale, antialias, border, device=device)
    m = torch.zeros(out_len, in_len, dtype=torch.float64, device=device)
    m.scatter_add_(1, ind, w)  # border taps that map to the same sample add up
    return m.to(dtype)


def _resize_dim(x: Tensor, dim: int, out_len: int, scale: float, antialias: bool, border: str,
                quantize: bool) -> Tensor:
    """One 1-D pass along ``dim`` (-2 rows, -1 columns); ``quantize`` rounds to integers in 0..255."""
    m = resize_matrix(x.shape[dim], out_len, scale, antialias, border, x.dtype, x.device)
    y = torch.matmul(m, x) if dim == -2 else torch.matmul(x, m.T)
    if quantize:  # MATLAB's uint8 conversion: round half away from zero, saturate
        y = torch.floor(y + 0.5).clamp_(0, 255)
    return y


def imresize(x: Tensor, scale: float | None = None, size: tuple[int, int] | None = None, antialias: bool = True,
             quantize: bool = False, border: str = "replicate") -> Tensor:
    """MATLAB ``imresize(x, scale, 'bicubic')`` on the last two dimensions of a tensor of any batch shape.

    - uint8 input: computed in float64 with rounding after each pass; returns uint8 identical to MATLAB's.
    - float input (values in [0, 1]): computed in the input's dtype; ``quantize`` rounds to 8-bit levels after
      each pass as the uint8 path does, so online-degraded training inputs look like the benchmark files.

    The output size is ``ceil(in * scale)``, as in MATLAB; mod-crop first for exact integer factors.
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if x.ndim < 2:
        raise ValueError(f"expected a tensor with at least 2 dimensions, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if size is None:
        sh = sw = float(scale)
        size = (math.ceil(h * sh), math.ceil(w * sw))
    else:
        sh, sw = size[0] / h, size[1] / w
    is_u8 = x.dtype == torch.uint8
    if not (is_u8 or x.is_floating_point()):
        raise TypeError(f"imresize expects uint8 or floating-point input, got {x.dtype}")
    # 8-bit work runs on the 0..255 scale: the x2 weights are dyadic, so the sums are exact and ties round
    # as in MATLAB; uint8 input computes in float64, float input (x = k/255 is exact x 255) in its own dtype
    q = is_u8 or quantize
    y = x.double() if is_u8 else (x * 255.0 if quantize else x)
    # MATLAB resizes the dimension with the smaller scale first (rows on a tie)
    order = [(-2, size[0], sh), (-1, size[1], sw)]
    if sw < sh:
        order.reverse()
    for dim, n, s in order:
        y = _resize_dim(y, dim, n, s, antialias, border, q)
    if is_u8:
        return y.to(torch.uint8)
    return y / 255.0 if quantize else y


def mod_crop(x: Tensor, scale: int) -> Tensor:
    """Crop the last two dimensions to multiples of ``scale``, as the benchmark makers did before resizing."""
    h, w = x.shape[-2:]
    return x[..., : h - h % scale, : w - w % scale]


class MatlabBicubic(nn.Module):
    """The default degradation: exact MATLAB bicubic downscaling of an HR batch, on its device."""

    def __init__(self, scale: int, quantize: bool = True) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"MATLAB bicubic degradation supports integer scales 2, 3 and 4, got {scale}")
        self.scale, self.quantize = scale, quantize

    def forward(self, hr: Tensor) -> Tensor:
        return imresize(mod_crop(hr, self.scale), 1.0 / self.scale, quantize=self.quantize)


class KorniaBicubic(nn.Module):
    """kornia's antialiased bicubic resize, kept selectable for comparison (38-43 dB away from MATLAB's files)."""

    def __init__(self, scale: int, quantize: bool = True) -> None:
        super().__init__()
        self.scale, self.quantize = scale, quantize

    def forward(self, hr: Tensor) -> Tensor:
        import kornia  # here: only this comparison needs it, and eval's startup skips it

        hr = mod_crop(hr, self.scale)
        h, w = hr.shape[-2:]
        lr = kornia.geometry.transform.resize(hr, (h // self.scale, w // self.scale), interpolation="bicubic",
                                              antialias=True).clamp(0, 1)
        return (lr * 255).round() / 255 if self.quantize else lr
