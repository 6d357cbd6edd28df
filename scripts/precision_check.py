"""Check one finished training run for the mixed-precision goals and print one JSON line.

    python scripts/precision_check.py RUN_DIR

It reports the precision, the steps, whether every logged loss is finite, the mean loss of the first and last
tenth of the logged steps, the mean step time (validations included), each validation set's final Y-PSNR, the
dtypes of the saved weights (mixed precision keeps fp32 master weights), and the largest difference between
the fused network and the training form on one 64x64 LR input, in fp32 without TF32, on CUDA when there is
one. Exit status 1 when a loss is not finite, fewer than two were logged, the loss did not fall, or the fused
network is off by more than 1e-4.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rt4ksr.models import load_into, read_state_dict, reparameterize

FUSION_TOLERANCE = 1e-4


def main(run_dir: Path) -> int:
    files = [run_dir / "config.yaml", run_dir / "metrics.json"]
    logs = sorted((run_dir / "csv").glob("*/metrics.csv")) if (run_dir / "csv").is_dir() else []
    if not all(f.is_file() for f in files) or not logs:
        print(f"error: {run_dir} is not a finished run (it needs config.yaml, metrics.json and csv/*/metrics.csv)",
              file=sys.stderr)
        return 2
    cfg = OmegaConf.load(files[0])
    metrics = json.loads(files[1].read_text())
    if not metrics.get("final_checkpoint"):
        print(f"error: {run_dir}/metrics.json names no final checkpoint", file=sys.stderr)
        return 2
    rows = list(csv.DictReader(logs[-1].open()))
    losses = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    tenth = max(1, len(losses) // 10)
    first, last = sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth
    finite = all(math.isfinite(v) for v in losses)
    state = read_state_dict(metrics["final_checkpoint"])
    saved_dtypes = sorted({str(t.dtype) for t in state.values() if t.is_floating_point()})
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = load_into(instantiate(cfg.model), state).to(device).eval()
    fused = reparameterize(net).eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        fusion = float((fused(x) - net(x)).abs().max())
    report = {
        "run": str(run_dir), "precision": str(cfg.trainer.precision), "checked_on": str(device),
        "steps": metrics["global_step"], "train_seconds": metrics["train_seconds"],
        "ms_per_step": round(1000 * metrics["train_seconds"] / max(1, metrics["global_step"]), 2),
        "losses_logged": len(losses), "all_finite": finite, "loss_first_tenth": first, "loss_last_tenth": last,
        "psnr_y": {k: round(v["psnr_y"], 4) for k, v in metrics["test_sets"].items()},
        "saved_weight_dtypes": saved_dtypes, "fused_vs_training_max_abs": fusion,
    }
    print(json.dumps(report))
    return 0 if finite and len(losses) >= 2 and last < first and fusion <= FUSION_TOLERANCE else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/precision_check.py RUN_DIR")
    sys.exit(main(Path(sys.argv[1])))
