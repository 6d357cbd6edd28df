"""Mixed precision: LayerNorm keeps fp32 statistics under autocast, bf16-mixed trains on the CPU with a finite
and falling loss, and its (fp32 master) weights fuse as exactly as an fp32 run's."""

import csv
import math

import pytest
import torch
from hydra.utils import instantiate

from helpers import make_tiny_data, tiny_train_overrides
from rt4ksr.core.config import compose
from rt4ksr.models import load_into, read_state_dict, reparameterize
from rt4ksr.models.layers import LayerNorm2d
from rt4ksr.training.run import train


def test_layernorm_statistics_are_fp32_for_half_inputs():
    """Channels around 4 with a spread of 0.05: bf16 holds 4 to 0.03, so statistics taken in bf16 would be
    mostly rounding noise; taken in fp32 from the bf16 values, only the output's rounding remains."""
    torch.manual_seed(0)
    ln = LayerNorm2d(16)
    x = (4 + 0.05 * torch.randn(2, 16, 6, 6)).bfloat16()
    ref = ln(x.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ln(x)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() <= 0.02 * ref.abs().max()
    flat = torch.full((1, 16, 4, 4), 3.0, dtype=torch.float16)  # zero variance: eps=1e-6 must not underflow
    assert torch.isfinite(ln(flat)).all()


@pytest.fixture
def tiny(tmp_path):
    train_dir, testsets = make_tiny_data(tmp_path)
    return tmp_path, train_dir, testsets


def _losses(run_dir):
    rows = list(csv.DictReader((run_dir / "csv" / "version_0" / "metrics.csv").open()))
    return [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]


def test_bf16_mixed_trains_on_the_cpu_and_fuses_exactly(tiny):
    root, train_dir, testsets = tiny
    overrides = tiny_train_overrides(root, train_dir, testsets, "bf16") + [
        "trainer.precision=bf16-mixed", "trainer.max_epochs=1000", "trainer.max_steps=40", "data.batch_size=8",
        "optimizer.lr=3e-3"]
    cfg = compose("train", overrides)
    metrics = train(cfg)
    losses = _losses(root / "bf16")
    assert len(losses) >= 30 and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.9 * first, (first, last)
    assert math.isfinite(metrics["test_sets"]["tiny"]["psnr_y"])
    # the master weights stay fp32, and the fused network equals the training form as after an fp32 run
    net = load_into(instantiate(cfg.model), read_state_dict(metrics["final_checkpoint"])).eval()
    assert all(p.dtype == torch.float32 for p in net.parameters())
    fused = reparameterize(net).eval()
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (fused(x) - net(x)).abs().max() < 1e-5
