"""IMDN in the form that won the AIM 2019 constrained-SR challenge, as KAIR and the NTIRE 2023 Real-Time SR
challenge repository release it (eduardzamfir/NTIRE23-RTSR, ``demo/models/imdn.py`` + ``modules/_imdn.py``).

This simplified form differs from the ACM MM 2019 paper's IMDN: its blocks have no contrast-aware channel
attention (the released ``imdn_X4.pth`` holds five convolutions per block and nothing else), so every output pixel
depends on a bounded window of the input and the network is ``local``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from rt4ksr.models.design import Design

# the AIM 2019 configuration of the released x4 weights
PUBLISHED = dict(scale=4, channels=64, num_blocks=8, num_channels=3)
PUBLISHED_PARAMS = 893_936
# the released KAIR Sequential (``model.`` already stripped by the loader) -> our names: a ShortcutBlock (``1.sub``)
# around the blocks and the body's last conv, the upsampler's conv as the Sequential's third module
RELEASED_PREFIXES = {"0.": "head.", "1.sub.": "body.", "2.": "upsample.0."}


class IMDB(nn.Module):
    """Information multi-distillation block: three times a 3x3 conv whose output is split into a distilled quarter
    (kept) and the rest (refined further), a last 3x3 conv on the rest, then a 1x1 conv over the four distilled
    parts and a residual. Submodule names follow the released ``IMDBlock`` (conv1..3 are conv + LeakyReLU)."""

    def __init__(self, channels: int, negative_slope: float = 0.05, distill_rate: float = 0.25) -> None:
        super().__init__()
        self.distilled = int(channels * distill_rate)
        self.remaining = channels - self.distilled
        d, r = self.distilled, self.remaining

        def conv_act(c_in: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, channels, 3, padding=1), nn.LeakyReLU(negative_slope, inplace=True))

        self.conv1 = conv_act(channels)
        self.conv2 = conv_act(r)
        self.conv3 = conv_act(r)
        self.conv4 = nn.Conv2d(r, d, 3, padding=1)
        self.conv1x1 = nn.Conv2d(4 * d, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        split = (self.distilled, self.remaining)
        d1, r = torch.split(self.conv1(x), split, dim=1)
        d2, r = torch.split(self.conv2(r), split, dim=1)
        d3, r = torch.split(self.conv3(r), split, dim=1)
        return x + self.conv1x1(torch.cat((d1, d2, d3, self.conv4(r)), dim=1))


class IMDN(Design):
    """3x3 head -> (IMDB x ``num_blocks`` -> 3x3 conv) with a long residual -> 3x3 conv + PixelShuffle.

    Works on any H x W (all convolutions keep the size), so there is no padding grid (``multiple`` = 1). Nothing
    re-parameterizes: the deploy form is the training form, and ``is_train`` is accepted and ignored.
    """

    design = "IMDN"
    preset = "imdn"
    source = ("IMDN (Hui et al., ACM MM 2019, arXiv 1909.11856) in its AIM 2019 constrained-SR form as released in "
              "github.com/eduardzamfir/NTIRE23-RTSR demo/models/imdn.py (KAIR)")
    local = True  # the released blocks have no contrast-aware channel attention: purely convolutional
    multiple = 1

    def __init__(
        self,
        scale: int = 2,
        channels: int = 64,
        num_blocks: int = 8,
        negative_slope: float = 0.05,
        num_channels: int = 3,
        is_train: bool = True,
    ) -> None:
        super().__init__()
        self._record(locals())
        if scale < 1 or channels < 4 or num_blocks < 1:
            raise ValueError(f"IMDN needs scale >= 1, channels >= 4, num_blocks >= 1; got {scale}, {channels}, "
                             f"{num_blocks}")
        self.head = nn.Conv2d(num_channels, channels, 3, padding=1)
        self.body = nn.Sequential(*(IMDB(channels, negative_slope) for _ in range(num_blocks)),
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.upsample = nn.Sequential(nn.Conv2d(channels, num_channels * scale**2, 3, padding=1),
                                      nn.PixelShuffle(scale))

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        feats = self.head(x)
        return self.upsample(feats + self.body(feats))

    def published_params(self) -> tuple[int, str] | None:
        cfg = self.config
        if any(cfg[k] != v for k, v in PUBLISHED.items()):
            return None
        return PUBLISHED_PARAMS, ("the released x4 weights of the AIM 2019 constrained-SR IMDN (KAIR form): "
                                  "github.com/eduardzamfir/NTIRE23-RTSR demo/model_zoo/imdn_X4.pth, 86 tensors")

    @classmethod
    def _released(cls, state: Mapping[str, Tensor]) -> bool:
        return "0.weight" in state and "1.sub.0.conv1x1.weight" in state and "1.sub.0.conv1.0.weight" in state

    @classmethod
    def matches(cls, state: Mapping[str, Tensor]) -> bool:
        if cls._released(state):
            return True
        return ("head.weight" in state and "body.0.conv1.0.weight" in state and "body.0.conv4.weight" in state
                and "body.0.conv1x1.weight" in state and "upsample.0.weight" in state)

    @classmethod
    def adapt_state(cls, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if not cls._released(state):
            return dict(state)
        out = {}
        for k, v in state.items():
            old = next((p for p in RELEASED_PREFIXES if k.startswith(p)), None)
            out[k if old is None else RELEASED_PREFIXES[old] + k[len(old):]] = v
        return out

    @classmethod
    def config_of_state(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        state = cls.adapt_state(state)
        head, up = state["head.weight"], state["upsample.0.weight"]
        channels, num_channels = head.shape[0], head.shape[1]
        num_blocks = len({k.split(".")[1] for k in state if re.match(r"^body\.\d+\.conv1x1\.weight$", k)})
        scale = round((up.shape[0] / num_channels) ** 0.5)
        if num_channels * scale**2 != up.shape[0]:
            raise ValueError(f"IMDN upsampler has {up.shape[0]} outputs: not num_channels ({num_channels}) x scale^2")
        return {"scale": scale, "channels": channels, "num_blocks": num_blocks, "num_channels": num_channels}
