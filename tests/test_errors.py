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

from helpers import randomize_, run_module
from rt4ksr.core.errors import EXIT_FAILURES, EXIT_USER_ERROR, UserError, user_command
from rt4ksr.models import RTSRN, reparameterize
from rt4ksr.models.checkpoint import portable_state_dict

ROOT = Path(__file__).resolve().parents[1]


def run(module: str, *args: str, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:  # a full disk, simulated with a file-size limit (ulimit -f)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return run_module(module, *args, timeout=300, preexec_fn=limit if limit_bytes else None)


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run failed with exit status 1 and one 'error: ...' line on stderr that holds every fragment."""
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    # the thread policy's line (said once the model has run) is information, not part of the error
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("threads: ")]
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
    one_line_error(run("rt4ksr.upscale", "output=o.png"), "input is required")
    one_line_error(run("rt4ksr.upscale", "weights=rt4ksr-x9", f"input={weights / 'img.png'}", "output=o.png"),
                   "weights=rt4ksr-x9: no such zoo entry", "rt4ksr zoo")
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

    from rt4ksr.core.files import NoSpaceError, atomic_path

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


RUN_MANY = """
import contextlib, io, json, sys, traceback
import importlib
module = importlib.import_module(sys.argv[1])
results = []
for argv in json.loads(sys.argv[2]):
    sys.argv = [f"rt4ksr {sys.argv[1]}", *argv]
    err, rc = io.StringIO(), 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            module.main()
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else print(e.code, file=sys.stderr) or 1
        except BaseException:
            traceback.print_exc()
            rc = -1
    results.append([rc, err.getvalue()])
print(json.dumps(results))
"""


def run_many(module: str, *cases: list[str]) -> list[subprocess.CompletedProcess]:
    """Each argument list run through ``module.main()`` as the command line would, in one process (one import
    instead of one per case); each result has the exit status and stderr of its run. Nothing may reach the
    process's stderr outside them (what C libraries such as libpng print)."""
    import json

    env = {**os.environ, "RT4KSR_LOG_DIR": tempfile.gettempdir() + "/rt4ksr-test-logs"}
    proc = subprocess.run([sys.executable, "-c", RUN_MANY, module, json.dumps([list(c) for c in cases])], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    return [subprocess.CompletedProcess(list(c), rc, "", err)
            for c, (rc, err) in zip(cases, json.loads(proc.stdout.strip().splitlines()[-1]), strict=True)]


def test_option_mistakes_are_one_line_before_the_model_loads(tmp_path, weights):
    """Misspelt options, values of the wrong type or range, devices this machine lacks and Real-ESRGAN flags
    rt4ksr lacks: one line naming the option, exit status 1. The checkpoint does not exist, so each error is
    said before any model is loaded."""
    base = [f"ckpt_path={tmp_path / 'never-read.pth'}", f"input={weights / 'img.png'}", f"output={tmp_path / 'o.png'}"]
    cases = {
        ("tilee=5",): ["unknown option 'tilee' (did you mean 'tile'?)"],
        ("--tilee", "5"): ["unknown option '--tilee' (did you mean '--tile'?)"],
        ("model.feature_chanels=8",): ["did you mean 'model.feature_channels'?"],
        ("model=rt4ksr_x9",): ["model/rt4ksr_x9", "rt4ksr_x3"],
        ("tile=abc",): ["tile must be an integer", "'abc'"],
        ("-t", "abc"): ["tile must be an integer"],
        ("tile=64.5",): ["tile must be an integer", "64.5"],
        ("tile_pad=abc",): ["tile_pad must be"],
        ("-s", "abc"): ["outscale must be a number"],
        ("half=maybe",): ["half must be true, false or null"],
        ("batch_size=0",): ["batch_size must be an integer >= 1"],
        ("quality=500",): ["quality must be an integer from 0 to 100"],
        ("crf=99",): ["crf must be"],
        ("suffix=a/b",): ["suffix must not hold"],
        ("device=bogus",): ["device must be auto, cpu, cuda or cuda:N"],
        ("--face_enhance",): ["GFPGAN"],
        ("ext=webp",): ["ext=webp contradicts output o.png"],
    }
    if not torch.cuda.is_available():
        cases[("-g", "0")] = ["device=cuda:0"]
    results = run_many("rt4ksr.upscale", *([*base, *args] for args in cases))
    for proc, fragments in zip(results, cases.values(), strict=True):
        one_line_error(proc, *fragments)


def test_unwritable_outputs_are_one_line(tmp_path, weights):
    (tmp_path / "one.png").write_bytes(b"a file")
    ck = f"ckpt_path={weights / 'deploy.pth'}"
    cases = [(ck, f"input={weights / 'img.png'}", f"output={tmp_path / 'one.png' / 'x.png'}"),
             (ck, f"input={weights / 'img.png'}", "output=/proc/x.png")]
    for proc in run_many("rt4ksr.upscale", *cases):
        one_line_error(proc, "choose another output")
    cases = [(ck, f"output={tmp_path / 'one.png' / 'x.onnx'}"), (ck, "format=torchscript", "output=/proc/x.pt")]
    for proc in run_many("rt4ksr.export", *cases):
        one_line_error(proc, "cannot write", "choose another output")


def test_the_atomic_writer_names_an_unwritable_location(tmp_path, monkeypatch):
    import errno

    from rt4ksr.core.files import NoSpaceError, OutputNotWritableError, atomic_path, check_writable, write_bytes

    (tmp_path / "one.png").write_bytes(b"a file")
    with pytest.raises(OutputNotWritableError, match=r"one.png is a file, not a folder; choose another output"):
        write_bytes(tmp_path / "one.png" / "x.png", b"x")
    with pytest.raises(OutputNotWritableError, match=r"cannot write .*it is a folder"):
        write_bytes(tmp_path, b"x")
    with pytest.raises(OutputNotWritableError, match="is a file, not a folder"):
        check_writable(tmp_path / "one.png" / "sub")

    def read_only(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(OutputNotWritableError) as err:
        write_bytes(tmp_path / "r.png", b"x")
    assert str(err.value) == f"cannot write {tmp_path / 'r.png'}: Read-only file system; choose another output"
    assert [p.name for p in tmp_path.iterdir()] == ["one.png"]  # no temporary file left
    with pytest.raises(NoSpaceError), atomic_path(tmp_path / "full.bin"):
        raise OSError(errno.ENOSPC, "No space left on device")
    if os.geteuid() != 0:  # root writes into read-only folders
        (tmp_path / "ro").mkdir(mode=0o555)
        with pytest.raises(OutputNotWritableError, match="Permission denied"):
            write_bytes(tmp_path / "ro" / "x.png", b"x")


def test_devices_this_machine_lacks_are_one_line():
    from rt4ksr.core.config import resolve_device
    from rt4ksr.core.errors import ConfigValueError

    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("bogus", "cuda:x", "meta"):
        with pytest.raises(ConfigValueError, match="device must be"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigValueError, match="device=cuda:0"):
            resolve_device(0)
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigValueError, match="MPS"):
            resolve_device("mps")


def test_ctrl_c_and_sigterm_are_one_line_and_leave_no_partial_file(tmp_path):
    """Ctrl-C prints 'interrupted' (status 130); SIGTERM runs the same cleanup and prints 'terminated' (143), so
    no temporary file is left; the handler is the caller's again afterwards."""
    import signal

    from rt4ksr.core.errors import EXIT_INTERRUPTED, Terminated

    @user_command
    def interrupted() -> None:
        raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as e:
        interrupted()
    assert e.value.code == EXIT_INTERRUPTED and signal.getsignal(signal.SIGTERM) == before
    assert issubclass(Terminated, KeyboardInterrupt)
    code = f"""
import sys, time
from rt4ksr.core.errors import user_command
from rt4ksr.core.files import atomic_path

@user_command
def run():
    with atomic_path({str(tmp_path / 'out.webm')!r}) as tmp:
        tmp.write_bytes(b"partial")
        print("writing", flush=True)
        time.sleep(60)

run()
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    assert list(tmp_path.glob(".out.partial-*"))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.strip() == "terminated", err
    assert not list(tmp_path.iterdir())


def test_a_folder_where_every_file_failed_says_no_file_was_written():
    from rt4ksr.core.errors import PartialFailure

    assert str(PartialFailure("file(s)", ["a", "b"], written=0)).endswith("no file was written")
    assert str(PartialFailure("file(s)", ["a"], written=2)).endswith("the others were written")


def test_broken_and_truncated_images_are_one_line(tmp_path, weights):
    """A JPEG cut in half (libjpeg would fill it with gray and print a warning) and a PNG whose data is damaged
    (libpng would print its own 'libpng error' line first): one line each, and a folder of only such files says
    that no file was written."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "cut.jpg"), np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = (src / "cut.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(data[: len(data) // 2])
    png = bytearray((weights / "img.png").read_bytes())
    start = png.find(b"IDAT") + 20
    png[start:start + 100] = b"A" * 100
    (src / "damaged.png").write_bytes(bytes(png))
    ck = f"ckpt_path={weights / 'deploy.pth'}"
    single = [(ck, f"input={src / name}", f"output={tmp_path / 'o.png'}") for name in ("cut.jpg", "damaged.png")]
    folder = (ck, f"input={src}", f"output={tmp_path / 'out'}", "progress=false")
    *ones, many = run_many("rt4ksr.upscale", *single, folder)
    one_line_error(ones[0], "cannot read image", "cut.jpg", "(truncated")
    one_line_error(ones[1], "cannot read image", "damaged.png")
    assert many.returncode == EXIT_FAILURES, many.stderr
    lines = many.stderr.strip().splitlines()
    assert len(lines) == 3 and lines[-1] == "error: 2 file(s) failed (listed above); no file was written", lines
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "out").exists()
