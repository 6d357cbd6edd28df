"""SIGTERM and Ctrl-C during a real training process: last.ckpt saved, one line with the resume command, the
shell's status for the signal, no traceback, also when the DataLoader workers get the signal; the resume runs."""

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from helpers import make_tiny_data, tiny_train_overrides
from rt4ksr.core.config import compose
from rt4ksr.core.errors import Stopped
from rt4ksr.training.run import train

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")


def start_training(root: Path, run: str) -> subprocess.Popen:
    """A training run with no end of its own (100000 epochs of 50 steps, validated every 10 steps, so that a
    signal lands mid-epoch), one DataLoader worker for training and one for validation, in a process group of
    its own."""
    train_dir, testsets = make_tiny_data(root)
    changes = {"data.num_workers=0": "data.num_workers=1", "data.val_workers=0": "data.val_workers=1",
               "trainer.max_epochs=2": "trainer.max_epochs=100000", "data.repeats=2": "data.repeats=50"}
    overrides = [changes.get(o, o) for o in tiny_train_overrides(root, train_dir, testsets, run)]
    overrides.append("+trainer.val_check_interval=10")
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "rt4ksr.train", *overrides], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_until_training(proc: subprocess.Popen, step: int) -> list[str]:
    """Read the run's log until its whole-run progress line reports ``step`` or more: it is training, past its
    first validation, with its workers running."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        m = re.match(r"progress: step (\d+)", line)
        if m and int(m.group(1)) >= step:
            return seen
    raise AssertionError("the run ended before training: " + "".join(seen) + proc.stderr.read())


@pytest.mark.parametrize("signum,code,word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
@pytest.mark.parametrize("target", ["process", "group"])
def test_a_signal_saves_last_ckpt_says_how_to_resume_and_the_resume_runs(tmp_path, signum, code, word, target):
    proc = start_training(tmp_path, "run")
    try:
        wait_until_training(proc, 10)
        if target == "group":  # as a terminal's Ctrl-C, systemd or a scheduler do: the workers get it too
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "DataLoader worker" not in err and "Error" not in err, err
    said = [line for line in err.splitlines() if word in line]
    assert len(said) == 1, err
    last = (tmp_path / "run" / "checkpoints" / "last.ckpt").resolve()
    m = re.fullmatch(rf"{word} at step (\d+): checkpoint saved to (\S+); resume with: (rt4ksr train .*)", said[0])
    assert m and Path(m.group(2)) == last, said[0]
    step, command = int(m.group(1)), shlex.split(m.group(3))
    assert command[-1] == f"ckpt_path={last}"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == step >= 10
    assert not list(last.parent.glob("*.tmp"))
    # the printed command's overrides resume the run (in this process: a second start-up costs seconds), with a
    # step budget two steps on so that it ends
    args = [a for a in command[2:] if not a.startswith("trainer.max_epochs=")] + [f"trainer.max_steps={step + 2}"]
    metrics = train(compose("train", args))
    assert metrics["global_step"] == step + 2 and (tmp_path / "run" / "metrics.json").is_file()


class SignalAt(L.pytorch.callbacks.Callback):
    """Sends ``signum`` to its own process ``times`` times, once, in the hook ``hook`` from step ``after_step``
    on: a signal at a chosen point of a run."""

    def __init__(self, hook: str, signum: int = signal.SIGTERM, times: int = 1, after_step: int = 0) -> None:
        self.signum, self.times, self.after_step, self.sent = signum, times, after_step, False
        setattr(self, hook, self._send)

    def _send(self, trainer: L.Trainer, *args: object, **kwargs: object) -> None:
        if self.sent or trainer.global_step < self.after_step:
            return
        self.sent = True
        for _ in range(self.times):
            os.kill(os.getpid(), self.signum)


def train_signalled(tiny_root: Path, hook: str, signum: int = signal.SIGTERM, times: int = 1, after_step: int = 0,
                    extra: tuple[str, ...] = ()):
    from omegaconf import OmegaConf, open_dict

    train_dir, testsets = make_tiny_data(tiny_root)
    cfg = compose("train", tiny_train_overrides(tiny_root, train_dir, testsets, "run") + list(extra))
    with open_dict(cfg):
        cfg.callbacks.signal = OmegaConf.create({"_target_": "test_signals.SignalAt", "hook": hook, "signum": signum,
                                                 "times": times, "after_step": after_step})
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(Stopped) as e:
        train(cfg)
    assert {s: signal.getsignal(s) for s in before} == before  # the caller's handlers again
    return e.value


def test_a_signal_while_setting_up_saves_nothing_and_says_so(tmp_path):
    """Before Lightning's loops run (the ``setup`` hooks), a signal stops at once: nothing trained, nothing saved."""
    stopped = train_signalled(tmp_path, "setup")
    assert stopped.exit_code == 143
    assert str(stopped).startswith("terminated before the first training step: nothing to resume; start again with: "
                                   "rt4ksr train")
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_a_signal_during_a_validation_saves_the_trained_state(tmp_path):
    """Ctrl-C in the middle of the first validation (step 2): it ends there, and last.ckpt holds step 2."""
    stopped = train_signalled(tmp_path, "on_validation_batch_end", signal.SIGINT)
    last = (tmp_path / "run" / "checkpoints" / "last.ckpt").resolve()
    assert stopped.exit_code == 130 and str(stopped).startswith(f"interrupted at step 2: checkpoint saved to {last}")
    assert torch.load(last, weights_only=True)["global_step"] == 2
    overrides = tiny_train_overrides(tmp_path, tmp_path / "train", tmp_path / "testsets", "resumed")
    assert train(compose("train", overrides + [f"ckpt_path={last}"]))["global_step"] == 4


def test_a_signal_after_training_keeps_the_final_checkpoint_and_resumes_to_the_end(tmp_path):
    """SIGTERM in the end-of-run test: last.ckpt is the final state, metrics.json not written; the resume
    command's ckpt_path finishes the run."""
    stopped = train_signalled(tmp_path, "on_test_start")
    last = (tmp_path / "run" / "checkpoints" / "last.ckpt").resolve()
    assert stopped.exit_code == 143 and str(stopped).startswith(
        f"terminated after training (step 4), before its final files were written: checkpoint saved to {last}")
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert torch.load(last, weights_only=True)["global_step"] == 4
    overrides = tiny_train_overrides(tmp_path, tmp_path / "train", tmp_path / "testsets", "resumed")
    metrics = train(compose("train", overrides + [f"ckpt_path={last}"]))
    assert metrics["global_step"] == 4 and (tmp_path / "resumed" / "metrics.json").is_file()


def test_a_second_signal_stops_at_once_and_keeps_the_last_whole_checkpoint(tmp_path):
    """Two Ctrl-Cs inside step 3 (after the validation at step 2 saved last.ckpt): the second stops mid-step, which
    is not saved; the line names the checkpoint of step 2."""
    stopped = train_signalled(tmp_path, "on_train_batch_start", signal.SIGINT, times=2, after_step=3,
                              extra=("trainer.max_epochs=3",))
    last = (tmp_path / "run" / "checkpoints" / "last.ckpt").resolve()
    assert stopped.exit_code == 130
    assert str(stopped).startswith(f"interrupted at step 3: the newest checkpoint, of step 2, is {last}; resume with: ")
    assert torch.load(last, weights_only=True)["global_step"] == 2
