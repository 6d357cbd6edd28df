"""Test helpers: where the shared data is, tiny data sets and configs, and hooks that break a run on purpose.

Tests read RT4KSR_DATA_DIR (default ../shared/data beside the repo) and RT4KSR_CHECKPOINTS_DIR (default
../shared/checkpoints), and skip with the reason when they are absent.
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("RT4KSR_DATA_DIR", ROOT.parent / "shared" / "data"))
CKPT_DIR = Path(os.environ.get("RT4KSR_CHECKPOINTS_DIR", ROOT.parent / "shared" / "checkpoints"))


def run_module(module: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600,
               **kwargs: Any) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` as a user runs it, its output captured: run folders go to a temporary log
    dir (never into the checkout), wandb stays offline and quiet; ``env`` adds or replaces variables."""
    base = {**os.environ, "RT4KSR_LOG_DIR": os.path.join(tempfile.gettempdir(), "rt4ksr-test-logs"),
            "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def official_ckpt(scale: int) -> Path:
    p = CKPT_DIR / "official" / f"rt4ksr_x{scale}.pth"
    if not p.is_file():
        pytest.skip(f"official checkpoint not found at {p} (set RT4KSR_CHECKPOINTS_DIR)")
    return p


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights: fan-in-scaled kernels, non-zero biases, norms and residual scales away from 1/0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            if p.ndim >= 2 and not name.endswith("scale"):
                p.copy_(r / math.sqrt(p[0].numel()))
            elif name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "tail.0.weight")):
                p.copy_(1.0 + 0.2 * r)
            else:
                p.copy_(0.3 * r)
        if hasattr(model, "upsample"):  # outputs of image magnitude (about [-1, 1]), as a trained model gives
            model.upsample[0].weight.mul_(0.15)
            model.upsample[0].bias.mul_(0.15)
    return model


class NaNAfterLoss(torch.nn.Module):
    """L1 that turns NaN from step ``steps`` on: drives the non-finite-loss path in tests."""

    def __init__(self, steps: int = 2) -> None:
        super().__init__()
        self.steps, self.calls = steps, 0

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = torch.nn.functional.l1_loss(sr, hr)
        return loss * float("nan") if self.calls > self.steps else loss


def make_tiny_data(root: Path) -> tuple[Path, Path]:
    """A training folder of small random-texture images and a benchmark set in the README layout."""
    import cv2
    import numpy as np

    from rt4ksr.data.lr_files import make_lr_folder

    rng = np.random.default_rng(0)
    train = root / "train"
    train.mkdir(parents=True)
    for i in range(4):
        img = cv2.resize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), (48, 40), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(train / f"t{i}.png"), img)
    hr = root / "testsets" / "tiny" / "test" / "HR"
    hr.mkdir(parents=True)
    for i in range(3):
        small = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
        img = cv2.resize(small, (36 + 2 * i, 30), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(hr / f"v{i}.png"), img)
    make_lr_folder(hr, hr.parent / "LR_bicubic_x2", 2, workers=1, progress=False)
    return train, root / "testsets"


def tiny_train_overrides(root: Path, train: Path, testsets: Path, run: str = "run") -> list[str]:
    return [
        "model.feature_channels=8", "model.num_blocks=1",
        "data=bsd200", f"data.train_sets.bsd200.dir={train}", "data.lr_crop=8", "data.batch_size=4",
        "data.repeats=2", "data.num_workers=0", "data.packed=false", f"data.testsets_dir={testsets}",
        "data.test_sets=[tiny]", "data.val_workers=0",
        "trainer=cpu", "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "trainer.enable_model_summary=false",
        "trainer.enable_progress_bar=false", "logger=csv",
        "callbacks.deploy_timing.cpu_size=[16,16]", "callbacks.deploy_timing.cpu_repeats=1",
        "callbacks.sample_images.count=0",
        f"paths.cache_dir={root / 'cache'}", f"hydra.run.dir={root / run}",
    ]


class InterruptAt(L.pytorch.callbacks.Callback):
    """Raises KeyboardInterrupt (as Ctrl-C does) after training step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            raise KeyboardInterrupt


class CrashAt(L.pytorch.callbacks.Callback):
    """Raises a RuntimeError (a crash, not Ctrl-C) after training step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError("simulated crash")


@contextlib.contextmanager
def torchvision_stand_in() -> Iterator[None]:
    """spandrel imports torchvision when it is imported, for two architectures that rt4ksr never meets: LaMa
    (``InterpolationMode``, ``rotate``) and RestoreFormer (``normalize``). Where no torchvision that matches the
    installed torch can be imported (a CPU-only test machine), a stand-in providing exactly those three names lets
    spandrel import. It leaves ``sys.modules`` right after, so no other test (or library probing for torchvision)
    sees it; its functions raise if anything ever calls them."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or built for another torch (which fails while registering its operators)
        pass
    else:
        yield
        return

    def unavailable(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("torchvision stand-in of tests/helpers.py: install torchvision")

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    stand_in = {name: types.ModuleType(name) for name in names}
    functional = stand_in["torchvision.transforms.functional"]
    functional.InterpolationMode, functional.rotate, functional.normalize = InterpolationMode, unavailable, unavailable
    stand_in["torchvision"].transforms = stand_in["torchvision.transforms"]
    stand_in["torchvision.transforms"].functional = functional
    saved = {name: sys.modules.get(name) for name in names}  # half-imported torchvision modules, if any
    sys.modules.update(stand_in)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
