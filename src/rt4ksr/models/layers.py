"""Small layers shared by the RTSRN blocks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

ACTIVATIONS = ("gelu", "lrelu", "relu")


def make_activation(act_type: str) -> nn.Module:
    """The released code's activations; lrelu keeps its 0.05 negative slope."""
    match act_type.lower():
        case "gelu":
            return nn.GELU()
        case "lrelu":
            return nn.LeakyReLU(0.05)
        case "relu":
            return nn.ReLU()
    raise ValueError(f"act_type must be one of {ACTIVATIONS}, got {act_type!r}")


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel (NAFNet's), eps 1e-6 as in the released weights."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # statistics in at least fp32: in fp16 the variance loses precision (and eps=1e-6 underflows)
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        mu = xf.mean(1, keepdim=True)
        var = (xf - mu).pow(2).mean(1, keepdim=True)
        y = (xf - mu) * torch.rsqrt(var + self.eps)
        y = y * self.weight.view(1, -1, 1, 1).to(y.dtype) + self.bias.view(1, -1, 1, 1).to(y.dtype)
        return y.to(x.dtype)


class ECA(nn.Module):
    """Efficient channel attention: a 1-D convolution across pooled channels, then a sigmoid gate.

    The released code multiplies the input twice (``ca(x) * x`` where ``ca`` already returns ``x * y``);
    here the gate is applied once, as the ECA paper defines it.
    """

    def __init__(self, channels: int, gamma: float = 1.0, b: int = 1) -> None:
        super().__init__()
        t = int(abs((math.log(channels, 2) + b) / gamma))
        k = t if t % 2 else t + 1
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = x.mean(dim=(2, 3))  # (N, C)
        y = self.conv(y.unsqueeze(1)).squeeze(1)
        return x * torch.sigmoid(y)[:, :, None, None]


class SimplifiedChannelAttention(nn.Module):
    """NAFNet's simplified channel attention (the ``squeeze`` option): global average pool, 1x1, multiply."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv(x.mean(dim=(2, 3), keepdim=True))


class SimpleGate(nn.Module):
    """NAFNet's activation-free gate: split the channels in two halves and multiply them."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


def pad_with_bias(x: Tensor, bias: Tensor) -> Tensor:
    """Pad a 1x1 convolution's output by one pixel filled with that convolution's bias.

    This is what the 1x1 would have produced on a zero-padded input, which makes the following 3x3 fusable
    with it exactly, borders included.
    """
    n, c, h, w = x.shape
    out = bias.view(1, -1, 1, 1).expand(n, c, h + 2, w + 2).clone()
    out[:, :, 1:-1, 1:-1] = x
    return out


class HighPass(nn.Module):
    """x minus its 5x5, sigma-1 Gaussian blur (reflect borders): the paper's notion of high frequency."""

    def forward(self, x: Tensor) -> Tensor:
        # imported here: only training and forget-gated models reach this, and kornia costs inference commands
        # a sixth of a second at startup (tests/test_startup.py)
        import kornia

        return x - kornia.filters.gaussian_blur2d(x, (5, 5), (1.0, 1.0), border_type="reflect")
