"""The thread policy (rt4ksr.core.threads): chosen before torch starts its pools, overridden by threads= or
RT4KSR_THREADS, refused in one line when wrong, and followed while a command runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from rt4ksr.core import threads
from rt4ksr.core.errors import ConfigValueError

ENV = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", threads.ENV)}


def run(args: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env={**ENV, **(env or {})}, timeout=300, **kw)


@pytest.mark.parametrize("value, expected", [("auto", None), (None, None), ("", None), ("2", 2), (3, 3), (1.0, 1)])
def test_thread_values(value, expected):
    assert threads.parse_threads(value) == expected


@pytest.mark.parametrize("value", ["0", 0, -1, "two", 1.5, True, "2x"])
def test_bad_thread_values_are_refused(value):
    with pytest.raises(ConfigValueError, match="threads must be auto or a whole number"):
        threads.parse_threads(value)


def test_the_command_line_wins_over_the_environment():
    env = {threads.ENV: "3", "OMP_NUM_THREADS": "4"}
    assert threads.requested(["model=x", "threads=2"], env) == ("2", "threads=")
    assert threads.requested(["model=x"], env) == ("3", threads.ENV)
    assert threads.requested([], {"OMP_NUM_THREADS": "4"}) == ("4", "OMP_NUM_THREADS")
    assert threads.requested([], {}) == ("auto", "auto")


def test_prepare_process_sizes_the_pools_in_the_environment():
    env: dict[str, str] = {}
    p = threads.prepare_process(["threads=3"], env)
    assert p.fixed == 3 and env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
    env = {"OMP_NUM_THREADS": "1"}
    p = threads.prepare_process([], env)
    assert p.fixed == 1 and p.source == "OMP_NUM_THREADS" and env["OMP_NUM_THREADS"] == "1"
    env = {}
    p = threads.prepare_process(["threads=nope"], env)  # left for configure to refuse in one line
    assert p.source == "invalid" and env["OMP_NUM_THREADS"] == str(threads.usable_cores())


def _policy(cores: int, current: int) -> threads.ThreadPolicy:
    return threads.ThreadPolicy(cores=cores, fixed=None, source="auto", before_torch=True, current=current)


@pytest.mark.parametrize("cores, current, others, expected", [
    (2, 2, 0.0, 2), (2, 2, 0.3, 2), (2, 2, 0.5, 1), (2, 2, 1.0, 1), (2, 2, 2.0, 1), (2, 2, 5.0, 1),
    (2, 1, 0.3, 1), (2, 1, 0.2, 2), (2, 1, 0.0, 2),
    (8, 8, 3.0, 5), (8, 5, 3.0, 5), (8, 5, 1.0, 7), (8, 8, 0.4, 8),
])
def test_auto_takes_the_free_cores_without_flapping(cores, current, others, expected):
    assert _policy(cores, current).target(others) == expected


def test_a_fixed_count_never_moves():
    p = threads.ThreadPolicy(cores=2, fixed=3, source="threads=", before_torch=True, current=3)
    assert p.target(2.0) == 3 and p.target(0.0) == 3


def test_the_load_meter_sees_another_process():
    meter = threads.LoadMeter()
    meter.start()
    burner = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()+1.5\nwhile time.time()<t: pass"])
    burner.wait()
    others = meter.others()
    if others is None:
        pytest.skip("no /proc/stat here")
    assert others > 0.5, others  # the burner kept about one core busy; this process slept


def test_follow_load_resizes_torch_and_keeps_a_fixed_count(monkeypatch):
    before = torch.get_num_threads()
    p = _policy(2, 2)
    monkeypatch.setattr(threads, "_policy", p)
    monkeypatch.setattr(threads, "SMOOTH_S", 1e-9)  # no smoothing: each reading counts in full
    monkeypatch.setattr(p.meter, "others", lambda: 1.0)
    try:
        assert threads.follow_load(force=True) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(p.meter, "others", lambda: 0.0)
        assert threads.follow_load() == 1  # checked less than half a second ago: unchanged
        assert threads.follow_load(force=True) == 2 and torch.get_num_threads() == 2
        p.fixed, p.current = 1, 1
        assert threads.follow_load(force=True) == 1
    finally:
        torch.set_num_threads(before)


def test_a_short_burst_moves_nothing_and_a_held_count_stays(monkeypatch):
    before = torch.get_num_threads()
    p = _policy(2, 2)
    p.others = 0.0
    monkeypatch.setattr(threads, "_policy", p)
    readings = iter([1.0, 0.0, 0.0])
    monkeypatch.setattr(p.meter, "others", lambda: next(readings))
    try:
        p._checked = time.monotonic() - 0.5
        assert threads.follow_load(force=True) == 2  # half a second of one busy core: smoothed below half
        threads.hold()
        assert p.held and "held" in p.describe()
        monkeypatch.setattr(p.meter, "others", lambda: 2.0)
        p._checked = time.monotonic() - 10
        assert threads.follow_load(force=True) == 2 and p.changes == 0
    finally:
        torch.set_num_threads(before)


def test_onnxruntime_sessions_do_not_spin():
    ort = pytest.importorskip("onnxruntime")
    options = threads.onnxruntime_options(ort, 1)
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_python_m_sets_the_pools_before_torch_starts():
    """``python -m rt4ksr.<command>`` imports the package first, which sizes OpenMP before torch is imported."""
    code = ("import sys; sys.argv = ['-m', 'threads=1']\nimport rt4ksr, os\nassert 'torch' not in sys.modules\n"
            "import torch\nprint(os.environ['OMP_NUM_THREADS'], torch.get_num_threads())")
    out = run([sys.executable, "-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]


def test_the_console_command_imports_no_torch_before_the_policy():
    out = run([sys.executable, "-c", "import sys, rt4ksr.cli; print('torch' in sys.modules)"])
    assert out.stdout.strip() == "False", out.stderr


@pytest.fixture(scope="module")
def tiny_png(tmp_path_factory):
    import cv2
    import numpy as np

    path = tmp_path_factory.mktemp("img") / "tiny.png"
    cv2.imwrite(str(path), np.full((16, 16, 3), 120, np.uint8))
    return path


@pytest.mark.parametrize("how", ["console", "module"])
def test_a_command_says_what_it_chose(how, tiny_png, tmp_path):
    console = "import sys; from rt4ksr.cli import main; sys.argv[0] = 'rt4ksr'; main()"  # as the console script
    cmd = ([sys.executable, "-c", console, "upscale"] if how == "console" else
           [sys.executable, "-m", "rt4ksr.upscale"])
    cmd += [f"input={tiny_png}", "output=out.png", "backend=torch", "progress=false"]
    out = run([*cmd, "threads=1"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("threads:")]
    assert lines == [f"threads: 1 (threads=; this machine has {threads.usable_cores()} usable cores)"]
    assert "before the policy" not in out.stderr and "threads:" not in out.stdout  # stdout keeps its output
    auto = run(cmd, cwd=tmp_path)
    assert auto.returncode == 0 and "threads: " in auto.stderr and "(auto" in auto.stderr, auto.stderr
    env = run(cmd, env={threads.ENV: "1"}, cwd=tmp_path)
    assert f"threads: 1 ({threads.ENV};" in env.stderr, env.stderr


@pytest.mark.parametrize("bad, env", [("threads=0", {}), ("threads=many", {}), ("", {threads.ENV: "lots"})])
def test_a_bad_thread_count_is_one_line_and_exit_1(bad, env, tmp_path):
    out = run([sys.executable, "-m", "rt4ksr.summary", *([bad] if bad else [])], env=env, cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert out.stderr.startswith("error: threads must be auto or a whole number of threads >= 1")


def test_every_command_applies_the_policy(monkeypatch):
    """A ``hydra_command`` configures the policy before the command's own code runs, and every command is one."""
    import importlib

    from rt4ksr.cli import COMMANDS
    from rt4ksr.command import hydra_command
    from rt4ksr.core.config import compose

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_policy", None)

    @hydra_command("zoo", say_threads=False)
    def probe(cfg):
        return torch.get_num_threads(), threads.policy().fixed

    try:
        assert probe(compose("zoo", ["threads=1"])) == (1, 1)
    finally:
        torch.set_num_threads(before)
    for name, module in COMMANDS.items():
        text = open(importlib.import_module(module).__file__).read()
        assert "@hydra_command(" in text, f"rt4ksr {name} does not start through hydra_command"
