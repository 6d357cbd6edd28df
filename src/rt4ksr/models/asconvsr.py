"""AsConvSR (Guo et al., "AsConvSR: Fast and Lightweight Super-Resolution Network with Assembled Convolutions",
arXiv 2305.03387; NTIRE 2023 Real-Time SR Track 1 winner): PixelUnshuffle(2) -> conv -> Assembled Block -> conv ->
PixelShuffle(2 * scale), plus the input upsampled by repetition (nearest) as a global skip.

The Assembled Block holds a control module (global average pooling -> FC -> ReLU -> FC -> softmax over E experts
with a temperature) and three assembled convolutions. Each assembled convolution owns a bank of E kernels; the
control module's coefficients mix, per image and per output channel, the E experts into the kernel that image is
convolved with. Kernels therefore depend on the whole input (``local`` = False), and a batch runs as one grouped
convolution with a different kernel per sample.

What the paper leaves open here (its text was not reachable from this project's tools; the authors' MindSpore code
at gitee.com/mindspore/models/tree/master/research/cv/AsConvSR is not mirrored, and no official PyTorch code or
weights exist):

- the number of experts E, the control module's hidden width and the feature width. The public re-implementations
  (e.g. github.com/doantienthongbku/AsConvSR-TorchLighting ``Assembled_conv.py``) use 32 features, one control
  module shared by the three convolutions, hidden = features // 4 without biases, coefficients per output channel,
  temperature 30 (DyConv's), banks with biases, and E = 3 or 4 (about 0.1 M parameters). The paper's 2.35 M
  parameters, at 32 features, needs E of about 84: the default ``experts=83`` gives 2,341,616 parameters (0.36 %
  under 2.35 M; E = 84 gives 2,369,616), so ``published_params`` returns None: no configuration of this
  description reproduces the figure exactly;
- whether activations sit between the assembled convolutions (the re-implementations have none, which makes the
  network linear for each image): ``activation`` defaults to ReLU after each assembled convolution ("none" gives
  the re-implementations' network). Activations have no parameters, so the count does not depend on it.

Parameter names follow those re-implementations (``conv1``, ``assemble.control_module.net.{0,2}``,
``assemble.weight{1,2,3}``, ``assemble.bias{1,2,3}``, ``conv2``), so their state dicts load strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rt4ksr.models.design import Design

NUM_CONVS = 3  # assembled convolutions in the block
ACTIVATIONS = ("relu", "none")


class ControlModule(nn.Module):
    """Global average pooling -> 1x1 (C -> C / ratio) -> ReLU -> 1x1 (-> C_out * E) -> softmax(/T) over E.

    Returns (N, C_out, E): for every image and output channel, the weights of the E kernel-bank experts.
    """

    def __init__(self, channels: int, out_channels: int, experts: int, temperature: float, ratio: int) -> None:
        super().__init__()
        hidden = max(1, channels // ratio)
        self.experts, self.temperature = experts, temperature
        # 1x1 convolutions on the pooled (N, C, 1, 1) tensor: the re-implementations' FC layers and their names
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(hidden, out_channels * experts, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        logits = self.net(F.adaptive_avg_pool2d(x, 1)).flatten(1)  # (N, C_out * E), channel-major
        return torch.softmax(logits.view(x.shape[0], -1, self.experts) / self.temperature, dim=-1)


class AssembledBlock(nn.Module):
    """Three 3x3 assembled convolutions whose kernels, per image and output channel, are the control module's
    softmax mix of E kernel-bank experts; they share one control module (fed the block's input)."""

    def __init__(self, channels: int, experts: int, temperature: float, ratio: int, activation: str) -> None:
        super().__init__()
        self.channels, self.experts = channels, experts
        self.control_module = ControlModule(channels, channels, experts, temperature, ratio)
        for i in range(1, NUM_CONVS + 1):
            w = torch.empty(experts, channels, channels, 3, 3)
            for e in range(experts):  # each expert a conv-like init (kaiming uniform, as nn.Conv2d)
                nn.init.kaiming_uniform_(w[e], a=5**0.5)
            bound = 1 / (channels * 9) ** 0.5
            setattr(self, f"weight{i}", nn.Parameter(w))
            setattr(self, f"bias{i}", nn.Parameter(torch.empty(experts, channels).uniform_(-bound, bound)))
        self.act = nn.ReLU() if activation == "relu" else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        coeff = self.control_module(x).to(x.dtype)  # (N, C_out, E)
        if torch.jit.is_tracing():  # exported graphs (ONNX, TorchScript): kernels of a known shape, image by image
            return torch.cat([self._one(x[b:b + 1], coeff[b]) for b in range(n)])
        out = x.reshape(1, n * c, h, w)
        for i in range(1, NUM_CONVS + 1):
            bank, bias = getattr(self, f"weight{i}"), getattr(self, f"bias{i}")
            # per-image kernels (N * C_out, C_in, 3, 3): sample b's output channel o mixes bank[:, o] by coeff[b, o]
            kernel = torch.einsum("boe,eoikl->boikl", coeff, bank).reshape(n * c, c, 3, 3)
            out = self.act(F.conv2d(out, kernel, torch.einsum("boe,eo->bo", coeff, bias).reshape(-1),
                                    padding=1, groups=n))
        return out.reshape(n, c, h, w)

    def _one(self, x: Tensor, coeff: Tensor) -> Tensor:
        """One image with its (C_out, E) mix: the same arithmetic with a dense kernel, which exporters can write
        (they refuse a convolution whose kernel shape depends on the batch). An export runs the batch size it was
        traced with."""
        for i in range(1, NUM_CONVS + 1):
            bank, bias = getattr(self, f"weight{i}"), getattr(self, f"bias{i}")
            x = self.act(F.conv2d(x, torch.einsum("oe,eoikl->oikl", coeff, bank),
                                  torch.einsum("oe,eo->o", coeff, bias), padding=1))
        return x


class AsConvSR(Design):
    """PixelUnshuffle(2) -> conv 3x3 -> Assembled Block -> conv 3x3 -> PixelShuffle(2 * scale), plus nearest
    (repeat) upsampling of the input.

    Any H x W is accepted: the input is padded (replicate) to even sides and the output cropped back to exactly
    (scale*H) x (scale*W). A batch of different images gives each image the output it has alone (per-sample
    kernels); padding an odd input does change its global pooling slightly, as any padding would.
    """

    design = "AsConvSR"
    preset = "asconvsr"
    source = ("AsConvSR (Guo et al., arXiv 2305.03387, NTIRE 2023 RTSR Track 1); names of the public "
              "re-implementations (github.com/doantienthongbku/AsConvSR-TorchLighting); E chosen near 2.35 M")
    local = False
    multiple = 2

    def __init__(
        self,
        scale: int = 2,
        channels: int = 32,
        experts: int = 83,
        temperature: float = 30.0,
        ratio: int = 4,
        activation: str = "relu",
        num_channels: int = 3,
        is_train: bool = True,
    ) -> None:
        super().__init__()
        self._record(locals())
        if scale < 1 or channels < 1 or experts < 1 or ratio < 1 or temperature <= 0:
            raise ValueError(f"AsConvSR needs scale, channels, experts, ratio >= 1 and temperature > 0; got "
                             f"{scale}, {channels}, {experts}, {ratio}, {temperature}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.conv1 = nn.Conv2d(num_channels * 4, channels, 3, padding=1)
        self.assemble = AssembledBlock(channels, experts, temperature, ratio, activation)
        self.conv2 = nn.Conv2d(channels, num_channels * (2 * scale) ** 2, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        padded = self._pad_to_grid(x)
        h, w = x.shape[-2:]
        x = padded
        feats = self.assemble(self.conv1(F.pixel_unshuffle(x, 2)))
        out = F.pixel_shuffle(self.conv2(feats), 2 * self.scale)
        out = out + F.interpolate(x, scale_factor=self.scale, mode="nearest")  # "repeat upscaling"
        return out[..., : h * self.scale, : w * self.scale]

    def published_params(self) -> tuple[int, str] | None:
        """None: the paper reports 2.35 M parameters, and no configuration of the description reconstructed here
        gives that (the closest, the default E = 83, has 2,341,616); see the module docstring."""
        return None

    @classmethod
    def matches(cls, state: Mapping[str, Tensor]) -> bool:
        return ("assemble.control_module.net.0.weight" in state and "assemble.weight1" in state
                and "conv1.weight" in state and "conv2.weight" in state)

    @classmethod
    def adapt_state(cls, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return dict(state)  # the re-implementations' names are ours

    @classmethod
    def config_of_state(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        head, tail, bank = state["conv1.weight"], state["conv2.weight"], state["assemble.weight1"]
        hidden = state["assemble.control_module.net.0.weight"].shape[0]
        c_in, channels = head.shape[1] // 4, head.shape[0]
        up = round((tail.shape[0] / c_in) ** 0.5)
        if head.shape[1] != 4 * c_in or c_in * up * up != tail.shape[0] or up % 2:
            raise ValueError(f"AsConvSR convolutions of {tuple(head.shape)} and {tuple(tail.shape)} fit no "
                             "PixelUnshuffle(2) / PixelShuffle(2 * scale) network")
        return {"scale": up // 2, "channels": channels, "experts": bank.shape[0], "ratio": max(1, channels // hidden),
                "num_channels": c_in}
