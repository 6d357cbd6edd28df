"""The network's global skip (nearest or bicubic upsampling of the input) as convolution weights.

For an integer scale, each upsampled value is a fixed mix of nearby input pixels, so on the feature grid of
an unshuffled input the skip is a small convolution: the last Triton kernel runs it on the tensor cores, and
exported graphs (ONNX, TorchScript) carry it as a grouped convolution instead of a cubic ``Resize``, which ONNX
Runtime runs 30x slower than the whole network. Pure PyTorch, tested against ``F.interpolate`` in float64.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _cubic(t: float, a: float = -0.75) -> list[float]:
    """torch's bicubic weights of taps -1, 0, 1, 2 at fractional offset t (upsample_bicubic2d, a = -0.75)."""
    def near(x: float) -> float:
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def skip_weights(mode: str, scale: int, down: int, channels: int = 3) -> tuple[int, Tensor]:
    """The global skip ``F.interpolate(x, scale_factor=scale, mode=mode)`` as a convolution on the feature grid.

    Output value (c, i, j) of feature pixel (h, w), in PixelShuffle(scale * down) order, is a fixed mix of
    input pixels near (h * down, w * down): a K x K conv over ``pixel_unshuffle(x, down)``, whose input is
    replicate-padded (as the network pads its input; torch clamps its bicubic taps the same way). Returns K
    and the float64 weight (K * K taps, channels * down², channels * (scale * down)²) in the kernels' layout.
    """
    up = scale * down
    taps: list[list[tuple[int, float]]] = []  # per output sub-row: (raw offset from h * down, weight)
    for i in range(up):
        if mode == "nearest":
            taps.append([(i // scale, 1.0)])
        elif mode == "bicubic":
            src = (i + 0.5) / scale - 0.5
            base = math.floor(src)
            taps.append([(base + m, wt) for m, wt in zip(range(-1, 3), _cubic(src - base), strict=True)])
        else:
            raise ValueError(f"no skip weights for mode {mode!r}")
    reach = max(abs(off // down) for row in taps for off, _ in row)
    k = 2 * reach + 1
    weight = torch.zeros(k * k, channels * down * down, channels * up * up, dtype=torch.float64)
    for c in range(channels):
        for i, j in itertools.product(range(up), range(up)):
            co = (c * up + i) * up + j
            for (ry, wy), (rx, wx) in itertools.product(taps[i], taps[j]):
                dh, a = divmod(ry, down)
                dw, b = divmod(rx, down)
                weight[(dh + reach) * k + dw + reach, (c * down + a) * down + b, co] += wy * wx
    return k, weight


def skip_kernel(mode: str, scale: int, down: int, channels: int = 3) -> Tensor:
    """``skip_weights`` as the weight of a grouped convolution, one group per channel: (channels * (scale *
    down)², down², K, K), float64."""
    k, w = skip_weights(mode, scale, down, channels)
    up2, d2 = (scale * down) ** 2, down * down
    weight = w.reshape(k, k, channels * d2, channels * up2).permute(3, 2, 0, 1)  # (out, in, k, k)
    return torch.cat([weight[c * up2:(c + 1) * up2, c * d2:(c + 1) * d2] for c in range(channels)]).contiguous()


def skip_conv(x: Tensor, kernel: Tensor, scale: int, down: int) -> Tensor:
    """``F.interpolate(x, scale_factor=scale, mode=mode)`` computed by ``kernel = skip_kernel(mode, ...)`` on the
    replicate-padded, unshuffled input; ``x``'s sides are multiples of ``down``. The same values up to float
    rounding (1e-6 in fp32), in plain pad, conv and shuffle operations."""
    channels, r = x.shape[1], kernel.shape[-1] // 2
    padded = F.pad(x, (r * down,) * 4, mode="replicate")
    unshuffled = F.pixel_unshuffle(padded, down) if down > 1 else padded
    out = F.conv2d(unshuffled, kernel.to(dtype=x.dtype, device=x.device), groups=channels)
    return F.pixel_shuffle(out, scale * down)
