"""The command-line entry points, run as a user runs them."""

import json
from pathlib import Path

import pytest

from helpers import DATA_DIR, official_ckpt, run_module
from rt4ksr import eval as rt_eval
from rt4ksr.core.config import compose
from rt4ksr.models.checkpoint import CheckpointMismatchError

ROOT = Path(__file__).resolve().parents[1]


def test_summary_json_last_line():
    proc = run_module("rt4ksr.summary", "model=rt4ksr_x2", "json=true")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    from rt4ksr.models import RTSRN, reparameterize

    model = RTSRN(scale=2)  # the counts themselves are asserted in test_models
    assert out["params_train"] == sum(p.numel() for p in model.parameters())
    assert out["params_deploy"] == sum(p.numel() for p in reparameterize(model).parameters())
    assert round(out["macs_deploy"] / 1e9, 1) == 20.2
    assert out["fusion_max_abs_diff"] <= 1e-5


def test_summary_x3_and_options():
    proc = run_module("rt4ksr.summary", "model=rt4ksr_x3", "model/baseblock=repbase", "model.num_blocks=2", "json=true")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["params_deploy"] < out["params_train"] and out["fusion_max_abs_diff"] <= 1e-5


def test_eval_official_x2_set5(tmp_path, testsets_dir):
    """The acceptance figure: set5 x2, Y channel, crop = scale: 36.14 dB / 0.9518."""
    ckpt = official_ckpt(2)
    proc = run_module("rt4ksr.eval", "model=rt4ksr_x2", f"ckpt_path={ckpt}", f"paths.data_dir={DATA_DIR}",
                      "data.test_sets=[set5]", f"metrics_file={tmp_path / 'out.json'}", "progress=false",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "out.json").read_text())
    assert res["set5"]["n"] == 5
    assert res["set5"]["psnr_y"] == pytest.approx(36.1446, abs=1e-4)
    assert res["set5"]["ssim_y"] == pytest.approx(0.9518, abs=1e-4)
    assert "set5" in proc.stdout and "36.14" in proc.stdout


def test_eval_official_x3_set5_and_set14(testsets_dir):
    cfg = compose("eval", ["model=rt4ksr_x3", f"ckpt_path={official_ckpt(3)}", f"paths.data_dir={DATA_DIR}",
                           "data.test_sets=[set5,set14]", "progress=false"])
    res = rt_eval.run(cfg)
    assert res["set14"]["n"] == 14  # img_003 is a grayscale PNG: converted to RGB
    assert res["set5"]["psnr_y"] == pytest.approx(32.19, abs=0.01)


def test_eval_wrong_scale_checkpoint_names_the_keys(testsets_dir):
    cfg = compose("eval", ["model=rt4ksr_x2", f"ckpt_path={official_ckpt(3)}", f"paths.data_dir={DATA_DIR}"])
    with pytest.raises(CheckpointMismatchError, match="upsample.0.weight"):
        rt_eval.run(cfg)


def test_eval_missing_data_folder_names_it_and_the_keys_to_set(tmp_path):
    cfg = compose("eval", [f"paths.data_dir={tmp_path}", "data.test_sets=[set5]", "progress=false"])
    with pytest.raises(FileNotFoundError, match=r"no test sets in .*paths.data_dir=.*RT4KSR_DATA_DIR.*layout"):
        rt_eval.run(cfg)


def test_eval_accepts_a_fused_state_dict(tmp_path, testsets_dir):
    import torch

    from rt4ksr.models import load_official, reparameterize

    torch.save(reparameterize(load_official(official_ckpt(2))).state_dict(), tmp_path / "fused.pth")
    cfg = compose("eval", [f"ckpt_path={tmp_path / 'fused.pth'}", f"paths.data_dir={DATA_DIR}",
                           "data.test_sets=[set5]", "progress=false"])
    assert rt_eval.run(cfg)["set5"]["psnr_y"] == pytest.approx(36.14, abs=0.01)


def test_version_and_a_misspelt_command(capsys):
    from rt4ksr import __version__
    from rt4ksr.cli import main

    for flag in ("--version", "-V"):
        with pytest.raises(SystemExit) as e:
            main([flag])
        assert e.value.code == 0 and capsys.readouterr().out.strip() == f"rt4ksr {__version__}"
    with pytest.raises(SystemExit) as e:
        main(["upscal"])
    assert str(e.value.code).startswith("error: unknown command 'upscal' (did you mean 'upscale'?)")


def test_upscale_help_lists_the_realesrgan_flags():
    proc = run_module("rt4ksr.upscale", "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--model_path", "-s, --outscale", "--tile_pad", "--fp32", "--alpha_upsampler", "-g, --gpu-id"):
        assert flag in proc.stdout
