"""Data-side throughput: HR crops/s per loader worker (PNG and packed), degradation + augmentation time per
batch on each device, and how far each downscaler lands from the benchmark's MATLAB LR files."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler

from rt4ksr.core.stats import timed
from rt4ksr.data.datamodule import SRDataModule
from rt4ksr.data.degradation import KorniaBicubic, MatlabBicubic, mod_crop
from rt4ksr.data.testsets import TestSet
from rt4ksr.inference.timing import measure_for
from rt4ksr.quality.measures import psnr


def loader_crops_per_s(dm: SRDataModule, packed: bool, crops: int, batch_size: int = 16) -> float:
    """Crops/s of one worker process in steady state (the DataLoader's own overhead included).

    The sampler draws with replacement for the whole measurement, so a small training set never ends an
    epoch mid-way: a worker restart per epoch would be timed otherwise, which training with persistent
    workers does not pay."""
    dm.packed, dm.train_dataset = packed, None
    dm.setup("fit")
    sampler = RandomSampler(dm.train_dataset, replacement=True, num_samples=crops + 2 * batch_size)
    loader = DataLoader(dm.train_dataset, batch_size=batch_size, sampler=sampler, num_workers=1)
    it = iter(loader)
    next(it)  # worker start-up and first decode excluded
    n, t0 = 0, time.perf_counter()
    while n < crops:
        n += next(it)["hr"].shape[0]
    return n / (time.perf_counter() - t0)


def time_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 3) -> tuple[float, float]:
    """Median and spread (the inter-quartile range) in ms of ``repeats`` calls of ``fn`` on ``device``."""
    s = timed(fn, repeats, warmup, measure_for(device))
    return s.median, s.iqr


def degradation_fidelity(testsets_dir: str, names: list[str], scale: int) -> dict[str, float]:
    """Mean RGB PSNR of each downscaler's LR against the MATLAB LR files."""
    downscalers = {
        "matlab_bicubic (ours)": MatlabBicubic(scale),
        "kornia_bicubic": KorniaBicubic(scale),
        "torch_interpolate_antialias": lambda hr: F.interpolate(
            mod_crop(hr, scale), scale_factor=1 / scale, mode="bicubic", antialias=True).clamp(0, 1),
    }
    out: dict[str, list[float]] = {k: [] for k in downscalers}
    for name in names:
        ds = TestSet(testsets_dir, name, scale)
        for i in range(len(ds)):
            item = ds[i]
            hr, lr = item["hr"][None].float() / 255, item["lr"][None].double()
            for k, f in downscalers.items():
                got = (f(hr).double().clamp(0, 1) * 255).round()
                out[k].append(float(psnr(got, lr).clamp(max=100)))
    return {k: sum(v) / len(v) for k, v in out.items()}
