"""rt4ksr.export: ONNX (checked in onnxruntime), TorchScript and safetensors, each carrying the config."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import randomize_
from rt4ksr.inference.exporters import export
from rt4ksr.inference.loading import load_file
from rt4ksr.models import RTSRN, reparameterize

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=[2, 3])
def deploy(request):
    return reparameterize(randomize_(RTSRN(scale=request.param, feature_channels=12, num_blocks=2), seed=4))


@pytest.mark.parametrize("skip", ["bicubic", "nearest"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_onnx_runs_the_global_skip_as_a_convolution(tmp_path, skip, scale):
    """The exported skip is a grouped Conv, not a cubic Resize (which ONNX Runtime runs 30x slower than the whole
    network), and gives the eager output."""
    import onnx
    import onnxruntime as ort

    net = reparameterize(randomize_(RTSRN(scale=scale, feature_channels=8, num_blocks=1, global_skip=skip), seed=2))
    path = export(net, "onnx", tmp_path / "m.onnx")
    assert "Resize" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 20, 28), (2, 3, 9, 13)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            ref = net(x).numpy()
        assert np.abs(sess.run(None, {"lr": x.numpy()})[0] - ref).max() <= 1e-4


def test_onnx_matches_pytorch_for_any_size(tmp_path, deploy):
    import onnx
    import onnxruntime as ort

    path = export(deploy, "onnx", tmp_path / "m.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["rt4ksr_config"])["scale"] == deploy.scale
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 32, 48), (2, 3, 17, 23), (1, 3, 5, 1)]:
        x = torch.rand(*shape)
        got = sess.run(None, {"lr": x.numpy()})[0]
        with torch.no_grad():
            ref = deploy(x).numpy()
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-4


def test_onnx_fp16(tmp_path, deploy):
    import onnxruntime as ort

    before = {k: v.clone() for k, v in deploy.state_dict().items()}
    path = export(deploy, "onnx", tmp_path / "h.onnx", fp16=True)
    export(deploy, "torchscript", tmp_path / "h.pt", fp16=True)
    for k, v in deploy.state_dict().items():  # exports cast copies: the caller's fp32 weights are untouched
        assert v.dtype == torch.float32 and torch.equal(v, before[k]), k
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 24, 30)
    got = sess.run(None, {"lr": x.half().numpy()})[0]
    assert got.dtype == np.float16
    with torch.no_grad():
        ref = deploy(x).numpy()
    assert np.abs(got.astype(np.float32) - ref).max() <= 2e-2


def test_torchscript_generalises_and_carries_config(tmp_path, deploy):
    path = export(deploy, "torchscript", tmp_path / "m.pt")
    extra = {"rt4ksr_config.json": ""}
    ts = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["rt4ksr_config.json"])["scale"] == deploy.scale
    x = torch.rand(2, 3, 19, 26)
    with torch.no_grad():
        torch.testing.assert_close(ts(x), deploy(x), rtol=0, atol=1e-5)


def test_safetensors_loads_without_a_model_config(tmp_path, deploy):
    path = export(deploy, "safetensors", tmp_path / "m.safetensors")
    again = load_file(path).model
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        torch.testing.assert_close(again(x), deploy(x), rtol=0, atol=0)


def test_safetensors_files_are_byte_identical_whenever_the_tensors_are(tmp_path, deploy):
    """safetensors orders its header by a hash map; the export sorts it, so a file's SHA-256 names its weights."""
    from safetensors import safe_open

    files = [export(deploy, "safetensors", tmp_path / f"m{i}.safetensors").read_bytes() for i in range(8)]
    assert all(f == files[0] for f in files)
    n = int.from_bytes(files[0][:8], "little")
    header = json.loads(files[0][8:8 + n])
    assert list(header) == sorted(header) and list(header["__metadata__"]) == ["format", "rt4ksr_config"]
    with safe_open(str(tmp_path / "m0.safetensors"), "pt") as f:  # still a valid file for the reference reader
        assert sorted(f.keys()) == sorted(k for k in header if k != "__metadata__")


