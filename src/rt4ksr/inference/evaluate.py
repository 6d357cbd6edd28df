"""Benchmark evaluation shared by ``rt4ksr.eval`` and the training callback."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from rt4ksr.core import threads
from rt4ksr.data.testsets import MissingLRError, TestSet
from rt4ksr.quality.measures import y_psnr_ssim

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: TestSet, progress: bool = False) -> dict[str, float | int]:
    """Mean Y-PSNR / Y-SSIM over a set, one image at a time (sizes differ), on the model's device. A process of
    its own: nothing is gathered from other processes, even inside a distributed run."""
    p = next(model.parameters())
    device, dtype = p.device, p.dtype
    # ``SRQuality``'s figures (float64 sums over the images, divided by their count) without torchmetrics, which
    # costs ``rt4ksr eval`` a second of startup
    psnr_sum = ssim_sum = 0.0
    count = 0
    for i in tqdm(range(len(dataset)), desc=dataset.name, disable=not progress, leave=False):
        item = dataset[i]
        if device.type == "cpu":
            threads.follow_load()  # the free cores, image by image
        lr = item["lr"].to(device=device, dtype=dtype).unsqueeze(0) / 255.0
        ps, ss = y_psnr_ssim(model(lr).float(), item["hr"].unsqueeze(0).to(device), crop=dataset.scale)
        psnr_sum += sum(ps)
        ssim_sum += sum(ss)
        count += len(ps)
    n = max(count, 1)
    return {"psnr_y": psnr_sum / n, "ssim_y": ssim_sum / n, "n": count}


def evaluate_sets(model: nn.Module, testsets_dir: str | Path, names: Iterable[str], scale: int,
                        progress: bool = False, lr_cache_dir: str | Path | None = None,
                        ) -> dict[str, dict[str, float | int]]:
    """Every named set. A set without LR images for this scale gets them generated into ``lr_cache_dir``;
    without a cache it is skipped with a warning."""
    results = {}
    was_training = model.training
    model.eval()
    try:
        for name in names:
            try:
                ds = TestSet(testsets_dir, name, scale, lr_cache_dir, progress=progress)
            except MissingLRError as e:
                log.warning("skipping %s: %s", name, e)
                continue
            results[name] = evaluate(model, ds, progress=progress)
    finally:
        model.train(was_training)
    return results


def format_table(results: dict[str, dict[str, float | int]], scale: int) -> str:
    """A plain-text table of Y-PSNR / Y-SSIM per set."""
    w = max([10, *(len(name) for name in results)])  # degraded sets have long names
    lines = [f"{'set':<{w}} {'scale':>5} {'n':>4} {'PSNR-Y (dB)':>12} {'SSIM-Y':>8}"]
    for name, r in results.items():
        lines.append(f"{name:<{w}} {'x' + str(scale):>5} {r['n']:>4} {r['psnr_y']:>12.4f} {r['ssim_y']:>8.4f}")
    return "\n".join(lines)
