"""CPU runtimes for a deploy-form model: ONNX Runtime and OpenVINO over one cached ONNX export, sized by the
thread policy.

The export is cached by a hash of the weights, the model config and the exporter's versions, so a command
exports a model once per machine, not on every run (an export costs seconds; the network at 1080p, a fraction
of one). Sessions are created per thread count: when the thread policy moves (``rt4ksr.core.threads``), the next
call runs on a session of the new size, since neither runtime can resize its pool in place.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rt4ksr.core import threads
from rt4ksr.core.extras import require
from rt4ksr.inference.exporters import export_onnx

OPSET = 17
GRAPH_REVISION = 2  # raised whenever the exported graph changes for the same weights (the cache key holds it)
EXTRAS = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}


def cache_dir() -> Path:
    """Where exports are cached: ``RT4KSR_CACHE_DIR``/runtimes, else the user's cache folder (never the
    current folder or the installed package)."""
    root = os.environ.get("RT4KSR_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "rt4ksr")
    return Path(root) / "runtimes"


def model_key(model: nn.Module) -> str:
    """A hash of what the export depends on: weights, config, torch, the opset and the graph's revision."""
    h = hashlib.sha256()
    h.update(json.dumps(getattr(model, "config", {}), sort_keys=True, default=str).encode())
    h.update(f"{torch.__version__}|{OPSET}|{GRAPH_REVISION}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def cached_onnx(model: nn.Module, folder: Path | None = None) -> Path:
    """The model's fp32 ONNX export with dynamic shapes, from the cache or written into it (atomically; a
    cache that cannot be written falls back to a private temporary file)."""
    folder = folder or cache_dir()
    path = folder / f"{model_key(model)}.onnx"
    if path.is_file():
        return path
    m = copy.deepcopy(model).eval().float().cpu()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return export_onnx(m, path, opset=OPSET)
    except OSError:  # a read-only or full cache: export for this process only
        import tempfile

        return export_onnx(m, Path(tempfile.mkdtemp(prefix="rt4ksr-")) / path.name, opset=OPSET)


class _PerThreads:
    """A runtime session per thread count, made when first needed. ``follow``: the count follows the load
    (``threads.follow_load``); otherwise it is the most the policy allows."""

    follow = True

    def __init__(self, make: Callable[[int], Callable[[Any], Any]]) -> None:
        self._make = make
        self._sessions: dict[int, Callable[[Any], Any]] = {}

    def session(self) -> Callable[[Any], Any]:
        n = threads.follow_load() if self.follow else threads.limit()
        if n not in self._sessions:
            self._sessions[n] = self._make(n)
        return self._sessions[n]

    def __call__(self, x: Tensor) -> Tensor:
        out = self.session()(x.float().cpu().contiguous().numpy())
        return torch.from_numpy(out)


class OnnxRuntimeRunner(_PerThreads):
    """The model through ONNX Runtime's CPU provider (full graph optimisation, sequential execution)."""

    def __init__(self, model: nn.Module, cache: Path | None = None) -> None:
        ort = require("onnxruntime", "onnx", "the onnxruntime backend")
        path = str(cached_onnx(model, cache))

        def make(n: int) -> Callable[[Any], Any]:
            options = threads.onnxruntime_options(ort, n)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            return lambda x: session.run(None, {"lr": x})[0]

        super().__init__(make)


class OpenVinoRunner(_PerThreads):
    """The model through OpenVINO's CPU plugin, fp32 (``INFERENCE_PRECISION_HINT=f32``: no bf16 rounding on
    CPUs that have it), latency mode. Compiled per input shape: OpenVINO runs a static shape faster than a
    dynamic one, and a video has one shape. Its pool (TBB) sleeps soon after a call instead of spinning, so it
    keeps every core the policy allows: beside a second copy of the same benchmark, one thread took 20 ms per
    frame and two took 10 (240x135, 2-core EPYC)."""

    follow = False

    def __init__(self, model: nn.Module, cache: Path | None = None) -> None:
        ov = require("openvino", "openvino", "the openvino backend")
        core = ov.Core()
        try:  # compiled networks are cached too: a later run skips most of the compilation
            (cache or cache_dir()).joinpath("openvino").mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str((cache or cache_dir()) / "openvino")})
        except (OSError, RuntimeError):
            pass
        source = core.read_model(str(cached_onnx(model, cache)))

        def make(n: int) -> Callable[[Any], Any]:
            compiled: dict[tuple[int, ...], Any] = {}
            config = {"INFERENCE_NUM_THREADS": n, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                      "NUM_STREAMS": 1}

            def run(x: Any) -> Any:
                shape = tuple(x.shape)
                if shape not in compiled:
                    m = source.clone()
                    m.reshape({m.inputs[0]: ov.PartialShape(list(shape))})
                    compiled[shape] = core.compile_model(m, "CPU", config).create_infer_request()
                req = compiled[shape]
                req.infer({0: x}, share_inputs=True)
                return req.get_output_tensor(0).data.copy()

            return run

        super().__init__(make)


RUNNERS: dict[str, type[_PerThreads]] = {"onnxruntime": OnnxRuntimeRunner, "openvino": OpenVinoRunner}


def available(backend: str) -> bool:
    """Whether ``backend``'s package imports here."""
    if backend == "torch":
        return True
    import importlib.util

    return importlib.util.find_spec(EXTRAS[backend][0]) is not None
