"""RTSRN building blocks, one class per design of the paper's ablation.

A re-parameterizable module has ``to_deploy()``, which returns its inference form built from fused weights.
``rt4ksr.models.reparameterize`` calls it bottom-up on a private copy of the whole model, so ``to_deploy`` may
reuse the copy's sub-modules but every fused tensor it writes is new: the training weights never change.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from rt4ksr.models import fusion
from rt4ksr.models.layers import (
    ECA,
    LayerNorm2d,
    SimpleGate,
    SimplifiedChannelAttention,
    make_activation,
    pad_with_bias,
)


def conv_params(conv: nn.Conv2d) -> fusion.Conv:
    """A convolution's (weight, bias), with a zero bias where it has none, detached from autograd."""
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    return w, b


def conv_from(weight: Tensor, bias: Tensor, groups: int = 1) -> nn.Conv2d:
    """A 'same'-padded convolution holding copies of the given tensors."""
    out_c, in_per_group, k, _ = weight.shape
    conv = nn.Conv2d(in_per_group * groups, out_c, k, padding=k // 2, groups=groups,
                     device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return conv


class ExpandResConv(nn.Module):
    """The released ``ResBlock``: a 3x3 convolution trained as expand 1x1 -> 3x3 (+identity) -> reduce 1x1, +x.

    The 3x3 sees its input padded with the expand bias, so the whole block fuses into one 3x3 convolution that
    is exact at the borders too. Attribute names match the official checkpoints.
    """

    def __init__(self, channels: int, ratio: int = 2) -> None:
        super().__init__()
        mid = int(ratio * channels)
        self.expand_conv = nn.Conv2d(channels, mid, 1)
        self.fea_conv = nn.Conv2d(mid, mid, 3)
        self.reduce_conv = nn.Conv2d(mid, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand_conv(x)
        z = self.fea_conv(pad_with_bias(y, self.expand_conv.bias)) + y
        return self.reduce_conv(z) + x

    def to_deploy(self) -> nn.Conv2d:
        expand, fea, reduce = (conv_params(c) for c in (self.expand_conv, self.fea_conv, self.reduce_conv))
        mid = fusion.fuse_parallel(fusion.fuse_1x1_kxk(expand, fea), expand)
        w, b = fusion.fuse_kxk_1x1(mid, reduce)
        c = w.shape[0]
        return conv_from(*fusion.fuse_parallel((w, b), (fusion.identity_kernel(c, 1, like=w), torch.zeros_like(b))))


class RepConv3x3(nn.Module):
    """A multi-branch 3x3 convolution: 3x3 + 1x1 + (1x1 -> 3x3) + identity, summed; fuses into one 3x3."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv3x3 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv1x1 = nn.Conv2d(in_channels, out_channels, 1)
        self.seq_1x1 = nn.Conv2d(in_channels, out_channels, 1)
        self.seq_3x3 = nn.Conv2d(out_channels, out_channels, 3)
        self.identity = in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.seq_1x1(x)
        out = self.conv3x3(x) + self.conv1x1(x) + self.seq_3x3(pad_with_bias(y, self.seq_1x1.bias))
        return out + x if self.identity else out

    def to_deploy(self) -> nn.Conv2d:
        branches = [
            conv_params(self.conv3x3),
            conv_params(self.conv1x1),
            fusion.fuse_1x1_kxk(conv_params(self.seq_1x1), conv_params(self.seq_3x3)),
        ]
        if self.identity:
            w = self.conv3x3.weight
            branches.append((fusion.identity_kernel(w.shape[0], 3, like=w), torch.zeros_like(self.conv3x3.bias)))
        return conv_from(*fusion.fuse_parallel(*branches))


def channel_attention(channels: int, squeeze: bool, eca_gamma: float) -> nn.Module:
    """The optional attention after a block's convolutions: ECA (eca_gamma > 0), then NAFNet's SCA (squeeze)."""
    layers = []
    if eca_gamma > 0:
        layers.append(ECA(channels, gamma=eca_gamma))
    if squeeze:
        layers.append(SimplifiedChannelAttention(channels))
    if not layers:
        return nn.Identity()
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


class BaseBlock(nn.Module):
    """The paper's plain baseline block: conv3x3 -> act -> conv3x3, plus the input (EDSR-style, no norm)."""

    def __init__(self, channels: int, act_type: str = "gelu", layernorm: bool = False, residual: bool = True,
                 squeeze: bool = False, eca_gamma: float = 0.0) -> None:
        super().__init__()
        self.norm = LayerNorm2d(channels) if layernorm else nn.Identity()
        self.conv1 = self.make_conv(channels)
        self.act = make_activation(act_type)
        self.conv2 = self.make_conv(channels)
        self.attn = channel_attention(channels, squeeze, eca_gamma)
        self.residual = residual

    def make_conv(self, channels: int) -> nn.Module:
        return nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.attn(self.conv2(self.act(self.conv1(self.norm(x)))))
        return y + x if self.residual else y


class DConvBaseBlock(BaseBlock):
    """The baseline with depthwise-separable convolutions (depthwise 3x3, then pointwise 1x1)."""

    def make_conv(self, channels: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
                             nn.Conv2d(channels, channels, 1))


class RepBaseBlock(BaseBlock):
    """The baseline whose 3x3 convolutions are trained as multi-branch ``RepConv3x3``."""

    def make_conv(self, channels: int) -> nn.Module:
        return RepConv3x3(channels, channels)


class LayerScale(nn.Module):
    """A learned per-channel residual scale (NAFNet's beta/gamma), zero-initialised."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class NAFBlock(nn.Module):
    """The full NAFNet block: LN, 1x1, depthwise 3x3, SimpleGate, SCA, 1x1, scaled residual; then an FFN.

    SimpleGate replaces the activation, so ``act_type`` and ``residual`` do not apply; ``squeeze=False``
    drops the SCA. In deploy form the residual scales are folded into the 1x1 convolutions before them.
    """

    def __init__(self, channels: int, act_type: str = "gelu", layernorm: bool = True, residual: bool = True,
                 squeeze: bool = True, eca_gamma: float = 0.0, expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        dw, ffn = expand * channels, ffn_expand * channels
        self.norm1 = LayerNorm2d(channels) if layernorm else nn.Identity()
        self.conv1 = nn.Conv2d(channels, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.sg = SimpleGate()
        self.attn = channel_attention(dw // 2, squeeze, eca_gamma)
        self.conv3 = nn.Conv2d(dw // 2, channels, 1)
        self.beta = LayerScale(channels)
        self.norm2 = LayerNorm2d(channels) if layernorm else nn.Identity()
        self.conv4 = nn.Conv2d(channels, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, channels, 1)
        self.gamma = LayerScale(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(self.norm1(x))
        y = self.conv3(self.attn(self.sg(self.conv2(y))))
        x = x + self.beta(y)
        y = self.conv5(self.sg(self.conv4(self.norm2(x))))
        return x + self.gamma(y)

    def to_deploy(self) -> NAFBlock:
        new = copy.deepcopy(self)
        new.conv3 = conv_from(*fusion.scale_conv(conv_params(self.conv3), self.beta.scale.detach()))
        new.conv5 = conv_from(*fusion.scale_conv(conv_params(self.conv5), self.gamma.scale.detach()))
        new.beta, new.gamma = nn.Identity(), nn.Identity()
        return new


class SimplifiedNAFBlock(nn.Module):
    """The released RT4KSR block: LayerNorm2d -> ExpandResConv -> act -> optional attention -> optional +x."""

    def __init__(self, channels: int, act_type: str = "gelu", layernorm: bool = True, residual: bool = False,
                 squeeze: bool = False, eca_gamma: float = 0.0, expand: int = 2) -> None:
        super().__init__()
        self.norm = LayerNorm2d(channels) if layernorm else nn.Identity()
        self.conv1 = ExpandResConv(channels, expand)
        self.act = make_activation(act_type)
        self.ca = channel_attention(channels, squeeze, eca_gamma)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.ca(self.act(self.conv1(self.norm(x))))
        return y + x if self.residual else y
