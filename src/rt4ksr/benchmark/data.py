"""Data-side throughput: HR crops/s per loader worker (PNG and packed), degradation + augmentation time per
batch on each device, and how far each downscaler lands from the benchmark's MATLAB LR files."""

from __future__ import annotations

import functools
import json
import statistics
import time
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from rt4ksr.config import CONFIG_DIR
from rt4ksr.data.benchmark import BenchmarkDataset
from rt4ksr.data.datamodule import SRDataModule
from rt4ksr.data.degradation import KorniaBicubic, MatlabBicubic, mod_crop
from rt4ksr.metrics import psnr
from rt4ksr.timing import measure_ms


def loader_crops_per_s(dm: SRDataModule, packed: bool, crops: int, batch_size: int = 16) -> float:
    """Crops/s of one worker process (the DataLoader's own overhead included)."""
    dm.packed, dm.train_dataset = packed, None
    dm.setup("fit")
    loader = DataLoader(dm.train_dataset, batch_size=batch_size, shuffle=True, num_workers=1,
                        persistent_workers=False)
    it = iter(loader)
    next(it)  # worker start-up and first decode excluded
    n, t0 = 0, time.perf_counter()
    while n < crops:
        try:
            n += next(it)["hr"].shape[0]
        except StopIteration:
            it = iter(loader)
    return n / (time.perf_counter() - t0)


def time_ms(fn, device: torch.device, repeats: int, warmup: int = 3) -> tuple[float, float]:
    """Median and spread (max - min) in ms."""
    times = measure_ms(fn, device, warmup, repeats)
    return statistics.median(times), max(times) - min(times)


def degradation_fidelity(testsets_dir: str, names: list[str], scale: int) -> dict[str, float]:
    """Mean RGB PSNR of each downscaler's LR against the MATLAB LR files."""
    downscalers = {
        "matlab_bicubic (ours)": MatlabBicubic(scale),
        "kornia_bicubic": KorniaBicubic(scale),
        "torch_interpolate_antialias": lambda hr: F.interpolate(
            mod_crop(hr, scale), scale_factor=1 / scale, mode="bicubic", antialias=True).clamp(0, 1),
    }
    out: dict[str, list[float]] = {k: [] for k in downscalers}
    for name in names:
        ds = BenchmarkDataset(testsets_dir, name, scale)
        for i in range(len(ds)):
            item = ds[i]
            hr, lr = item["hr"][None].float() / 255, item["lr"][None].double()
            for k, f in downscalers.items():
                got = (f(hr).double().clamp(0, 1) * 255).round()
                out[k].append(float(psnr(got, lr).clamp(max=100)))
    return {k: sum(v) / len(v) for k, v in out.items()}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="benchmark_data")
def main(cfg: DictConfig) -> None:
    dm: SRDataModule = instantiate(cfg.data)
    report: dict = {"loader_crops_per_s_per_worker": {}, "degrade_augment_ms_per_batch": {}}
    for packed in (False, True):
        key = "packed" if packed else "png"
        report["loader_crops_per_s_per_worker"][key] = round(loader_crops_per_s(dm, packed, cfg.crops), 1)
        print(f"loader, {key:>6}: {report['loader_crops_per_s_per_worker'][key]:8.1f} HR crops/s per worker "
              f"({dm.hr_crop}x{dm.hr_crop})")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
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
        Path(cfg.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
