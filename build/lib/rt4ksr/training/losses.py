"""Training losses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from rt4ksr.models.layers import HighPass


class L1Loss(nn.L1Loss):
    """The released recipe's pixel L1."""


class L1AuxLoss(nn.Module):
    """L1 plus ``weight`` x L1 between the high-frequency parts of SR and HR (x minus its Gaussian blur).

    The released code names an auxiliary loss (``--aux-loss --loss-weight``) but does not define it. The
    paper's notion of high frequency is x - blur(x), the same high-pass its model feeds the HF branch, so
    the auxiliary term puts extra weight on edges and texture, where bicubic fails and PSNR is lost.
    """

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight
        self.highpass = HighPass()

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return F.l1_loss(sr, hr) + self.weight * F.l1_loss(self.highpass(sr), self.highpass(hr))
