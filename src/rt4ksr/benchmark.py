"""``rt4ksr benchmark [overrides]``: inference speed of every execution path and the fp16 check (the data side is
``rt4ksr benchmark-data``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.core import threads
from rt4ksr.core.config import resolve_device
from rt4ksr.core.files import write_json
from rt4ksr.core.scenario import timing_size
from rt4ksr.inference.cpu_memory import keep_freed_memory
from rt4ksr.inference.loading import load_model
from rt4ksr.kernels.network import kernel_options
from rt4ksr.measure.speed import benchmark, format_rows, fp16_psnr_loss


@hydra_command("benchmark")
def main(cfg: DictConfig) -> None:
    keep_freed_memory()  # as every command that runs the model does
    device = resolve_device(cfg.device)
    options = kernel_options(cfg.kernel_options)
    loaded = load_model(cfg)  # no weights: the configured model, randomly initialised (the same speed)
    scale = loaded.scale
    size = timing_size(scale, device.type, cfg.cpu_size if device.type != "cuda" else None)
    rows = benchmark(loaded.train_model, loaded.model, device, size, list(cfg.batch_sizes), list(cfg.modes),
                     cfg.warmup, cfg.repeats if device.type == "cuda" else cfg.cpu_repeats,
                     options)
    print(format_rows(rows))
    report: dict[str, Any] = {"scale": scale, "rows": rows,
                              "kernel_options": options, "threads": threads.summary()}
    skipped = fp16_check_skipped(cfg)
    if skipped:
        report["fp16_check"] = {"skipped": skipped}
        print(f"fp16 check skipped: {skipped}")
    elif cfg.fp16_check:
        check = fp16_psnr_loss(loaded.model, device, cfg.data.testsets_dir, list(cfg.fp16_check_sets), scale,
                               cfg.data.get("lr_cache_dir"), options)
        report["fp16_check"] = check
        for name, r in check.items():
            print(f"fp16 vs fp32 on {name}: {r['psnr_fp16']:.4f} vs {r['psnr_fp32']:.4f} dB "
                  f"(loss {r['loss_db']:.4f} dB)")
            if "psnr_kernels" in r:
                print(f"kernels (fp16) on {name}: {r['psnr_kernels']:.4f} dB (loss {r['kernels_loss_db']:.4f} dB)")
    if cfg.json:
        write_json(hydra.utils.to_absolute_path(cfg.json), report)


def fp16_check_skipped(cfg: DictConfig) -> str | None:
    """Why the fp16 check cannot run (said in the output, never silently), or None when it can or is off. With
    random weights it still measures what fp16 rounding costs this architecture."""
    if not cfg.fp16_check:
        return None
    if not Path(cfg.data.testsets_dir).is_dir():
        return (f"no test sets at {cfg.data.testsets_dir}; set paths.data_dir=<folder> (or RT4KSR_DATA_DIR) to the "
                "folder that holds testsets/")
    return None


if __name__ == "__main__":
    main()
