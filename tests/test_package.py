"""The package as a user installs it: a wheel in a fresh virtual environment, commands run from outside the
checkout, the ``rt4ksr`` console command, a user's own config folder, and optional extras."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from helpers import ROOT
from rt4ksr.cli import COMMANDS, main, usage
from rt4ksr.core.extras import MissingExtraError, require


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding rt4ksr from a freshly built wheel. Its dependencies come from this environment's
    site-packages through a .pth line (a plain path: this environment's editable rt4ksr is not picked up)."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((tmp / "dist").glob("rt4ksr-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True, timeout=120)
    py = tmp / "venv" / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert inst.returncode == 0, inst.stderr[-3000:]
    return tmp / "venv"


def run_in(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RT4KSR_")} | {"RT4KSR_LOG_DIR": str(cwd / "logs")}
    cmd = [str(venv / "bin" / "rt4ksr"), *args[1:]] if args[0] == "rt4ksr" else list(args)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_wheel_runs_every_kind_of_command_from_outside_the_checkout(installed, tmp_path):
    py = str(installed / "bin" / "python")
    where = run_in(installed, py, "-c", "import rt4ksr.core.config as c; print(c.CONFIG_DIR)", cwd=tmp_path)
    assert where.returncode == 0 and str(installed) in where.stdout, where.stdout + where.stderr  # not the checkout
    proc = run_in(installed, py, "-m", "rt4ksr.summary", "model=rt4ksr_x3", "json=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["params_deploy"] > 0
    proc = run_in(installed, "rt4ksr", "summary", "model=rt4ksr_x2", "json=true", cwd=tmp_path)  # console script
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_in(installed, py, "-m", "rt4ksr.train", "--cfg", "job", "experiment=quickstart", cwd=tmp_path)
    assert proc.returncode == 0 and "quickstart" in proc.stdout, proc.stderr[-3000:]


def test_the_installed_package_upscales_with_its_own_weights(installed, tmp_path):
    """From a folder outside the checkout, with no weights argument: the bundled zoo at x2, x3 and x4."""
    import cv2
    import numpy as np

    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8))
    for args, scale in (((), 2), (("-s", "3"), 3), (("-s", "4"), 4)):
        out = tmp_path / f"x{scale}.png"
        proc = run_in(installed, "rt4ksr", "upscale", "-i", str(photo), "-o", str(out), *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert cv2.imread(str(out)).shape[:2] == (20 * scale, 28 * scale)
        assert f"the zoo's default at x{scale}" in proc.stdout + proc.stderr
    proc = run_in(installed, "rt4ksr", "zoo", cwd=tmp_path)
    assert proc.returncode == 0 and "official-x2" in proc.stdout and "rt4ksr-x4" in proc.stdout, proc.stderr
    proc = run_in(installed, "rt4ksr", "zoo", "name=rt4ksr-x4", cwd=tmp_path)
    assert proc.returncode == 0 and f"path: {installed}" in proc.stdout, proc.stdout  # the wheel's copy


def test_a_users_config_folder_extends_the_packaged_ones(installed, tmp_path):
    mine = tmp_path / "my_configs" / "model"
    mine.mkdir(parents=True)
    (mine / "tiny_x2.yaml").write_text("defaults:\n  - rt4ksr_x2\n  - _self_\n\nnum_blocks: 1\nfeature_channels: 8\n")
    proc = run_in(installed, "rt4ksr", "summary", "model=tiny_x2", "json=true",
                  f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = run_in(installed, "rt4ksr", "summary", "model=rt4ksr_x2", "json=true", cwd=tmp_path)
    tiny, released = (json.loads(p.stdout.strip().splitlines()[-1]) for p in (proc, ours))
    assert tiny["params_deploy"] < released["params_deploy"]


def test_console_command_lists_commands_and_refuses_unknown_ones(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and all(name in out for name in COMMANDS)
    with pytest.raises(SystemExit) as e:
        main(["trian"])
    assert "unknown command 'trian'" in str(e.value.code)
    assert usage().count("\n") >= len(COMMANDS)


def test_a_missing_extra_names_its_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'rt4ksr\[video\]'"):
        require("av", "video", "video upscaling")


def test_a_missing_extra_is_one_line_and_a_non_zero_exit(tmp_path):
    """The upscaler without PyAV: one line naming the install, exit status 1, no traceback."""
    code = ("import sys; sys.modules['av'] = None; sys.argv = ['rt4ksr', 'upscale', 'ckpt_path=none', "
            f"'input={tmp_path / 'clip.mp4'}', 'output={tmp_path / 'out.mp4'}']; "
            "from rt4ksr.inference.upscaling import upscale_video; from rt4ksr.core.errors import user_command\n"
            "user_command(upscale_video)(None, None, None)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: video upscaling needs the 'av' package: pip install 'rt4ksr[video]'"
