"""Inference speed of every execution path, 1080p->4K (x2) / 720p->4K (x3), and the fp16 quality check."""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rt4ksr.core.errors import ConfigValueError
from rt4ksr.core.extras import require
from rt4ksr.data.testsets import TestSet
from rt4ksr.inference.exporters import export_onnx
from rt4ksr.inference.timing import device_name, measure_ms, summarize_ms, timed_copy, timing_input
from rt4ksr.inference.upscaler import cuda_graphed
from rt4ksr.kernels.network import TritonRTSRN, supports
from rt4ksr.quality.measures import y_psnr_ssim

log = logging.getLogger(__name__)

MODES = ("train_fp32", "deploy_fp32", "deploy_fp16", "deploy_fp16_cl", "deploy_fp16_graph", "compile", "kernels",
         "kernels_nograph", "onnxruntime_cpu")


def _runner(model: nn.Module, device: torch.device, batch: int, size: tuple[int, int], half: bool,
            channels_last: bool, graph: bool = False) -> Callable[[], Any]:
    dtype = torch.float16 if half else torch.float32
    m = timed_copy(model, device, dtype, channels_last)  # the caller's fp32 weights stay untouched
    x = timing_input(batch, size, device, dtype, channels_last)
    fn = cuda_graphed(m, x) if graph else m

    def run() -> Any:
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
    x = timing_input(batch, size, device, torch.float16)
    fn = cuda_graphed(fused, x) if graph else fused
    return lambda: fn(x)


def _onnx_runner(deploy: nn.Module, batch: int, size: tuple[int, int], tmp: Path) -> Callable[[], Any]:
    ort = require("onnxruntime", "onnx", "the onnxruntime_cpu mode")
    path = export_onnx(copy.deepcopy(deploy).cpu().float(), tmp / "model.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = timing_input(batch, size, torch.device("cpu"), torch.float32).numpy()
    return lambda: sess.run(None, {"lr": x})


def benchmark(train_model: nn.Module | None, deploy: nn.Module, device: torch.device, size: tuple[int, int],
              batches: list[int], modes: list[str], warmup: int, repeats: int,
              kernel_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per (mode, batch): median and spread of ms per batch, FPS; modes that cannot run here say why.

    ``kernel_options`` go to ``TritonRTSRN`` (``rt4ksr.kernels.network.OPTIONS``)."""
    rows = []
    cuda = device.type == "cuda"
    tmp = Path(tempfile.mkdtemp(prefix="rt4ksr-bench-"))
    for mode in modes:
        for batch in batches:
            row: dict[str, Any] = {"mode": mode, "batch": batch, "height": size[0], "width": size[1],
                                   "device": device_name(device)}
            try:
                dev = device
                if mode == "train_fp32":
                    if train_model is None:
                        raise RuntimeError("the checkpoint holds fused weights only")
                    fn = _runner(train_model, device, batch, size, False, False)
                elif mode == "deploy_fp32":
                    fn = _runner(deploy, device, batch, size, False, False)
                elif mode in ("deploy_fp16", "deploy_fp16_cl", "deploy_fp16_graph"):
                    if not cuda:
                        raise RuntimeError("fp16 inference is a GPU path")
                    fn = _runner(deploy, device, batch, size, True, mode != "deploy_fp16", mode == "deploy_fp16_graph")
                elif mode == "compile":
                    compiled = torch.compile(copy.deepcopy(deploy).to(device), mode="max-autotune")
                    fn = _runner(compiled, device, batch, size, cuda, cuda)
                elif mode in ("kernels", "kernels_nograph"):
                    fn = _kernel_runner(deploy, device, batch, size, mode == "kernels", dict(kernel_options or {}))
                elif mode == "onnxruntime_cpu":
                    dev = torch.device("cpu")
                    fn = _onnx_runner(deploy, batch, size, tmp)
                else:
                    raise ConfigValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
                row.update(summarize_ms(measure_ms(fn, dev, warmup, repeats), batch))
                if mode == "onnxruntime_cpu":
                    row["device"] = "cpu (onnxruntime)"
            except (RuntimeError, ImportError) as e:
                row["skipped"] = str(e).splitlines()[0]
            rows.append(row)
    return rows


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
    lines = [f"{'mode':<18} {'batch':>5} {'input':>11} {'ms/batch':>10} {'spread':>8} {'FPS':>9}  device"]
    for r in rows:
        size = f"{r['width']}x{r['height']}"
        if "skipped" in r:
            lines.append(f"{r['mode']:<18} {r['batch']:>5} {size:>11} {'-':>10} {'-':>8} {'-':>9}  "
                         f"skipped: {r['skipped']}")
        else:
            lines.append(f"{r['mode']:<18} {r['batch']:>5} {size:>11} {r['ms']:>10.3f} {r['spread_ms']:>8.3f} "
                         f"{r['fps']:>9.1f}  {r['device']}")
    return "\n".join(lines)
