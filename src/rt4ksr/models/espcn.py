"""ESPCN (Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional
Neural Network", CVPR 2016, arXiv 1609.05158): three convolutions at LR resolution and a sub-pixel (PixelShuffle)
output layer.

Parameter names follow the widely used PyTorch port (github.com/yjn870/ESPCN-pytorch: ``first_part`` with the two
tanh layers, ``last_part`` the sub-pixel layer), so its published weights load strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from rt4ksr.models.design import Design

# the paper's layer spec: (f1, n1) = (5, 64), (f2, n2) = (3, 32), f3 = 3 with C * r^2 outputs
PUBLISHED = dict(features1=64, features2=32)


class ESPCN(Design):
    """conv 5x5 (64) + tanh -> conv 3x3 (32) + tanh -> conv 3x3 (C * scale^2) -> PixelShuffle(scale).

    The last layer has no activation (the paper's output is PS(W_L * f^{L-1} + b_L)). Any H x W works: every
    convolution keeps the size, so there is no padding grid (``multiple`` = 1).
    """

    design = "ESPCN"
    preset = "espcn"
    source = "ESPCN (Shi et al., CVPR 2016, arXiv 1609.05158); names of github.com/yjn870/ESPCN-pytorch"
    local = True
    multiple = 1

    def __init__(
        self,
        scale: int = 2,
        features1: int = 64,
        features2: int = 32,
        num_channels: int = 3,
        is_train: bool = True,
    ) -> None:
        super().__init__()
        self._record(locals())
        if scale < 1 or features1 < 1 or features2 < 1:
            raise ValueError(f"ESPCN needs scale, features1, features2 >= 1; got {scale}, {features1}, {features2}")
        self.first_part = nn.Sequential(
            nn.Conv2d(num_channels, features1, 5, padding=2), nn.Tanh(),
            nn.Conv2d(features1, features2, 3, padding=1), nn.Tanh(),
        )
        self.last_part = nn.Sequential(nn.Conv2d(features2, num_channels * scale**2, 3, padding=1),
                                       nn.PixelShuffle(scale))

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return self.last_part(self.first_part(x))

    def published_params(self) -> tuple[int, str] | None:
        cfg = self.config
        if any(cfg[k] != v for k, v in PUBLISHED.items()):
            return None
        c, r = cfg["num_channels"], cfg["scale"]
        count = (25 * c * 64 + 64) + (9 * 64 * 32 + 32) + (9 * 32 * c * r * r + c * r * r)
        return count, ("computed (weights + biases) from the layer spec of Shi et al., CVPR 2016 (arXiv 1609.05158) "
                       "Sec. 3: 5x5x64, 3x3x32, 3x3x(C*r^2)")

    @classmethod
    def matches(cls, state: Mapping[str, Tensor]) -> bool:
        return ("first_part.0.weight" in state and "first_part.2.weight" in state and "last_part.0.weight" in state
                and not any(k.startswith("mid_part.") for k in state))

    @classmethod
    def adapt_state(cls, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return dict(state)  # the port's names are ours

    @classmethod
    def config_of_state(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        first, second, last = state["first_part.0.weight"], state["first_part.2.weight"], state["last_part.0.weight"]
        c = first.shape[1]
        scale = round((last.shape[0] / c) ** 0.5)
        if c * scale**2 != last.shape[0]:
            raise ValueError(f"ESPCN last layer has {last.shape[0]} outputs: not num_channels ({c}) x scale^2")
        return {"scale": scale, "features1": first.shape[0], "features2": second.shape[0], "num_channels": c}
