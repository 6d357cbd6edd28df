"""Users' mistakes: one line saying what is wrong and what to do, a non-zero exit, no traceback; runs over many
files finish the rest and exit non-zero; a full disk leaves earlier files intact and no partial file."""

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers import randomize_
from rt4ksr.errors import EXIT_FAILURES, EXIT_USER_ERROR, UserError, user_command
from rt4ksr.models import RTSRN, reparameterize
from rt4ksr.models.checkpoint import portable_state_dict

ROOT = Path(__file__).resolve().parents[1]


def run(module: str, *args: str, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "RT4KSR_LOG_DIR": tempfile.gettempdir() + "/rt4ksr-test-logs"}

    def limit() -> None:  # a full disk, simulated with a file-size limit (ulimit -f)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, preexec_fn=limit if limit_bytes else None)


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run failed with exit status 1 and one 'error: ...' line on stderr that holds every fragment."""
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A small deploy file that carries its config, and a bare x3 state dict (no config)."""
    root = tmp_path_factory.mktemp("weights")
    deploy = reparameterize(randomize_(RTSRN(feature_channels=8, num_blocks=1), seed=1))
    torch.save({"state_dict": portable_state_dict(deploy), "config": deploy.config}, root / "deploy.pth")
    torch.save(RTSRN(scale=3).state_dict(), root / "x3.pth")
    cv2.imwrite(str(root / "img.png"), np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    return root


def test_known_mistakes_are_one_line(tmp_path, weights):
    ck = f"ckpt_path={weights / 'deploy.pth'}"
    one_line_error(run("rt4ksr.upscale", ck, f"input={tmp_path / 'nope.png'}", f"output={tmp_path}"),
                   "input not found", "nope.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    one_line_error(run("rt4ksr.upscale", ck, f"input={tmp_path / 'broken.png'}", f"output={tmp_path / 'o.png'}"),
                   "cannot read image", "broken.png")
    one_line_error(run("rt4ksr.upscale", f"input={tmp_path / 'x.png'}", "output=o.png"), "ckpt_path is required")
    one_line_error(run("rt4ksr.upscale", f"ckpt_path={weights / 'x3.pth'}", f"input={weights / 'img.png'}",
                       f"output={tmp_path / 'o.png'}"), "does not fit", "model=rt4ksr_x3")
    one_line_error(run("rt4ksr.export", ck, "format=tflite"), "format must be one of")
    one_line_error(run("rt4ksr.upscale", ck, f"input={weights / 'img.png'}", f"output={tmp_path / 'o.png'}",
                       "ext=gif"), "ext must be")


def test_missing_training_data_says_where_it_comes_from(tmp_path):
    line = one_line_error(run("rt4ksr.train", "model=rt4ksr_x2", f"paths.data_dir={tmp_path}",
                              f"hydra.run.dir={tmp_path / 'run'}", "logger=csv"),
                          "training folder not found", "DIV2K", "Flickr2K", "extract-subimages",
                          "experiment=quickstart", "experiment=bsd200_x2")
    assert len(line) < 800


def test_a_folder_with_failures_finishes_and_exits_non_zero(tmp_path, weights):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "c.png"):
        (src / name).write_bytes((weights / "img.png").read_bytes())
    (src / "b.png").write_bytes(b"not an image")
    proc = run("rt4ksr.upscale", f"ckpt_path={weights / 'deploy.pth'}", f"input={src}", f"output={tmp_path / 'out'}",
               "progress=false")
    assert proc.returncode == EXIT_FAILURES and "Traceback" not in proc.stderr, proc.stderr
    assert "wrote 2 file(s)" in proc.stdout and "1 failed" in proc.stdout
    assert "failed: " in proc.stderr and "b.png" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]


def test_success_says_what_it_wrote(tmp_path, weights):
    proc = run("rt4ksr.upscale", f"--model_path={weights / 'deploy.pth'}", "-i", str(weights / "img.png"),
               "-o", str(tmp_path), "-s", "3", "--suffix", "_out", "progress=false")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {tmp_path / 'img_out.png'}"
    assert cv2.imread(str(tmp_path / "img_out.png")).shape == (120, 120, 3)


def test_a_full_disk_is_one_line_and_leaves_earlier_files_intact(tmp_path, weights):
    src = tmp_path / "in"
    src.mkdir()
    small = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    cv2.imwrite(str(src / "a_small.png"), small)
    cv2.imwrite(str(src / "b_large.png"), np.random.default_rng(2).integers(0, 256, (200, 200, 3), dtype=np.uint8))
    out = tmp_path / "out"
    proc = run("rt4ksr.upscale", f"ckpt_path={weights / 'deploy.pth'}", f"input={src}", f"output={out}",
               "progress=false", limit_bytes=64 * 1024)  # the 400x400 output does not fit
    assert proc.returncode == EXIT_FAILURES and "Traceback" not in proc.stderr, proc.stderr
    assert "no space left writing" in proc.stderr and "b_large.png" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["a_small.png"]  # no partial file under any name
    assert cv2.imread(str(out / "a_small.png")).shape == (16, 16, 3)
    one = run("rt4ksr.upscale", f"ckpt_path={weights / 'deploy.pth'}", f"input={src / 'b_large.png'}",
              f"output={tmp_path / 'single.png'}", limit_bytes=64 * 1024)
    one_line_error(one, "no space left writing", "single.png")
    assert not any(tmp_path.glob("*single*")) and not any(tmp_path.glob(".*partial*"))


def test_a_full_disk_message_is_one_clean_line(tmp_path):
    import errno

    from rt4ksr.files import NoSpaceError, atomic_path

    with pytest.raises(NoSpaceError) as err, atomic_path(tmp_path / "x.bin"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(err.value).startswith("no space left writing") and "[Errno" not in str(err.value)
    assert err.value.errno == errno.ENOSPC and "\n" not in str(err.value)


def test_unexpected_errors_keep_their_traceback():
    @user_command
    def broken() -> None:
        raise RuntimeError("a bug")

    @user_command
    def mistake() -> None:
        raise UserError("what is wrong; what to do")

    with pytest.raises(RuntimeError, match="a bug"):
        broken()
    with pytest.raises(SystemExit) as e:
        mistake()
    assert e.value.code == EXIT_USER_ERROR
