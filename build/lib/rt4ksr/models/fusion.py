"""Pure re-parameterization math on (weight, bias) pairs.

Every function takes and returns plain tensors and never touches a module, so each identity can be tested on
its own for exact equivalence. Kernels follow ``nn.Conv2d``: ``(out, in // groups, k, k)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

Conv = tuple[Tensor, Tensor]


def pad_kernel(weight: Tensor, size: int) -> Tensor:
    """Centre a small kernel (1x1) inside a ``size`` x ``size`` one, so it can be summed with a larger branch."""
    k = weight.shape[-1]
    if (size - k) % 2:
        raise ValueError(f"cannot centre a {k}x{k} kernel in {size}x{size}")
    p = (size - k) // 2
    return F.pad(weight, (p, p, p, p))


def identity_kernel(channels: int, size: int = 3, groups: int = 1, like: Tensor | None = None) -> Tensor:
    """Kernel of a convolution that returns its input: a skip connection written as a branch."""
    in_per_group = channels // groups
    w = torch.zeros(channels, in_per_group, size, size,
                    dtype=like.dtype if like is not None else None,
                    device=like.device if like is not None else None)
    idx = torch.arange(channels)
    w[idx, idx % in_per_group, size // 2, size // 2] = 1.0
    return w


def fuse_parallel(*branches: Conv) -> Conv:
    """Branches on the same input whose outputs are summed become one convolution (kernels padded to the largest)."""
    size = max(w.shape[-1] for w, _ in branches)
    weight = sum(pad_kernel(w, size) for w, _ in branches)
    bias = sum(b for _, b in branches)
    return weight, bias


def fuse_1x1_kxk(first: Conv, second: Conv) -> Conv:
    """A 1x1 convolution followed by a kxk one.

    Exact everywhere, borders included, only when the kxk convolution pads its input with the first bias
    (what a zero-padded 1x1 output would contain if the padding had passed through the 1x1 as well).
    """
    (w1, b1), (w2, b2) = first, second
    weight = F.conv2d(w2, w1.permute(1, 0, 2, 3))
    bias = b2 + (w2 * b1.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
    return weight, bias


def fuse_kxk_1x1(first: Conv, second: Conv) -> Conv:
    """A kxk convolution followed by a 1x1 one: the 1x1 mixes the kxk's output channels, exact everywhere."""
    (w1, b1), (w2, b2) = first, second
    m = w2.flatten(1)
    weight = torch.einsum("om,mikl->oikl", m, w1)
    bias = m @ b1 + b2
    return weight, bias


def fuse_sequence(*convs: Conv) -> Conv:
    """A chain of dense convolutions in which at most one is larger than 1x1 (e.g. 1x1 -> 3x3 -> 1x1)."""
    if sum(w.shape[-1] > 1 for w, _ in convs) > 1:
        raise ValueError("only one convolution in a fused sequence may be larger than 1x1")
    acc = convs[0]
    for nxt in convs[1:]:
        acc = fuse_1x1_kxk(acc, nxt) if acc[0].shape[-1] == 1 else fuse_kxk_1x1(acc, nxt)
    return acc


def scale_conv(conv: Conv, scale: Tensor) -> Conv:
    """Multiply a convolution's output channels by a per-channel factor (a learned residual scale)."""
    w, b = conv
    s = scale.reshape(-1)
    return w * s.view(-1, 1, 1, 1), b * s
