"""Running a deploy-form model on images: uint8/uint16 frames in, on the device, whole or in tiles, in batches;
eager, torch.compile, CUDA graphs, the fused Triton kernels or ONNX Runtime."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rt4ksr.core import threads
from rt4ksr.core.config import int_option
from rt4ksr.core.errors import ConfigValueError
from rt4ksr.core.extras import require
from rt4ksr.inference import runtimes
from rt4ksr.inference.loading import Loaded
from rt4ksr.kernels.network import TritonRTSRN


def cuda_graphed(fn: Callable[[Tensor], Tensor], example: Tensor, warmup: int = 3) -> Callable[[Tensor], Tensor]:
    """``fn`` captured in a CUDA graph for ``example``'s shape and dtype; ``fn`` itself off CUDA.

    At batch 1 a 40-GFLOP network is bound by kernel launches (a few µs each, more from Python), not by its
    math: replaying the captured launches removes that. The returned callable copies its input into the
    graph's static buffer and returns the graph's static output, which the next call overwrites.
    """
    if example.device.type != "cuda":
        return fn
    static_in = example.clone()
    side = torch.cuda.Stream(example.device)
    side.wait_stream(torch.cuda.current_stream(example.device))
    with torch.cuda.stream(side), torch.inference_mode():  # compile kernels / autotune outside the capture
        for _ in range(warmup):
            fn(static_in)
    torch.cuda.current_stream(example.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        static_out = fn(static_in)

    def replay(x: Tensor) -> Tensor:
        if x.shape != static_in.shape or x.dtype != static_in.dtype:
            raise ValueError(f"this CUDA graph was captured for {tuple(static_in.shape)} {static_in.dtype}, "
                             f"got {tuple(x.shape)} {x.dtype}")
        static_in.copy_(x)
        graph.replay()
        return static_out

    return replay


CPU_TILE = 512  # LR tile side on the CPU: 512x512 intermediates stay under glibc's 32 MiB mmap threshold
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")


def check_kernels(device: torch.device) -> None:
    """The fused kernels need Triton (``rt4ksr[kernels]``) and a CUDA device, or Triton's CPU interpreter
    (``TRITON_INTERPRET=1``, slow: for tests)."""
    require("triton", "kernels", "kernels=true (the fused Triton kernels)")
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ConfigValueError(f"kernels=true runs on CUDA, not {device.type}: drop kernels=true (or set "
                               "TRITON_INTERPRET=1 to run them, slowly, in Triton's interpreter)")


def check_backend(backend: object) -> str:
    """``backend`` checked as one of ``BACKENDS``."""
    if backend not in BACKENDS:
        raise ConfigValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return str(backend)


def check_tiling(tile: object, tile_pad: object) -> tuple[int | None, int]:
    """``tile`` (an LR tile side; 0: whole images; None: automatic) and ``tile_pad`` (>= 0) checked."""
    return int_option("tile", tile, 0, none=True), int_option("tile_pad", tile_pad, 0)


def choose_backend(backend: str, device: torch.device, half: bool | None = None, compile: bool = False,
                   kernels: bool = False, frames: bool = False) -> str:
    """The runtime for ``backend=auto``, from the CPU runtimes measured in docs/results.md ("CPU runtimes").
    OpenVINO runs the network fastest at every size, but importing it and compiling and first running each new
    shape cost about as much as it saves on one 1080p picture. So on the CPU in fp32, where OpenVINO is
    installed, a video's frames (many calls of one shape) run on it, and pictures run on PyTorch's CPU tiles.
    PyTorch runs on the GPU and wherever compile or kernels are asked for. A named backend is checked: ONNX
    Runtime and OpenVINO run fp32 on the CPU."""
    backend = check_backend(backend)
    if backend == "auto":
        cpu_fp32 = device.type == "cpu" and not (half or compile or kernels)
        return "openvino" if frames and cpu_fp32 and runtimes.available("openvino") else "torch"
    if backend != "torch" and (device.type != "cpu" or kernels or compile or half):
        raise ConfigValueError(f"backend={backend} runs fp32 on the CPU: drop device, half, compile and kernels "
                               "(or use backend=torch)")
    return backend


class Upscaler:
    """Runs a deploy-form model on uint8 or uint16 RGB images: fp16 + channels_last on CUDA, fp32 on the CPU.

    ``model`` is a ``Loaded`` (what ``rt4ksr.inference.loading`` returns), or a bare deploy-form network, which
    ``Loaded.of`` describes: its scale, input grid, receptive radius and whether tiles change its output are
    read from the descriptor.

    ``tile`` > 0 processes large images in LR tiles of that size with ``tile_pad`` pixels of context on each
    side (aligned to the model's unshuffle grid), so the output equals the untiled one. ``tile=None`` picks
    ``CPU_TILE`` on the CPU, where tiles keep the intermediates small enough for the allocator to reuse
    (2.6x faster at 1080p, see ``rt4ksr.inference.cpu_memory``), and whole images on CUDA. ``backend`` is
    ``auto`` (``choose_backend``), ``torch``, ``onnxruntime`` or ``openvino`` (the last two: CPU, fp32).
    """

    def __init__(self, model: Loaded | nn.Module, device: torch.device, half: bool | None = None,
                 compile: bool = False, tile: int | None = 0, tile_pad: int = 16, kernels: bool = False,
                 kernel_options: Mapping[str, Any] | None = None, backend: str = "torch",
                 frames: bool = False) -> None:
        loaded = Loaded.of(model)
        model = loaded.model
        backend = choose_backend(backend, device, half, compile, kernels, frames)
        tile, tile_pad = check_tiling(tile, tile_pad)
        if kernels:
            check_kernels(device)
        if tile is None:  # automatic: CPU tiles where they change nothing (local operations, enough context)
            tile = CPU_TILE if device.type == "cpu" and backend == "torch" and loaded.tileable else 0
            tile_pad = max(tile_pad, loaded.radius + loaded.multiple) if tile else tile_pad
        self.device = device
        self.backend = backend
        self.half = device.type == "cuda" and loaded.supports_half if half is None else half
        self.dtype = torch.float16 if self.half else torch.float32
        self.channels_last = device.type == "cuda"
        self.scale = loaded.scale
        self.multiple = loaded.multiple
        self.tile, self.tile_pad = tile, tile_pad
        if backend in runtimes.RUNNERS:
            self.model: Callable[[Tensor], Tensor] = runtimes.RUNNERS[backend](model)
            return
        model = copy.deepcopy(model).eval().to(device=device, dtype=self.dtype)  # the caller's model stays as is
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if kernels:  # the project's fused Triton kernels (CUDA)
            model = TritonRTSRN(model, dtype=self.dtype, **dict(kernel_options or {}))
        self.model = torch.compile(model, mode="max-autotune") if compile else model

    def forward(self, lr: Tensor) -> Tensor:
        """One call of the network, on as many CPU threads as are free now (``rt4ksr.core.threads``)."""
        if self.device.type == "cpu":
            threads.follow_load()
        return self.model(lr)

    def to_tensor(self, frames: np.ndarray) -> Tensor:
        """(N, H, W, 3) or (H, W, 3) uint8/uint16 -> (N, 3, H, W) on the device, in [0, 1]."""
        peak = 65535.0 if frames.dtype == np.uint16 else 255.0
        arr = np.ascontiguousarray(frames if frames.ndim == 4 else frames[None])
        if arr.dtype == np.uint16:  # torch has no uint16 arithmetic on every device
            arr = arr.astype(np.int32)
        t = torch.from_numpy(arr).to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        t = t.to(torch.float32 if peak > 255 else self.dtype).div_(peak).to(self.dtype)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t.contiguous()

    @staticmethod
    def to_array(sr: Tensor, dtype: np.dtype = np.uint8) -> np.ndarray:
        """(N, 3, H, W) in [0, 1] -> (N, H, W, 3) uint8 or uint16 on the host."""
        peak = 65535.0 if dtype == np.uint16 else 255.0
        q = sr.float().clamp_(0, 1).mul_(peak).round_().permute(0, 2, 3, 1).cpu()
        return q.to(torch.uint8).numpy() if dtype == np.uint8 else q.to(torch.int32).numpy().astype(np.uint16)

    @torch.inference_mode()
    def run(self, lr: Tensor) -> Tensor:
        """An LR batch (on the device) to SR, tiled when configured and larger than a tile."""
        h, w = lr.shape[-2:]
        if self.tile <= 0 or (h <= self.tile and w <= self.tile):
            return self.forward(lr)
        s, m, t, o = self.scale, self.multiple, self.tile, self.tile_pad
        out = None
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                # context around the tile, its start aligned to the unshuffle grid
                cy0, cx0 = max(0, (y0 - o) // m * m), max(0, (x0 - o) // m * m)
                cy1, cx1 = min(h, y1 + o), min(w, x1 + o)
                sr = self.forward(lr[..., cy0:cy1, cx0:cx1])
                if out is None:  # where the backend returns its results (the CPU for onnxruntime)
                    out = sr.new_empty(lr.shape[0], 3, h * s, w * s)
                out[..., y0 * s: y1 * s, x0 * s: x1 * s] = sr[..., (y0 - cy0) * s: (y1 - cy0) * s,
                                                               (x0 - cx0) * s: (x1 - cx0) * s]
        return out

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 or uint16 RGB (H, W, 3) or (N, H, W, 3) -> the same dtype at ``scale`` x the size."""
        out = self.to_array(self.run(self.to_tensor(frames)), frames.dtype)
        return out if frames.ndim == 4 else out[0]
