"""Inference speed of every execution path, 1080p->4K (x2) / 720p->4K (x3), and the fp16 quality check.

The modes of one batch size are timed in the same interleaved rounds (``rt4ksr.core.stats.interleaved``), so that
the machine's drift falls on all of them alike; each row is the median and inter-quartile range of its rounds."""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rt4ksr.core import threads
from rt4ksr.core.errors import ConfigValueError
from rt4ksr.core.extras import require
from rt4ksr.core.stats import Measure, interleaved, one_line
from rt4ksr.data.testsets import TestSet
from rt4ksr.inference import runtimes
from rt4ksr.inference.timing import device_name, measure_for, timed_copy, timing_batch
from rt4ksr.inference.upscaler import cuda_graphed
from rt4ksr.kernels.network import TritonRTSRN, supports
from rt4ksr.quality.measures import y_psnr_ssim

log = logging.getLogger(__name__)

MODES = ("train_fp32", "deploy_fp32", "deploy_fp16", "deploy_fp16_cl", "deploy_fp16_graph", "compile", "kernels",
         "kernels_nograph", "onnxruntime_cpu", "openvino_cpu")
HOST_MODES = ("onnxruntime_cpu", "openvino_cpu")  # CPU runtimes: timed by the wall clock, beside a GPU's modes too


def _runner(model: nn.Module, device: torch.device, batch: int, size: tuple[int, int], half: bool,
            channels_last: bool, graph: bool = False) -> Callable[[], Any]:
    dtype = torch.float16 if half else torch.float32
    m = timed_copy(model, device, dtype, channels_last)  # the caller's fp32 weights stay untouched
    x = timing_batch(batch, size, device, dtype, channels_last)
    fn = cuda_graphed(m, x) if graph else m
    cpu = device.type == "cpu"

    def run() -> Any:
        if cpu:
            threads.follow_load()  # as the upscaler does: the thread policy follows the machine's load
        with torch.inference_mode():
            return fn(x)

    return run


def _kernel_runner(deploy: nn.Module, device: torch.device, batch: int, size: tuple[int, int],
                   graph: bool, options: dict[str, Any]) -> Callable[[], Any]:
    """The project's fused Triton kernels (fp16), CUDA only; ``graph``: replayed as one CUDA graph."""
    if device.type != "cuda":
        raise RuntimeError("the Triton kernels run on CUDA (their correctness is tested on the CPU with "
                           "TRITON_INTERPRET=1)")
    if importlib.util.find_spec("triton") is None:
        raise RuntimeError("triton is not installed (pip install 'rt4ksr[kernels]')")
    reason = supports(deploy)
    if reason is not None:
        raise RuntimeError(reason)
    fused = TritonRTSRN(copy.deepcopy(deploy).to(device), dtype=torch.float16, **options)
    x = timing_batch(batch, size, device, torch.float16)
    fn = cuda_graphed(fused, x) if graph else fused
    return lambda: fn(x)


def _runtime_runner(mode: str, deploy: nn.Module, batch: int, size: tuple[int, int]) -> Callable[[], Any]:
    """ONNX Runtime or OpenVINO on the CPU, as the upscaler runs them (cached export, the thread policy)."""
    backend = mode.removesuffix("_cpu")
    module, extra = runtimes.EXTRAS[backend]
    require(module, extra, f"the {mode} mode")
    runner = runtimes.RUNNERS[backend](deploy)
    x = timing_batch(batch, size, torch.device("cpu"), torch.float32)
    return lambda: runner(x)


