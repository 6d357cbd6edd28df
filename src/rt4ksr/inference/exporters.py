"""The deploy-form model as ONNX, TorchScript or safetensors, each file carrying its model config.

Every format carries the model config (ONNX metadata, TorchScript extra file, safetensors tensor and
metadata): ``rt4ksr.upscale``, ``rt4ksr.eval`` and spandrel load the safetensors weights without a model config,
and other runtimes read the scale from the ONNX and TorchScript graphs. Every file is written atomically.
"""

from __future__ import annotations

import copy
import json
import logging
import struct
import warnings
from pathlib import Path

import torch
from torch import nn

from rt4ksr.core.errors import ConfigValueError
from rt4ksr.core.extras import require
from rt4ksr.core.files import atomic_path, write_bytes
from rt4ksr.models.checkpoint import CONFIG_KEY, portable_state_dict

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}

# The ONNX model's convention, also written into its metadata so that runtimes and users can read it; "axes"
# says the graph's own (see ``onnx_axes``).
ONNX_CONVENTION = {
    "input": "lr: (N, 3, H, W), RGB, values in [0, 1], float32 (float16 with fp16=true)",
    "output": "sr: (N, 3, scale*H, scale*W), RGB, [0, 1] up to small overshoot: clamp before quantising",
    "axes": "N, H and W dynamic; fixed with input_size=[H, W] (and batch_size)",
}


def onnx_axes(scale: int, input_size: tuple[int, int] | None = None, batch_size: int = 1) -> str:
    """The ``axes`` entry of one graph: dynamic, or the static shapes it was exported with."""
    if input_size is None:
        return ONNX_CONVENTION["axes"]
    h, w = input_size
    return (f"static: lr ({batch_size}, 3, {h}, {w}) -> sr ({batch_size}, 3, {h * scale}, {w * scale}); "
            "export again with another input_size for other shapes")


def _example(dtype: torch.dtype, shape: tuple[int, int, int, int] = (1, 3, 64, 64)) -> torch.Tensor:
    return torch.rand(*shape, dtype=dtype)


def export_onnx(model: nn.Module, path: Path, fp16: bool = False, opset: int = 17,
                input_size: tuple[int, int] | None = None, batch_size: int = 1) -> Path:
    """ONNX, input ``lr`` and output ``sr`` (see ``ONNX_CONVENTION``); dynamic batch, height and width, or a
    static shape with ``input_size`` (TensorRT engines and vs-mlrt build fastest for one shape); fp16 weights
    and I/O with ``fp16``. The model config, scale and convention are in the metadata."""
    onnx = require("onnx", "onnx", "ONNX export")

    dtype = torch.float16 if fp16 else torch.float32
    m = copy.deepcopy(model).to(dtype)  # the caller's model keeps its dtype
    static = input_size is not None
    example = _example(dtype, (batch_size, 3, *input_size) if static else (1, 3, 64, 64))
    axes = None if static else {"lr": {0: "batch", 2: "height", 3: "width"},
                                "sr": {0: "batch", 2: "out_height", 3: "out_width"}}
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
            torch.onnx.export(m, (example,), str(tmp), input_names=["lr"], output_names=["sr"],
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
        proto = onnx.load(str(tmp))
        if static:  # the traced pad-and-crop leaves the output's size symbolic: state it, as the input's is
            dims = proto.graph.output[0].type.tensor_type.shape.dim
            for dim, size in zip(dims, (batch_size, 3, input_size[0] * model.scale, input_size[1] * model.scale),
                                 strict=True):
                dim.ClearField("dim_param")
                dim.dim_value = size
        shape = onnx_axes(model.scale, input_size, batch_size)
        props = {"rt4ksr_config": json.dumps(model.config), "scale": str(model.scale),
                 "precision": "fp16" if fp16 else "fp32", **ONNX_CONVENTION, "axes": shape}
        for key, value in props.items():
            meta = proto.metadata_props.add()
            meta.key, meta.value = key, value
        proto.doc_string = (f"RT4KSR x{model.scale}: {ONNX_CONVENTION['input']} -> {ONNX_CONVENTION['output']}; "
                            f"axes: {shape}")
        onnx.save(proto, str(tmp))
    return path


def export_torchscript(model: nn.Module, path: Path, fp16: bool = False) -> Path:
    """A traced module; shape arithmetic is traced too, so any input size works."""
    dtype = torch.float16 if fp16 else torch.float32
    m = copy.deepcopy(model).to(dtype)  # the caller's model keeps its dtype
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(m, _example(dtype))
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={"rt4ksr_config.json": json.dumps(model.config)})
    return path


def export_safetensors(model: nn.Module, path: Path, fp16: bool = False) -> Path:
    """The weights with the config as a tensor (read by spandrel) and in the metadata."""
    from safetensors.torch import save

    state = portable_state_dict(model, torch.float16 if fp16 else torch.float32)
    data = save(state, metadata={"format": "pt", CONFIG_KEY: json.dumps(model.config)})
    write_bytes(path, canonical_safetensors(data))
    return path


def canonical_safetensors(data: bytes) -> bytes:
    """The same file with its JSON header's keys sorted: safetensors orders the metadata by a hash map, which
    differs from process to process, and a weights file should be byte-identical whenever its tensors are (the
    zoo's cards pin each file by its SHA-256)."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header with spaces to 8-byte alignment
    return struct.pack("<Q", len(header)) + header + data[8 + n:]


def static_shape(fmt: str, input_size: object, batch_size: object = 1) -> tuple[int, int] | None:
    """``input_size`` as (height, width), checked: two positive integers, for ONNX only, with a positive batch;
    a config value of another form (one number, a string, three sizes) is a ``ConfigValueError``."""
    if input_size is None:
        return None
    if fmt != "onnx":
        raise ConfigValueError(f"input_size (a static shape) applies to ONNX only, not {fmt}")
    size = list(input_size) if isinstance(input_size, list | tuple) else [input_size]
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise ConfigValueError(f"input_size must be [height, width] of the LR input, two positive integers, got "
                               f"{input_size}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigValueError(f"batch_size must be a positive integer, got {batch_size}")
    return size[0], size[1]


def export(model: nn.Module, fmt: str, path: Path, fp16: bool = False, input_size: tuple[int, int] | None = None,
           batch_size: int = 1) -> Path:
    """Write ``model`` (deploy form) as ``fmt``; ``input_size``/``batch_size`` make an ONNX graph static."""
    if fmt not in FORMATS:
        raise ConfigValueError(f"format must be one of {tuple(FORMATS)}, got {fmt!r}")
    input_size = static_shape(fmt, input_size, batch_size)
    model = copy.deepcopy(model).eval().cpu()
    if fmt == "onnx":
        return export_onnx(model, path, fp16, input_size=input_size, batch_size=batch_size)
    fn = {"torchscript": export_torchscript, "safetensors": export_safetensors}[fmt]
    return fn(model, path, fp16)
