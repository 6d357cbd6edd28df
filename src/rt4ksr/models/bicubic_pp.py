"""Bicubic++ (Bilecen & Ayazoglu, "Bicubic++: Slim, Slimmer, Slimmest - Designing an Industry-Grade
Super-Resolution Network", CVPRW 2023, arXiv 2305.02126; NTIRE 2023 Real-Time SR Track 2 (x3) winner).

It follows the released model (github.com/aselsan-research-imaging-team/bicubic-plusplus, ``models/SR_models.py``
and ``pretrained/bicubic_pp_x3.pth``): a stride-2 3x3 convolution to half resolution, two 3x3 convolutions whose
output is added back to the first one's (a local skip; there is no global bicubic skip), a 3x3 convolution to
(2 * scale)^2 * C channels and PixelShuffle(2 * scale). LeakyReLU(0.1) after the first three convolutions; no
biases (the pruned, bias-removed form the authors release). The same names (``conv0``, ``conv1``, ``conv2``,
``conv_out``), so the released weights load strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from rt4ksr.models.design import Design

PUBLISHED = dict(scale=3, channels=32, bias=False, num_channels=3)
KEYS = ("conv0.weight", "conv1.weight", "conv2.weight", "conv_out.weight")


class BicubicPP(Design):
    """conv 3x3 stride 2 -> LReLU -> conv 3x3 -> LReLU -> conv 3x3 -> LReLU (+ first output) -> conv 3x3 to
    (2 * scale)^2 * C -> PixelShuffle(2 * scale).

    Any H x W is accepted: the input is padded (replicate) to even sides, so that the stride-2 convolution halves
    it exactly, and the output is cropped back to exactly (scale*H) x (scale*W).
    """

    design = "Bicubic++"
    preset = "bicubic_pp"
    source = ("Bicubic++ (Bilecen & Ayazoglu, arXiv 2305.02126, NTIRE 2023 RTSR Track 2); released "
              "github.com/aselsan-research-imaging-team/bicubic-plusplus")
    local = True
    multiple = 2

    def __init__(
        self,
        scale: int = 3,
        channels: int = 32,
        bias: bool = False,
        num_channels: int = 3,
        is_train: bool = True,
    ) -> None:
        super().__init__()
        self._record(locals())
        if scale < 1 or channels < 1:
            raise ValueError(f"Bicubic++ needs scale, channels >= 1; got {scale}, {channels}")
        c = channels
        self.conv0 = nn.Conv2d(num_channels, c, 3, stride=2, padding=1, bias=bias)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=bias)
        self.conv_out = nn.Conv2d(c, num_channels * (2 * scale) ** 2, 3, padding=1, bias=bias)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: Tensor) -> Tensor:
        padded = self._pad_to_grid(x)
        h, w = x.shape[-2:]
        x = padded
        x0 = self.act(self.conv0(x))
        x2 = self.act(self.conv2(self.act(self.conv1(x0)))) + x0
        out = F.pixel_shuffle(self.conv_out(x2), 2 * self.scale)
        return out[..., : h * self.scale, : w * self.scale]

    def published_params(self) -> tuple[int, str] | None:
        if any(self.config[k] != v for k, v in PUBLISHED.items()):
            return None
        return 50_400, ("released x3 model of Bilecen & Ayazoglu (arXiv 2305.02126): "
                        "aselsan-research-imaging-team/bicubic-plusplus pretrained/bicubic_pp_x3.pth, 50,400 weights")

    @classmethod
    def matches(cls, state: Mapping[str, Tensor]) -> bool:
        """Exactly the released four convolutions (optionally with biases), nothing else."""
        names = set(state)
        return set(KEYS) <= names <= set(KEYS) | {k.replace("weight", "bias") for k in KEYS}

    @classmethod
    def adapt_state(cls, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return dict(state)  # the released names are ours

    @classmethod
    def config_of_state(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        first, last = state["conv0.weight"], state["conv_out.weight"]
        c_in = first.shape[1]
        up = round((last.shape[0] / c_in) ** 0.5)
        if c_in * up * up != last.shape[0] or up % 2:
            raise ValueError(f"Bicubic++ output convolution has {last.shape[0]} outputs: not num_channels ({c_in}) "
                             "x (2 * scale)^2")
        return {"scale": up // 2, "channels": first.shape[0], "bias": "conv0.bias" in state, "num_channels": c_in}