def test_export_command_from_an_official_checkpoint(tmp_path):
    from helpers import official_ckpt

    ckpt = official_ckpt(2)
    out = tmp_path / "rt4ksr_x2.onnx"
    proc = subprocess.run([sys.executable, "-m", "rt4ksr.export", f"ckpt_path={ckpt}", "format=onnx",
                           f"output={out}"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    from rt4ksr.models import load_official

    ref_model = reparameterize(load_official(ckpt))
    x = torch.rand(1, 3, 36, 40)
    with torch.no_grad():
        assert np.abs(sess.run(None, {"lr": x.numpy()})[0] - ref_model(x).numpy()).max() <= 1e-4


def test_bad_format():
    with pytest.raises(ValueError, match="format must be one of"):
        export(reparameterize(RTSRN()), "tflite", Path("x"))


def test_a_bad_input_size_is_one_line(tmp_path):
    from rt4ksr.core.errors import ConfigValueError
    from rt4ksr.inference.exporters import static_shape

    assert static_shape("onnx", [24, 40], 2) == (24, 40)
    for bad in (24, [24], [24, 40, 3], [0, 40], [24, -1], ["a", 40], [2.5, 40], [True, 40], "24x40"):
        with pytest.raises(ConfigValueError, match="input_size must be"):
            static_shape("onnx", bad)
    with pytest.raises(ConfigValueError, match="batch_size"):
        static_shape("onnx", [24, 40], 0)
    torch.save(reparameterize(RTSRN(feature_channels=8, num_blocks=1)).state_dict(), tmp_path / "w.pth")
    proc = subprocess.run([sys.executable, "-m", "rt4ksr.export", f"ckpt_path={tmp_path / 'w.pth'}",
                           "input_size=[24,0]"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: input_size must be [height, width] of the LR input, two "
                                                "positive integers, got [24, 0]"]


def test_onnx_convention_static_shape_and_fp16(tmp_path, deploy):
    """The documented convention: input 'lr' and output 'sr', RGB NCHW in [0, 1], the metadata that says so, and
    a static-shape variant for TensorRT / vs-mlrt users."""
    import onnx
    import onnxruntime as ort

    from rt4ksr.inference.exporters import ONNX_CONVENTION

    path = export(deploy, "onnx", tmp_path / "s.onnx", fp16=True, input_size=(24, 40), batch_size=2)
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["scale"] == str(deploy.scale) and meta["precision"] == "fp16"
    assert all(meta[k] == v for k, v in ONNX_CONVENTION.items() if k != "axes") and "RGB" in proto.doc_string
    s = deploy.scale
    assert meta["axes"].startswith(f"static: lr (2, 3, 24, 40) -> sr (2, 3, {24 * s}, {40 * s})")
    assert meta["axes"] in proto.doc_string and "dynamic" not in proto.doc_string
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = [[d.dim_value for d in t.type.tensor_type.shape.dim] for t in (inp, out)]
    assert (inp.name, out.name) == ("lr", "sr")
    assert dims == [[2, 3, 24, 40], [2, 3, 24 * deploy.scale, 40 * deploy.scale]]  # every axis fixed
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    x = torch.rand(2, 3, 24, 40)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["sr"], {"lr": x.half().numpy()})[0]
    with torch.no_grad():
        assert np.abs(got.astype(np.float32) - deploy(x).numpy()).max() <= 2e-2
    dynamic = onnx.load(str(export(deploy, "onnx", tmp_path / "d.onnx")))
    assert {p.key: p.value for p in dynamic.metadata_props}["axes"] == ONNX_CONVENTION["axes"]
    assert [d.dim_param for d in dynamic.graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    with pytest.raises(ValueError, match="ONNX only"):
        export(deploy, "torchscript", tmp_path / "x.pt", input_size=(24, 40))


def test_exports_given_as_weights_are_named(tmp_path, deploy):
    """An ONNX or TorchScript export holds a graph, not weights: ckpt_path says so (without torch's warning),
    whatever the file is called."""
    import warnings

    from rt4ksr.models.checkpoint import CheckpointMismatchError

    export(deploy, "onnx", tmp_path / "m.onnx")
    export(deploy, "torchscript", tmp_path / "m.pt")
    (tmp_path / "renamed.bin").write_bytes((tmp_path / "m.onnx").read_bytes())
    for name, kind in (("m.onnx", "an ONNX export"), ("renamed.bin", "an ONNX export"), ("m.pt", "a TorchScript")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(CheckpointMismatchError, match=f"{kind}.*give the .pth, .ckpt or .safetensors"):
                load_file(tmp_path / name)


def test_export_writes_into_the_current_folder_by_default(tmp_path):
    """The checkpoint's folder may be read-only (a shared folder): the default output is the current folder."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "work").mkdir()
    ckpt = tmp_path / "shared" / "w.pth"
    model = reparameterize(RTSRN(feature_channels=8, num_blocks=1))
    torch.save({"state_dict": model.state_dict(), "config": model.config}, ckpt)
    proc = subprocess.run([sys.executable, "-m", "rt4ksr.export", f"ckpt_path={ckpt}", "format=safetensors"],
                          capture_output=True, text=True, cwd=tmp_path / "work", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["w.safetensors"]
    assert [p.name for p in (tmp_path / "shared").iterdir()] == ["w.pth"]
