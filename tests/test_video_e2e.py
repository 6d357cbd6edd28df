"""scripts/video_e2e.py at a test size on the CPU: the clip, the floor, the command, the checks and the JSON; bad
arguments and a missing PyAV end in one line."""

import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "video_e2e.py"


def run_script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The script as a user runs it; run folders to a temporary log dir, wandb offline (as helpers.run_module)."""
    env = {**os.environ, "RT4KSR_LOG_DIR": os.path.join(tempfile.gettempdir(), "rt4ksr-test-logs"),
           "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_tiny_run_writes_the_report(tmp_path):
    pytest.importorskip("av", reason="PyAV is not installed: pip install 'rt4ksr[video]'")
    report = tmp_path / "report" / "video.json"
    proc = run_script("--width", "64", "--height", "36", "--frames", "8", "--work", str(tmp_path / "work"),
                      "--json", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(report.read_text())
    assert r["device"] == "cpu" and r["device_name"] == "cpu" and r["cpu_count"] == os.cpu_count()
    assert (r["scale"], r["weights"], r["frames"], r["fps"], r["batch_size"]) == (2, "rt4ksr-x2", 8, 30, 4)
    assert (r["input"]["width"], r["input"]["height"]) == (64, 36)
    assert (r["output"]["width"], r["output"]["height"], r["output"]["is_4k"]) == (128, 72, False)
    v = r["verify"]
    assert v["ok"] and all(v["checks"].values())
    assert (v["frames_in"], v["frames_out"], v["width"], v["height"], v["codec"]) == (8, 8, 128, 72, "h264")
    assert v["psnr_shrunk_vs_input_db"] >= 25
    enc = r["encoder"]
    assert enc["codec"] == "libx264" and enc["options"] == {"crf": "18", "preset": "medium"}
    assert "crf=18.0" in enc["x264_settings"] and enc["threads"] >= 1  # as x264 recorded them in the output
    assert enc["sliced_threads"] == 0  # frame threads, as upscale_video sets
    stages = r["stages"]
    assert set(stages) == {"decode", "floor_decode_encode", "floor_slice_threads", "model", "pipeline",
                           "pipeline_slice_threads", "command"}
    for name, stage in stages.items():
        assert stage["fps"] > 0 and stage["seconds"] > 0 and stage["frames"] == 8, name
    assert stages["model"]["load_s"] > 0 and stages["command"]["startup_s"] >= 0
    assert stages["command"]["progress_fps"] > 0  # parsed from the command's progress bar
    assert r["ratios"]["command_vs_floor"] > 0 and r["claim"]["bound_by"] in ("model", "decode+encode")
    assert isinstance(r["claim"]["holds"], bool)
    assert datetime.fromisoformat(r["date"]).tzinfo is not None
    assert r["commands"]["upscale"].endswith("-m rt4ksr.upscale input=" + r["input"]["path"] + " output="
                                             + str(tmp_path / "work" / "upscaled_x2.mp4") + " weights=rt4ksr-x2")
    assert "video e2e x2: 64x36 -> 128x72, 8 frames" in proc.stdout
    # the clip is kept for the next run, the upscaled videos are not (no --keep)
    assert Path(r["input"]["path"]).is_file() and not list((tmp_path / "work").glob("upscaled_*"))


@pytest.mark.parametrize("args,message", [
    (["--scale", "5"], "error: argument --scale: invalid choice"),
    (["--width", "63"], "error: --width and --height must be even"),
    (["--override", "kernels"], "error: --override takes KEY=VALUE"),
])
def test_bad_arguments_end_in_one_line(tmp_path, args, message):
    proc = run_script("--work", str(tmp_path), *args, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(message) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not any(tmp_path.iterdir())  # refused before any work


def test_missing_pyav_names_the_extra(tmp_path):
    code = ("import runpy, sys; sys.modules['av'] = None; "  # 'import av' then raises ImportError
            f"sys.argv = [{str(SCRIPT)!r}, '--work', {str(tmp_path)!r}]; "
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: PyAV is not installed: pip install 'rt4ksr[video]' (or pip install av)"
