"""Timing deploy-form inference the way the product runs it: batch of frames, median of repeats."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

# LR sizes (H, W) whose output is 4K UHD: 1080p at x2, 720p at x3
UHD_INPUT = {2: (1080, 1920), 3: (720, 1280), 4: (540, 960)}


def uhd_input(scale: int) -> tuple[int, int]:
    return UHD_INPUT.get(scale, (2160 // scale, 3840 // scale))


def measure_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Wall times in ms of ``fn``; CUDA events (and a synchronize per repeat) on a GPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000.0)
    return times


@torch.no_grad()
def time_inference(model: nn.Module, size: tuple[int, int], device: torch.device, batch: int = 1,
                   half: bool | None = None, channels_last: bool | None = None, warmup: int = 10,
                   repeats: int = 50) -> dict[str, float]:
    """Median ms per batch and frames/s of a copy of ``model`` (the given model is not moved or cast).

    On CUDA the defaults are fp16 and channels_last, the deployment setting; on the CPU fp32.
    """
    cuda = device.type == "cuda"
    half = cuda if half is None else half
    channels_last = cuda if channels_last is None else channels_last
    m = copy.deepcopy(model).eval().to(device)
    dtype = torch.float16 if half else torch.float32
    m = m.to(dtype)
    g = torch.Generator(device="cpu").manual_seed(0)  # the global RNG stays untouched (exact resume)
    x = torch.rand(batch, 3, *size, generator=g).to(device=device, dtype=dtype)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = measure_ms(lambda: m(x), device, warmup, repeats)
    ms = statistics.median(times)
    return {"ms": ms, "fps": 1000.0 * batch / ms, "spread_ms": max(times) - min(times),
            "height": size[0], "width": size[1], "batch": batch,
            "dtype": "fp16" if half else "fp32", "device": torch.cuda.get_device_name(device) if cuda else "cpu"}
