"""``python -m rt4ksr.benchmark [overrides]``: inference speed of every execution path and the fp16 check;
``python -m rt4ksr.benchmark data [overrides]``: loader throughput, device degradation time, LR fidelity."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rt4ksr.command import hydra_command
from rt4ksr.config import resolve_device
from rt4ksr.data.datamodule import SRDataModule
from rt4ksr.data.throughput import degradation_fidelity, loader_crops_per_s, time_ms
from rt4ksr.deploy.cpu_memory import keep_freed_memory
from rt4ksr.deploy.inference import load_model
from rt4ksr.deploy.speed import benchmark, format_rows, fp16_psnr_loss
from rt4ksr.deploy.timing import uhd_input
from rt4ksr.errors import ConfigValueError
from rt4ksr.files import write_json
from rt4ksr.models import load_into, read_state_dict
from rt4ksr.models.checkpoint import is_deploy_state


@hydra_command("benchmark")
def speed_main(cfg: DictConfig) -> None:
    keep_freed_memory()  # as every command that runs the model does
    device = resolve_device(cfg.device)
    deploy, source = load_model(cfg)  # no weights: the configured model, randomly initialised (the same speed)
    train_model = None
    if source is None:
        train_model = instantiate(cfg.model)
    else:
        state = read_state_dict(hydra.utils.to_absolute_path(source))
        if not is_deploy_state(state):
            train_model = load_into(instantiate(cfg.model), state)
    scale = deploy.scale
    size = tuple(uhd_input(scale)) if device.type == "cuda" else tuple(cfg.cpu_size[str(scale)])
    rows = benchmark(train_model, deploy, device, size, list(cfg.batch_sizes), list(cfg.modes), cfg.warmup,
                     cfg.repeats if device.type == "cuda" else cfg.cpu_repeats,
                     OmegaConf.to_container(cfg.kernel_options))
    print(format_rows(rows))
    report: dict[str, Any] = {"scale": scale, "rows": rows,
                              "kernel_options": OmegaConf.to_container(cfg.kernel_options)}
    skipped = fp16_check_skipped(cfg, source)
    if skipped:
        report["fp16_check"] = {"skipped": skipped}
        print(f"fp16 check skipped: {skipped}")
    elif cfg.fp16_check:
        check = fp16_psnr_loss(deploy, device, cfg.data.testsets_dir, list(cfg.fp16_check_sets), scale,
                               cfg.data.get("lr_cache_dir"), OmegaConf.to_container(cfg.kernel_options))
        report["fp16_check"] = check
        for name, r in check.items():
            print(f"fp16 vs fp32 on {name}: {r['psnr_fp16']:.4f} vs {r['psnr_fp32']:.4f} dB "
                  f"(loss {r['loss_db']:.4f} dB)")
            if "psnr_kernels" in r:
                print(f"kernels (fp16) on {name}: {r['psnr_kernels']:.4f} dB (loss {r['kernels_loss_db']:.4f} dB)")
    if cfg.json:
        write_json(hydra.utils.to_absolute_path(cfg.json), report)


def fp16_check_skipped(cfg: DictConfig, source: str | None) -> str | None:
    """Why the fp16 check cannot run (said in the output, never silently), or None when it can or is off."""
    if not cfg.fp16_check:
        return None
    if source is None:
        return "the model has random weights; give weights=<name> ('rt4ksr zoo' lists them) or ckpt_path=<file>"
    if not Path(cfg.data.testsets_dir).is_dir():
        return (f"no test sets at {cfg.data.testsets_dir}; set paths.data_dir=<folder> (or RT4KSR_DATA_DIR) to the "
                "folder that holds testsets/")
    return None


@hydra_command("benchmark_data")
def data_main(cfg: DictConfig) -> None:
    wanted = [str(cfg.devices)] if isinstance(cfg.devices, str) else [str(d) for d in cfg.devices]
    unknown = sorted(set(wanted) - {"cpu", "cuda"})
    if unknown:
        raise ConfigValueError(f"devices={wanted}: expected cpu, cuda or a list of them, e.g. devices=[cuda]")
    devices = [torch.device(d) for d in wanted if d == "cpu" or torch.cuda.is_available()]
    dm: SRDataModule = instantiate(cfg.data)
    report: dict = {"loader_crops_per_s_per_worker": {}, "degrade_augment_ms_per_batch": {}}
    for packed in (False, True):
        key = "packed" if packed else "png"
        report["loader_crops_per_s_per_worker"][key] = round(loader_crops_per_s(dm, packed, cfg.crops), 1)
        print(f"loader, {key:>6}: {report['loader_crops_per_s_per_worker'][key]:8.1f} HR crops/s per worker "
              f"({dm.hr_crop}x{dm.hr_crop})")
    for device in devices:
        hr = torch.randint(0, 256, (cfg.batch_size, 3, dm.hr_crop, dm.hr_crop), dtype=torch.uint8, device=device)
        dm.degradation.to(device)
        med, spread = time_ms(functools.partial(dm.make_pairs, hr), device, cfg.repeats)
        name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
        report["degrade_augment_ms_per_batch"][name] = {"median": round(med, 3), "spread": round(spread, 3)}
        print(f"degradation + augmentation on {name}: {med:.3f} ms per batch of {cfg.batch_size} "
              f"{dm.hr_crop}x{dm.hr_crop} crops (x{dm.scale}, spread {spread:.3f} ms)")
    if cfg.fidelity and Path(dm.testsets_dir).is_dir():
        fid = degradation_fidelity(dm.testsets_dir, list(cfg.fidelity_sets), dm.scale)
        report["lr_psnr_vs_matlab_files_db"] = {k: round(v, 2) for k, v in fid.items()}
        for k, v in fid.items():
            print(f"LR PSNR vs MATLAB files ({', '.join(cfg.fidelity_sets)} x{dm.scale}), {k}: {v:.2f} dB")
    if cfg.json:
        write_json(hydra.utils.to_absolute_path(cfg.json), report)


def main() -> None:
    """``data`` as the first argument times the data side; ``model`` (or nothing) the inference paths."""
    if len(sys.argv) > 1 and sys.argv[1] in ("data", "model"):
        run = data_main if sys.argv.pop(1) == "data" else speed_main
    else:
        run = speed_main
    run()


if __name__ == "__main__":
    main()
