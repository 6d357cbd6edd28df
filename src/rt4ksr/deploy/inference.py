"""Loading a model for inference, and running it on whole images, in tiles or in batches of frames."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from rt4ksr.models import RTSRN, load_into, read_state_dict, reparameterize
from rt4ksr.models.checkpoint import is_deploy_state, read_config

log = logging.getLogger(__name__)


def build_model(model_cfg: DictConfig | Mapping[str, Any] | None, ckpt_path: str | Path | None) -> nn.Module:
    """The deploy form of a model with a checkpoint's weights (training or fused form, any supported file).

    A file that carries its model config (``deploy_best.pth``, exported safetensors) needs no ``model_cfg``;
    when both exist, the file's config wins, since it describes the weights.
    """
    if ckpt_path is None:
        if model_cfg is None:
            raise ValueError("give a model config, a checkpoint, or both")
        log.warning("no ckpt_path: randomly initialised weights")
        return reparameterize(instantiate(model_cfg))
    path = to_absolute_path(str(ckpt_path))
    state = read_state_dict(path)
    deploy = is_deploy_state(state)
    carried = read_config(path)
    if carried is not None:
        model = model_from_config(carried, is_train=not deploy)
    elif model_cfg is not None:
        model = instantiate(model_cfg, is_train=not deploy)
    else:
        raise ValueError(f"{path} carries no model config: give model=<preset> as well")
    load_into(model, state, path)
    return reparameterize(model)


def model_from_config(config: Mapping[str, Any], **overrides: Any) -> RTSRN:
    """An RTSRN from the config dict a model records (``model.config``): its block is a Hydra partial."""
    cfg = dict(config)
    cfg.update(overrides)
    cfg["baseblock"] = instantiate(OmegaConf.create(dict(cfg["baseblock"])))
    return RTSRN(**cfg)


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


class Upscaler:
    """Runs a deploy-form model on uint8 RGB images: fp16 + channels_last on CUDA, fp32 on the CPU.

    ``tile`` > 0 processes large images in LR tiles of that size with ``overlap`` pixels of context on each
    side (aligned to the model's unshuffle grid), so the output equals the untiled one.
    """

    def __init__(self, model: nn.Module, device: torch.device, half: bool | None = None, compile: bool = False,
                 tile: int = 0, overlap: int = 16, kernels: bool = False,
                 kernel_options: Mapping[str, Any] | None = None) -> None:
        self.device = device
        self.half = device.type == "cuda" if half is None else half
        self.dtype = torch.float16 if self.half else torch.float32
        self.channels_last = device.type == "cuda"
        model = copy.deepcopy(model).eval().to(device=device, dtype=self.dtype)  # the caller's model stays as is
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.scale = model.scale
        self.multiple = getattr(model, "multiple", 1)
        if kernels:  # the project's fused Triton kernels (CUDA)
            from rt4ksr.kernels import TritonRTSRN

            model = TritonRTSRN(model, dtype=self.dtype, **dict(kernel_options or {}))
        self.model = torch.compile(model, mode="max-autotune") if compile else model
        self.tile, self.overlap = tile, overlap

    def to_tensor(self, frames: np.ndarray) -> Tensor:
        """(N, H, W, 3) or (H, W, 3) uint8 -> (N, 3, H, W) on the device, in [0, 1]."""
        t = torch.from_numpy(np.ascontiguousarray(frames if frames.ndim == 4 else frames[None]))
        t = t.to(self.device, non_blocking=True).permute(0, 3, 1, 2).to(self.dtype).div_(255.0)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t.contiguous()

    @staticmethod
    def to_uint8(sr: Tensor) -> np.ndarray:
        """(N, 3, H, W) in [0, 1] -> (N, H, W, 3) uint8 on the host."""
        return sr.float().clamp_(0, 1).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    @torch.inference_mode()
    def run(self, lr: Tensor) -> Tensor:
        """An LR batch (on the device) to SR, tiled when configured and larger than a tile."""
        h, w = lr.shape[-2:]
        if self.tile <= 0 or (h <= self.tile and w <= self.tile):
            return self.model(lr)
        s, m, t, o = self.scale, self.multiple, self.tile, self.overlap
        out = lr.new_empty(lr.shape[0], 3, h * s, w * s)
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                # context around the tile, its start aligned to the unshuffle grid
                cy0, cx0 = max(0, (y0 - o) // m * m), max(0, (x0 - o) // m * m)
                cy1, cx1 = min(h, y1 + o), min(w, x1 + o)
                sr = self.model(lr[..., cy0:cy1, cx0:cx1])
                out[..., y0 * s: y1 * s, x0 * s: x1 * s] = sr[..., (y0 - cy0) * s: (y1 - cy0) * s,
                                                               (x0 - cx0) * s: (x1 - cx0) * s]
        return out

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB (H, W, 3) or (N, H, W, 3) -> uint8 RGB at ``scale`` x the size, same layout."""
        out = self.to_uint8(self.run(self.to_tensor(frames)))
        return out if frames.ndim == 4 else out[0]
