"""Startup of the inference commands (issue 28): they import no training code and no optional dependency they
do not use, so that ``rt4ksr upscale`` of a small picture costs little more than importing torch. No timing is
asserted (CI timing is noisy): what is checked is what gets imported, which is what the time follows."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from helpers import ROOT, run_module

# what an inference command must not import, and why
FORBIDDEN = {
    "lightning": "the training framework: seconds of startup on its own",
    "pytorch_lightning": "the training framework under its old name",
    "lightning_fabric": "Lightning's runtime, training only",
    "rt4ksr.training": "training code",
    "rt4ksr.data.datamodule": "the training DataModule (it imports Lightning)",
    "rt4ksr.data.realworld": "the training-time real-world degradations (kornia)",
    "wandb": "the training logger",
    "torchmetrics": "training's metric states; imports scipy and matplotlib, about a second",
    "kornia": "training degradations and the high-pass loss (imported where used)",
    "skimage": "not used by inference",
    "scipy": "not used by inference",
    "matplotlib": "the sweep report's figures only",
    "onnx": "export format=onnx and the ONNX backends only, imported on use",
    "onnxruntime": "backend=onnxruntime only, imported on use",
    "openvino": "backend=openvino only, imported on use",
    "av": "video input only, imported on use",
    "triton": "the Triton kernels only (torch.utils.flop_counter imports it too: MACs are counted on use)",
    "spandrel": "the spandrel loader only",
    "torch._dynamo": "torch.compile only (compile=true)",
    "torch._inductor": "torch.compile only (compile=true)",
}

# the inference commands, and the console entry that dispatches to them
MODULES = ["rt4ksr.cli", "rt4ksr.upscale", "rt4ksr.eval", "rt4ksr.export", "rt4ksr.benchmark", "rt4ksr.zoo",
           "rt4ksr.summary"]

PROBE = """
import json, sys, importlib
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def _imported(module: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, module], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", MODULES)
def test_inference_commands_import_no_training_code(module):
    imported = _imported(module)
    bad = {name: why for name, why in FORBIDDEN.items()
           if any(m == name or m.startswith(name + ".") for m in imported)}
    assert not bad, f"importing {module} imports " + "; ".join(f"{n} ({why})" for n, why in bad.items())


def test_package_level_names_still_import_lazily():
    """``from rt4ksr.data import ...`` keeps working (training and tests use it) without importing the rest."""
    from rt4ksr import data

    assert data.SRDataModule.__name__ == "SRDataModule"
    assert callable(data.read_image) and data.TestSet.__name__ == "TestSet"
    assert set(data.__all__) <= set(dir(data))
    with pytest.raises(AttributeError):
        _ = data.no_such_name


def test_upscale_of_a_tiny_picture_runs(tmp_path):
    """The default zoo model on a 16x16 PNG: the startup path end to end."""
    src, dst = tmp_path / "tiny.png", tmp_path / "out.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(src), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    out = run_module("rt4ksr.upscale", "-i", str(src), "-o", str(dst), cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    img = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape[:2] == (32, 32)  # the default zoo model is x2
