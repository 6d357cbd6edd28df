"""rt4ksr.benchmark on the CPU: every mode reports a time or why it cannot run here; the fp16 check."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import make_tiny_data
from rt4ksr.measure.speed import benchmark, format_rows, fp16_psnr_loss
from rt4ksr.models import RTSRN, reparameterize

ROOT = Path(__file__).resolve().parents[1]


def test_modes_on_cpu():
    train = RTSRN(feature_channels=8, num_blocks=1)
    rows = benchmark(train, reparameterize(train), torch.device("cpu"), (24, 32), [1, 2],
                     ["train_fp32", "deploy_fp32", "deploy_fp16", "kernels", "onnxruntime_cpu"], warmup=1, repeats=2)
    assert [(r["mode"], r["batch"]) for r in rows] == [(m, b) for m in ["train_fp32", "deploy_fp32", "deploy_fp16",
                                                                       "kernels", "onnxruntime_cpu"] for b in (1, 2)]
    by = {(r["mode"], r["batch"]): r for r in rows}
    assert by[("deploy_fp32", 2)]["fps"] > 0 and by[("onnxruntime_cpu", 1)]["ms"] > 0
    for r in (by[("deploy_fp32", 2)], by[("onnxruntime_cpu", 1)]):  # Stats.to_row: median, quartiles, IQR, rounds
        assert r["p25_ms"] <= r["ms"] <= r["p75_ms"] and r["iqr_ms"] == r["p75_ms"] - r["p25_ms"]
        assert r["rounds"] == len(r["values"]) == 2
    assert by[("deploy_fp32", 2)]["fps"] == pytest.approx(2000 / by[("deploy_fp32", 2)]["ms"])  # frames per second
    assert "GPU" in by[("deploy_fp16", 1)]["skipped"]
    assert "TRITON_INTERPRET" in by[("kernels", 1)]["skipped"]
    assert "skipped" in format_rows(rows)


def test_fp16_check_reports_the_loss(tmp_path):
    _, testsets = make_tiny_data(tmp_path)
    out = fp16_psnr_loss(reparameterize(RTSRN(feature_channels=8, num_blocks=1)), torch.device("cpu"),
                         str(testsets), ["tiny"], 2)
    assert abs(out["tiny"]["loss_db"]) < 0.05
    # conftest sets TRITON_INTERPRET=1: the fp16 Triton kernels are checked too, on the interpreter
    assert abs(out["tiny"]["kernels_loss_db"]) < 0.05


def test_benchmark_command_json(tmp_path):
    _, testsets = make_tiny_data(tmp_path)
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "rt4ksr.benchmark", "model.feature_channels=8", "model.num_blocks=1",
                           "modes=[train_fp32,deploy_fp32,onnxruntime_cpu]", "batch_sizes=[1]", "cpu_repeats=2",
                           "warmup=1", "cpu_size=[24,32]", f"data.testsets_dir={testsets}",
                           "fp16_check_sets=[tiny]", "kernel_options.fuse=2", f"json={out}"],
                          capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert {r["mode"] for r in report["rows"]} == {"train_fp32", "deploy_fp32", "onnxruntime_cpu"}
    assert "tiny" in report["fp16_check"]
    assert report["kernel_options"]["fuse"] == 2  # the options behind the kernels' figures
    assert "kernels_loss_db" in report["fp16_check"]["tiny"]  # on the interpreter here (conftest)


def test_modes_leave_the_model_alone():
    """Modes cast and reformat copies: an fp16 mode that cast the caller's model in place would make every
    later mode, and the fp16 check's fp32 reference, run on fp16-rounded weights."""
    from rt4ksr.measure.speed import _runner

    deploy = reparameterize(RTSRN(feature_channels=8, num_blocks=1))
    before = {k: v.clone() for k, v in deploy.state_dict().items()}
    _runner(deploy, torch.device("cpu"), 1, (8, 8), half=True, channels_last=True)
    for k, v in deploy.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]) and v.is_contiguous(), k
