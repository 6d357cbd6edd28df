"""The deploy-form model as ONNX, TorchScript or safetensors, each file carrying its model config.

Every format carries the model config (ONNX metadata, TorchScript extra file, safetensors metadata), so
``rt4ksr.upscale`` and ``rt4ksr.eval`` load safetensors exports, and other runtimes know the scale.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from rt4ksr.extras import require

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}


def _example(model: nn.Module, dtype: torch.dtype) -> torch.Tensor:
    return torch.rand(1, 3, 64, 64, dtype=dtype)


def export_onnx(model: nn.Module, path: Path, fp16: bool = False, opset: int = 17) -> Path:
    """ONNX with dynamic batch, height and width; fp16 weights and I/O with ``fp16``."""
    onnx = require("onnx", "onnx", "ONNX export")

    dtype = torch.float16 if fp16 else torch.float32
    m = copy.deepcopy(model).to(dtype)  # the caller's model keeps its dtype
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        torch.onnx.export(m, (_example(m, dtype),), str(path), input_names=["lr"], output_names=["sr"],
                          dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"},
                                        "sr": {0: "batch", 2: "out_height", 3: "out_width"}},
                          opset_version=opset, dynamo=False)
    proto = onnx.load(str(path))
    meta = proto.metadata_props.add()
    meta.key, meta.value = "rt4ksr_config", json.dumps(model.config)
    onnx.save(proto, str(path))
    return path


def export_torchscript(model: nn.Module, path: Path, fp16: bool = False) -> Path:
    """A traced module; shape arithmetic is traced too, so any input size works."""
    dtype = torch.float16 if fp16 else torch.float32
    m = copy.deepcopy(model).to(dtype)  # the caller's model keeps its dtype
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(m, _example(m, dtype))
    torch.jit.save(traced, str(path), _extra_files={"rt4ksr_config.json": json.dumps(model.config)})
    return path


def export_safetensors(model: nn.Module, path: Path, fp16: bool = False) -> Path:
    from safetensors.torch import save_file

    dtype = torch.float16 if fp16 else torch.float32
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"rt4ksr_config": json.dumps(model.config), "format": "pt"})
    return path


def export(model: nn.Module, fmt: str, path: Path, fp16: bool = False) -> Path:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {tuple(FORMATS)}, got {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).eval().cpu()
    fn = {"onnx": export_onnx, "torchscript": export_torchscript, "safetensors": export_safetensors}[fmt]
    return fn(model, path, fp16)
