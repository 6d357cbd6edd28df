"""Y-channel PSNR/SSIM as a torchmetrics ``Metric``: one implementation for validation, testing and evaluation."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from rt4ksr.quality.measures import y_psnr_ssim


class SRQuality(Metric):
    """Mean per-image Y-PSNR and Y-SSIM of a benchmark set, by the literature's convention.

    Each image is scored on its own (8-bit rounding, MATLAB Y channel, ``crop`` border pixels dropped, float64)
    and the set's figure is the mean over images, as papers report it. Sums and the image count are float64
    states that torchmetrics adds up across processes, so a set split over DDP ranks gives exactly the
    single-process mean. ``compute()`` returns ``{"psnr_y", "ssim_y", "n"}``.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, crop: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.crop = crop
        for name in ("psnr_sum", "ssim_sum", "count"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, sr: Tensor, hr: Tensor) -> None:
        """``sr``: the model's output in [0, 1]; ``hr``: the 8-bit (uint8) or [0, 1] reference; (N, 3, H, W)."""
        p, s = y_psnr_ssim(sr, hr, crop=self.crop)
        self.psnr_sum += sum(p)
        self.ssim_sum += sum(s)
        self.count += len(p)

    def compute(self) -> dict[str, Tensor]:
        n = self.count.clamp(min=1)
        return {"psnr_y": self.psnr_sum / n, "ssim_y": self.ssim_sum / n, "n": self.count}


def as_floats(result: dict[str, Tensor]) -> dict[str, float | int]:
    """A computed ``SRQuality`` as plain numbers, for JSON and tables."""
    return {"psnr_y": float(result["psnr_y"]), "ssim_y": float(result["ssim_y"]), "n": int(result["n"])}
