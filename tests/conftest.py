"""Shared fixtures. Tests that need real data read RT4KSR_DATA_DIR (default ../shared/data beside the repo)
and RT4KSR_CHECKPOINTS_DIR (default ../shared/checkpoints), and skip with the reason when they are absent."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("RT4KSR_DATA_DIR", ROOT.parent / "shared" / "data"))
CKPT_DIR = Path(os.environ.get("RT4KSR_CHECKPOINTS_DIR", ROOT.parent / "shared" / "checkpoints"))


@pytest.fixture
def testsets_dir() -> Path:
    d = DATA_DIR / "testsets"
    if not (d / "set5" / "test" / "HR").is_dir():
        pytest.skip(f"benchmark data not found at {d} (set RT4KSR_DATA_DIR to the shared data folder)")
    return d


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
