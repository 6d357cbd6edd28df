"""Timing inference the way the product runs it, set up once for every timer in the package: a private copy of
the model in the deployment's dtype and memory format, a seeded input (the global RNG stays untouched, so a
resumed run is exact), warm-up, then the median and spread of repeats (CUDA events on a GPU)."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn


def deployment_setting(device: torch.device, half: bool | None = None, channels_last: bool | None = None
                       ) -> tuple[torch.dtype, bool]:
    """(dtype, channels_last) of inference on ``device``: fp16 and channels_last on CUDA, fp32 elsewhere, unless
    told otherwise."""
    cuda = device.type == "cuda"
    half = cuda if half is None else half
    return (torch.float16 if half else torch.float32), (cuda if channels_last is None else channels_last)


def timed_copy(model: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool) -> nn.Module:
    """A copy of ``model`` in eval mode on ``device`` in ``dtype`` (the caller's weights are not moved or cast)."""
    m = copy.deepcopy(model).eval().to(device=device, dtype=dtype)
    return m.to(memory_format=torch.channels_last) if channels_last else m


def timing_input(batch: int, size: tuple[int, int], device: torch.device, dtype: torch.dtype,
                 channels_last: bool = False) -> Tensor:
    """A seeded random LR batch of ``size`` (H, W), drawn on the CPU so it is the same on every device."""
    x = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


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


def summarize_ms(times: list[float], batch: int = 1) -> dict[str, float]:
    """Median ms per batch, spread (max - min) and frames per second."""
    ms = statistics.median(times)
    return {"ms": ms, "spread_ms": max(times) - min(times), "fps": 1000.0 * batch / ms}


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@torch.no_grad()
def time_inference(model: nn.Module, size: tuple[int, int], device: torch.device, batch: int = 1,
                   half: bool | None = None, channels_last: bool | None = None, warmup: int = 10,
                   repeats: int = 50) -> dict[str, Any]:
    """Median ms per batch and frames/s of a copy of ``model`` at ``size``, in the deployment setting of
    ``device`` (fp16 and channels_last on CUDA, fp32 on the CPU) unless told otherwise."""
    dtype, cl = deployment_setting(device, half, channels_last)
    m = timed_copy(model, device, dtype, cl)
    x = timing_input(batch, size, device, dtype, cl)
    return {**summarize_ms(measure_ms(lambda: m(x), device, warmup, repeats), batch),
            "height": size[0], "width": size[1], "batch": batch,
            "dtype": "fp16" if dtype == torch.float16 else "fp32", "device": device_name(device)}
