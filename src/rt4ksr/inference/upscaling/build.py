"""The ``Upscaler`` an upscale run uses, made from a loaded model and the run's options: the one setup that
``rt4ksr upscale`` and the tools that measure it (scripts/video_e2e.py) share."""

from __future__ import annotations

from torch import nn

from rt4ksr.inference.cpu_memory import keep_freed_memory
from rt4ksr.inference.loading import Loaded
from rt4ksr.inference.upscaler import Upscaler
from rt4ksr.inference.upscaling.options import UpscaleOptions


def build_upscaler(model: Loaded | nn.Module, options: UpscaleOptions | None = None, frames: bool = False
                   ) -> Upscaler:
    """``model`` (a ``Loaded``, or a deploy-form network) ready to upscale as ``options`` say (default: the
    command's defaults); ``frames``: the input is a video (``backend=auto`` picks the runtime by it). The CPU
    allocator keeps freed tensors for reuse (``keep_freed_memory``), as every command that runs the model does."""
    options = options or UpscaleOptions()
    keep_freed_memory()  # CPU inference: reuse freed tensors instead of page-faulting fresh memory
    return Upscaler(model, options.device, half=options.half, compile=options.compile, tile=options.tile,
                    tile_pad=options.tile_pad, kernels=options.kernels, kernel_options=options.kernel_options,
                    backend=options.backend, frames=frames)
