"""``rt4ksr benchmark-data [overrides]``: loader throughput (HR crops/s per worker), degradation + augmentation
time per batch on each device, and how far each downscaler lands from the MATLAB LR files."""

from __future__ import annotations

import functools
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.core.errors import ConfigValueError
from rt4ksr.core.files import write_json
from rt4ksr.data.datamodule import SRDataModule
from rt4ksr.measure.throughput import degradation_fidelity, loader_crops_per_s, time_ms


@hydra_command("benchmark_data")
def main(cfg: DictConfig) -> None:
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



if __name__ == "__main__":
    main()
