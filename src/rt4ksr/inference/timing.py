"""The setup of a timing, as the product runs it: a private copy of the model in the deployment's dtype and memory
format, a seeded input (the global RNG stays untouched, so a resumed run is exact), and the CUDA-event measure.

The statistics and the rounds are ``rt4ksr.core.stats`` (``Stats``, ``interleaved``): every timer of the package
and its scripts goes through them; ``time_inference`` is the single-model case the training callback uses.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from rt4ksr.core.stats import Measure, timed, wall_ms


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


def timing_batch(batch: int, size: tuple[int, int], device: torch.device, dtype: torch.dtype,
                 channels_last: bool = False) -> Tensor:
    """A seeded random LR batch of ``size`` (H, W), drawn on the CPU so it is the same on every device (the size
    itself comes from ``rt4ksr.core.scenario.timing_size``)."""
    x = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def cuda_ms(fn: Callable[[], object], iters: int = 1, device: torch.device | None = None) -> float:
    """GPU ms per call of ``iters`` back-to-back calls, by CUDA events: launches queued as in a video pipeline,
    one synchronisation before (earlier work is not counted) and one after."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(device)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def measure_for(device: torch.device, iters: int = 1) -> Measure:
    """The ``measure`` of ``rt4ksr.core.stats.interleaved`` for work on ``device``: CUDA events on a GPU, the wall
    clock elsewhere; ``iters`` calls per figure."""
    if device.type == "cuda":
        return functools.partial(cuda_ms, iters=iters, device=device)
    return functools.partial(wall_ms, iters=iters)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@torch.no_grad()
def time_inference(model: nn.Module, size: tuple[int, int], device: torch.device, batch: int = 1,
                   half: bool | None = None, channels_last: bool | None = None, warmup: int = 10,
                   repeats: int = 50) -> dict[str, Any]:
    """Median ms per batch, its quartiles and frames/s of a copy of ``model`` at ``size`` over ``repeats`` rounds,
    in the deployment setting of ``device`` (fp16 and channels_last on CUDA, fp32 on the CPU) unless told
    otherwise."""
    dtype, cl = deployment_setting(device, half, channels_last)
    m = timed_copy(model, device, dtype, cl)
    x = timing_batch(batch, size, device, dtype, cl)
    stats = timed(functools.partial(m, x), repeats, warmup, measure_for(device))
    return {**stats.to_row(batch), "height": size[0], "width": size[1], "batch": batch,
            "dtype": "fp16" if dtype == torch.float16 else "fp32", "device": device_name(device)}
