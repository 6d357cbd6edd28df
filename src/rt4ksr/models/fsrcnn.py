"""FSRCNN (Dong, Loy, Tang, "Accelerating the Super-Resolution Convolutional Neural Network", ECCV 2016,
arXiv 1608.00367): the whole network runs at LR resolution and a strided 9x9 deconvolution upsamples at the end.

Parameter names follow the widely used PyTorch port (github.com/yjn870/FSRCNN-pytorch: ``first_part``,
``mid_part``, ``last_part``), so its published weights load strictly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from rt4ksr.models.design import Design

PUBLISHED = dict(d=56, s=12, m=4)
PUBLISHED_WEIGHTS = 12_464  # 25d + sd + 9ms^2 + ds + 81d for one channel, (d, s, m) = (56, 12, 4)
DECONV = 9


class FSRCNN(Design):
    """5x5 feature extraction (d) -> 1x1 shrink (s) -> m 3x3 mappings -> 1x1 expand (d) -> 9x9 deconvolution,
    stride ``scale``, with a per-channel PReLU after every convolution but the last.

    Output size and alignment: the deconvolution has padding 4 and output padding ``scale - 1``, so an H x W input
    gives exactly (scale*H) x (scale*W) for any size (including 1x1), with no padding grid. The kernel's centre
    tap of LR pixel i lands on HR pixel ``scale * i``; the pixel-centre convention puts that LR pixel's centre at
    ``scale * i + (scale - 1) / 2``, a constant sub-pixel offset that the learned (unconstrained) 9x9 kernel
    absorbs in training, as in the paper's and the port's implementations.
    """

    design = "FSRCNN"
    preset = "fsrcnn"
    source = "FSRCNN (Dong, Loy, Tang, ECCV 2016, arXiv 1608.00367); names of github.com/yjn870/FSRCNN-pytorch"
    local = True
    multiple = 1

    def __init__(
        self,
        scale: int = 2,
        d: int = 56,
        s: int = 12,
        m: int = 4,
        num_channels: int = 3,
        is_train: bool = True,
    ) -> None:
        super().__init__()
        self._record(locals())
        if scale < 1 or d < 1 or s < 1 or m < 0:
            raise ValueError(f"FSRCNN needs scale, d, s >= 1 and m >= 0; got {scale}, {d}, {s}, {m}")
        self.first_part = nn.Sequential(nn.Conv2d(num_channels, d, 5, padding=2), nn.PReLU(d))
        mid: list[nn.Module] = [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            mid += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        mid += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.mid_part = nn.Sequential(*mid)
        self.last_part = nn.ConvTranspose2d(d, num_channels, DECONV, stride=scale, padding=DECONV // 2,
                                            output_padding=scale - 1)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return self.last_part(self.mid_part(self.first_part(x)))

    def receptive_radius(self) -> int:
        """LR pixels of context on each side that an output pixel needs: 2 (5x5) + m (3x3s) + the deconvolution's
        reach. HR pixel o = scale*q + r (0 <= r < scale) reads LR pixels i with |o - scale*i| <= 4, that is
        q + ceil((r - 4) / scale) <= i <= q + floor((r + 4) / scale); the deconvolution's radius is the largest
        distance from q over all r (2, 2, 1 LR pixels at x2, x3, x4)."""
        s, half = self.scale, DECONV // 2
        below = max((half - r) // s for r in range(s))  # q - i <= floor((4 - r) / s)
        above = max((r + half) // s for r in range(s))  # i - q <= floor((r + 4) / s)
        return 2 + self.config["m"] + max(below, above)

    def weight_count(self) -> int:
        """Kernel weights only (no biases, no PReLU slopes): what the paper counts."""
        return sum(mod.weight.numel() for mod in self.modules() if isinstance(mod, nn.Conv2d | nn.ConvTranspose2d))

    def published_params(self) -> tuple[int, str] | None:
        cfg = self.config
        if cfg["num_channels"] != 1 or any(cfg[k] != v for k, v in PUBLISHED.items()):
            return None
        return PUBLISHED_WEIGHTS, ("FSRCNN(56,12,4) on the Y channel, Dong et al. ECCV 2016 (arXiv 1608.00367): "
                                   "kernel weights only, 25d+sd+9ms^2+ds+81d; biases and PReLU slopes not counted "
                                   "(compare weight_count(), not the parameter count)")

    @classmethod
    def matches(cls, state: Mapping[str, Tensor]) -> bool:
        w = state.get("last_part.weight")
        return ("first_part.0.weight" in state and "first_part.1.weight" in state and "mid_part.0.weight" in state
                and w is not None and w.ndim == 4)

    @classmethod
    def adapt_state(cls, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return dict(state)  # the port's names are ours

    @classmethod
    def config_of_state(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        """d, s, m and the channel count. The scale is the deconvolution's stride, which no weight's shape holds:
        it is absent from the result, and the caller has to supply it."""
        first, shrink = state["first_part.0.weight"], state["mid_part.0.weight"]
        convs = [k for k in state if re.match(r"^mid_part\.\d+\.weight$", k) and state[k].ndim == 4]
        return {"d": first.shape[0], "s": shrink.shape[0], "m": len(convs) - 2, "num_channels": first.shape[1]}
