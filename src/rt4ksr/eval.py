"""``python -m rt4ksr.eval``: Y-channel PSNR/SSIM of a model's deploy form on the standard benchmarks."""

from __future__ import annotations

import logging

import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.core.config import resolve_device
from rt4ksr.core.files import write_json
from rt4ksr.inference.cpu_memory import keep_freed_memory
from rt4ksr.inference.evaluate import evaluate_sets, format_table
from rt4ksr.inference.loading import load_model

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Evaluate and return ``{set: {psnr_y, ssim_y, n}}``; also writes ``metrics_file`` when set."""
    device = resolve_device(cfg.device)
    model = load_model(cfg, default_scale=cfg.model.scale).model.to(device)
    results = evaluate_sets(model, cfg.data.testsets_dir, cfg.data.test_sets, model.scale,
                                  progress=cfg.progress, lr_cache_dir=cfg.data.lr_cache_dir)
    print(format_table(results, model.scale))
    if cfg.metrics_file:
        out = write_json(to_absolute_path(cfg.metrics_file), results)
        log.info("metrics written to %s", out)
    return results


@hydra_command("eval")
def main(cfg: DictConfig) -> None:
    torch.set_grad_enabled(False)
    keep_freed_memory()  # CPU inference: reuse freed tensors instead of page-faulting fresh memory
    run(cfg)


if __name__ == "__main__":
    main()