def benchmark(train_model: nn.Module | None, deploy: nn.Module, device: torch.device, size: tuple[int, int],
              batches: list[int], modes: list[str], warmup: int, repeats: int,
              kernel_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per (mode, batch): median, quartiles and inter-quartile range of ms per batch over ``repeats``
    rounds, FPS (``Stats.to_row``); modes that cannot run here say why. The modes of one batch size share their
    rounds (``warmup`` untimed round-robin calls first).

    ``kernel_options`` go to ``TritonRTSRN`` (``rt4ksr.kernels.network.OPTIONS``)."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ConfigValueError(f"unknown mode {unknown[0]!r}; modes: {', '.join(MODES)}")
    rows = {(mode, batch): {"mode": mode, "batch": batch, "height": size[0], "width": size[1],
                            "device": device_name(device)} for mode in modes for batch in batches}
    for batch in batches:
        runs: dict[str, Callable[[], Any]] = {}
        for mode in modes:
            try:
                runs[mode] = _build(mode, train_model, deploy, device, batch, size, dict(kernel_options or {}))
            except (RuntimeError, ImportError) as e:
                rows[mode, batch]["skipped"] = str(e).splitlines()[0] if str(e) else one_line(e)
        host = [runs[m] for m in HOST_MODES if m in runs]
        stats, failed = interleaved(runs, repeats, warmup, _measure(device, host))
        for mode, reason in failed.items():
            rows[mode, batch]["skipped"] = reason
        for mode, s in stats.items():
            rows[mode, batch].update(s.to_row(batch))
        for mode in HOST_MODES:
            if mode in runs:
                rows[mode, batch]["device"] = f"cpu ({mode.removesuffix('_cpu')})"
        del runs
    return list(rows.values())


def _measure(device: torch.device, host_fns: list[Callable[[], Any]]) -> Measure:
    """The measure of ``device`` for every mode but ``host_fns`` (the CPU runtimes), which the wall clock times
    beside CUDA events in the same rounds."""
    on_device, on_host = measure_for(device), measure_for(torch.device("cpu"))
    return lambda fn: on_host(fn) if any(fn is h for h in host_fns) else on_device(fn)


def _build(mode: str, train_model: nn.Module | None, deploy: nn.Module, device: torch.device, batch: int,
           size: tuple[int, int], kernel_options: dict[str, Any]) -> Callable[[], Any]:
    """The no-argument call that ``mode`` times, or a ``RuntimeError``/``ImportError`` saying why it cannot run."""
    cuda = device.type == "cuda"
    if mode == "train_fp32":
        if train_model is None:
            raise RuntimeError("the checkpoint holds fused weights only")
        return _runner(train_model, device, batch, size, False, False)
    if mode == "deploy_fp32":
        return _runner(deploy, device, batch, size, False, False)
    if mode in ("deploy_fp16", "deploy_fp16_cl", "deploy_fp16_graph"):
        if not cuda:
            raise RuntimeError("fp16 inference is a GPU path")
        return _runner(deploy, device, batch, size, True, mode != "deploy_fp16", mode == "deploy_fp16_graph")
    if mode == "compile":
        compiled = torch.compile(copy.deepcopy(deploy).to(device), mode="max-autotune")
        return _runner(compiled, device, batch, size, cuda, cuda)
    if mode in ("kernels", "kernels_nograph"):
        return _kernel_runner(deploy, device, batch, size, mode == "kernels", kernel_options)
    if mode in HOST_MODES:
        return _runtime_runner(mode, deploy, batch, size)
    raise ConfigValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")


@torch.no_grad()
def fp16_psnr_loss(deploy: nn.Module, device: torch.device, testsets_dir: str, names: list[str], scale: int,
                   lr_cache_dir: str | None = None, kernel_options: dict[str, Any] | None = None
                   ) -> dict[str, dict[str, float]]:
    """Mean Y-PSNR against HR of the fp32 deploy form and of fp16 inference, per set, and the loss in dB.

    On CUDA, when the project's Triton kernels support the model, their fp16 output is checked too
    (``psnr_kernels``, ``kernels_loss_db``): they are the fast path, so they must keep the quality as well.
    On the CPU under ``TRITON_INTERPRET=1`` the interpreter runs them (fp16 storage and fp32 accumulation as
    on the GPU; slow: minutes for set5).
    """
    m32 = copy.deepcopy(deploy).to(device).float().eval()
    m16 = copy.deepcopy(m32).half()
    fused = None
    if device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        if importlib.util.find_spec("triton") is not None and supports(m32) is None:
            fused = TritonRTSRN(copy.deepcopy(m32).half(), dtype=torch.float16, **(kernel_options or {}))
    out = {}
    for name in names:
        ds = TestSet(testsets_dir, name, scale, lr_cache_dir)
        p32, p16, pk = [], [], []
        for i in range(len(ds)):
            item = ds[i]
            lr = item["lr"][None].to(device).float() / 255
            hr = item["hr"][None].to(device)
            p32 += y_psnr_ssim(m32(lr), hr, scale)[0]
            p16 += y_psnr_ssim(m16(lr.half()).float(), hr, scale)[0]
            if fused is not None:
                pk += y_psnr_ssim(fused(lr.half()).float(), hr, scale)[0]
        out[name] = {"psnr_fp32": sum(p32) / len(p32), "psnr_fp16": sum(p16) / len(p16)}
        out[name]["loss_db"] = out[name]["psnr_fp32"] - out[name]["psnr_fp16"]
        if pk:
            out[name]["psnr_kernels"] = sum(pk) / len(pk)
            out[name]["kernels_loss_db"] = out[name]["psnr_fp32"] - out[name]["psnr_kernels"]
    return out


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The rows as aligned text: median ms per batch, its inter-quartile range, FPS."""
    lines = [f"{'mode':<18} {'batch':>5} {'input':>11} {'ms/batch':>10} {'IQR':>8} {'FPS':>9}  device"]
    for r in rows:
        size = f"{r['width']}x{r['height']}"
        if "skipped" in r:
            lines.append(f"{r['mode']:<18} {r['batch']:>5} {size:>11} {'-':>10} {'-':>8} {'-':>9}  "
                         f"skipped: {r['skipped']}")
        else:
            lines.append(f"{r['mode']:<18} {r['batch']:>5} {size:>11} {r['ms']:>10.3f} {r['iqr_ms']:>8.3f} "
                         f"{r['fps']:>9.1f}  {r['device']}")
    return "\n".join(lines)
