"""LR generation, the training DataModule, packed data, sub-image extraction and bad data."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from rt4ksr.core.config import compose
from rt4ksr.data import SRDataModule, TestSet, random_dihedral, read_image
from rt4ksr.data.lr_files import bicubic_lr, cached_lr, make_lr_folder
from rt4ksr.data.subimages import extract_subimages, window_starts

ROOT = Path(__file__).resolve().parents[1]


def write_images(folder: Path, sizes, seed=0, prefix="im"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"{prefix}{i:02d}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        paths.append(p)
    return paths


# --- LR generation -------------------------------------------------------------------------------------


def test_make_lr_folder_writes_identical_names_and_resumes(tmp_path):
    write_images(tmp_path / "hr", [(31, 40), (24, 25)])
    assert make_lr_folder(tmp_path / "hr", tmp_path / "lr", 3, workers=2, progress=False) == []
    for p in sorted((tmp_path / "hr").iterdir()):
        lr = read_image(tmp_path / "lr" / p.name)
        assert np.array_equal(lr, bicubic_lr(read_image(p), 3))
        assert lr.shape[:2] == (cv2.imread(str(p)).shape[0] // 3, cv2.imread(str(p)).shape[1] // 3)
    stamp = (tmp_path / "lr" / "im00.png").stat().st_mtime_ns
    make_lr_folder(tmp_path / "hr", tmp_path / "lr", 3, workers=1, progress=False)
    assert (tmp_path / "lr" / "im00.png").stat().st_mtime_ns == stamp


def test_make_lr_command(tmp_path):
    write_images(tmp_path / "hr", [(20, 22)])
    (tmp_path / "hr" / "broken.png").write_bytes(b"nope")
    proc = subprocess.run([sys.executable, "-m", "rt4ksr.make_lr", f"hr_dir={tmp_path / 'hr'}",
                           f"out_dir={tmp_path / 'out'}", "scale=2", "progress=false"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 3, proc.stderr  # the rest is done; the failure is listed and the exit says so
    assert (tmp_path / "out" / "im00.png").is_file()
    assert "failed: " in proc.stderr and "broken.png" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_lr_is_generated_into_the_cache_and_regenerated_on_change(tmp_path):
    data = tmp_path / "data"
    hr_files = write_images(data / "urban" / "test" / "HR", [(30, 33), (27, 27)])
    os.chmod(data, 0o555)  # the data folder is read-only, as in CI
    try:
        ds = TestSet(data, "urban", 3, lr_cache_dir=tmp_path / "cache")
        item = ds[0]
        assert item["lr"].shape == (3, 10, 11) and item["hr"].shape == (3, 30, 33)
        assert not (data / "urban" / "test" / "LR_bicubic_x3").exists()
        first = ds.lr_files[0]
        os.chmod(data, 0o755)
        write_images(data / "urban" / "test" / "HR", [(30, 33)], seed=5)  # HR changes
        again = cached_lr(hr_files, tmp_path / "cache", "urban", 3, progress=False)
        assert again[hr_files[0]] != first and again[hr_files[0]].is_file()
        assert again[hr_files[1]] == ds.lr_files[1]
    finally:
        os.chmod(data, 0o755)


def test_urban100_lr_generated(testsets_dir, tmp_path):
    ds = TestSet(testsets_dir, "urban100", 2, lr_cache_dir=tmp_path)
    assert len(ds) == 100 and ds[0]["lr"].shape[1] * 2 == ds[0]["hr"].shape[1]


# --- DataModule ----------------------------------------------------------------------------------------


def datamodule(tmp_path, sets, **kw):
    kw.setdefault("num_workers", 0)
    return SRDataModule({k: {"dir": str(v), "enabled": True} for k, v in sets.items()}, scale=2, lr_crop=8,
                        batch_size=4, cache_dir=tmp_path / "cache", **kw)


def test_batches_are_degraded_on_the_device_side(tmp_path):
    write_images(tmp_path / "a", [(40, 50), (33, 37)])
    write_images(tmp_path / "b", [(20, 20)], prefix="b")
    dm = datamodule(tmp_path, {"a": tmp_path / "a", "b": tmp_path / "b"}, repeats=4)
    dm.setup("fit")
    assert len(dm.train_dataset) == 12  # the two sets combine
    batch = next(iter(dm.train_dataloader()))
    assert batch["hr"].dtype == torch.uint8 and batch["hr"].shape == (4, 3, 16, 16)  # workers: uint8 crops only
    out = dm.on_after_batch_transfer(batch, 0)
    assert out["lr"].shape == (4, 3, 8, 8) and out["hr"].dtype == torch.float32
    lr8 = (out["lr"] * 255).round().to(torch.uint8)
    hr8 = (out["hr"] * 255).round().to(torch.uint8)
    from rt4ksr.data import imresize

    assert torch.equal(lr8, imresize(hr8, 0.5))  # exact MATLAB degradation of the (augmented) HR


def test_bad_training_data(tmp_path, caplog):
    folder = tmp_path / "hr"
    write_images(folder, [(40, 40), (10, 40)])  # the second is smaller than the 16 px HR crop
    gray = np.arange(1600, dtype=np.uint16).reshape(40, 40) * 40
    cv2.imwrite(str(folder / "gray16.png"), gray)
    rgba = np.full((40, 40, 4), 200, np.uint8)
    cv2.imwrite(str(folder / "rgba.png"), rgba)
    (folder / "garbage.png").write_bytes(b"not an image")
    good = cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))[1].tobytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    dm = datamodule(tmp_path, {"hr": folder})
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert "im01.png is 40x10, smaller than the 16x16 HR crop" in caplog.text
    assert "garbage.png" in caplog.text
    names = sorted(i.path.name for i in dm.train_dataset.images)
    assert names == ["gray16.png", "im00.png", "rgba.png", "truncated.png"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        items = [dm.train_dataset[i] for i in range(len(dm.train_dataset))]
    assert all(it["hr"].shape == (3, 16, 16) and it["hr"].dtype == torch.uint8 for it in items)
    assert sum(int(it["skipped"]) for it in items) == 1 and caplog.text.count("truncated.png") == 1
    batch = dm.on_before_batch_transfer({"hr": torch.stack([it["hr"] for it in items]),
                                         "skipped": torch.stack([it["skipped"] for it in items])}, 0)
    batch = dm.on_after_batch_transfer(batch, 0)
    assert dm.skipped == 1 and batch["lr"].shape[0] == 4 and "skipped" not in batch


def test_empty_and_missing_training_sets(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"training folder not found: .*nothere"):
        datamodule(tmp_path, {"x": tmp_path / "nothere"}).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="training set is empty"):
        datamodule(tmp_path, {"x": tmp_path / "empty"}).setup("fit")
    with pytest.raises(ValueError, match="no training set enabled"):
        SRDataModule({"x": {"dir": str(tmp_path), "enabled": False}}).setup("fit")


def test_packed_crops_equal_png_crops(tmp_path):
    write_images(tmp_path / "hr", [(40, 50), (33, 37), (64, 20)])
    png = datamodule(tmp_path, {"hr": tmp_path / "hr"})
    packed = datamodule(tmp_path, {"hr": tmp_path / "hr"}, packed=True)
    png.setup("fit")
    packed.setup("fit")
    assert list((tmp_path / "cache" / "packed").glob("hr-*.u8"))
    for i in range(3):
        torch.manual_seed(i)
        a = png.train_dataset[i]["hr"]
        torch.manual_seed(i)
        b = packed.train_dataset[i]["hr"]
        assert torch.equal(a, b)
    again = datamodule(tmp_path, {"hr": tmp_path / "hr"}, packed=True)
    again.setup("fit")  # reuses the pack
    assert len(list((tmp_path / "cache" / "packed").glob("*.u8"))) == 1


def test_random_dihedral_permutes_pixels_only():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        y = random_dihedral(x)
        assert torch.equal(y.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
        seen.add(tuple(y[0, 0, 0].tolist()))
    assert len(seen) == 8  # all eight flips / rotations occur


@pytest.mark.parametrize("name", ["df2k", "lsdir", "gta5", "bsd200", "sample"])
def test_data_configs_instantiate(name):
    cfg = compose("eval", [f"data={name}"])
    dm = instantiate(cfg.data)
    assert isinstance(dm, SRDataModule) and list(dm.enabled_sets()) == [name]


def test_sample_set_trains_without_downloads():
    cfg = compose("eval", ["data=sample", "data.num_workers=0", "data.batch_size=2", "data.lr_crop=32"])
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert len(dm.train_dataset.images) >= 10
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["lr"].shape == (2, 3, 32, 32)


def test_kornia_degradation_is_selectable():
    cfg = compose("eval", ["data=sample", "data/degradation=kornia_bicubic"])
    assert type(instantiate(cfg.data).degradation).__name__ == "KorniaBicubic"


# --- sub-images ----------------------------------------------------------------------------------------


def test_window_starts():
    assert window_starts(1000, 512, 256, 0) == [0, 256, 488]
    assert window_starts(1000, 512, 256, 300) == [0, 256]
    assert window_starts(300, 512, 256, 0) == [0]


def test_extract_subimages_idempotent_and_lists_bad_files(tmp_path):
    write_images(tmp_path / "in", [(70, 90)])
    (tmp_path / "in" / "bad.png").write_bytes(b"xx")
    errors = extract_subimages(tmp_path / "in", tmp_path / "out", crop_size=32, step=24, workers=1, progress=False)
    assert len(errors) == 1 and "bad.png" in errors[0]
    outs = sorted((tmp_path / "out").glob("*.png"))
    assert len(outs) == 3 * 4 and all(read_image(p).shape == (32, 32, 3) for p in outs)
    stamps = [p.stat().st_mtime_ns for p in outs]
    extract_subimages(tmp_path / "in", tmp_path / "out", crop_size=32, step=24, workers=1, progress=False)
    assert [p.stat().st_mtime_ns for p in outs] == stamps


def test_benchmark_data_command(tmp_path):
    out = tmp_path / "data.json"
    proc = subprocess.run([sys.executable, "-m", "rt4ksr.benchmark_data", "data=sample", "data.lr_crop=32",
                           "crops=64", "repeats=2", "batch_size=4", "fidelity=false", f"json={out}",
                           f"paths.cache_dir={tmp_path}"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["loader_crops_per_s_per_worker"]["packed"] > 0 and "cpu" in report["degrade_augment_ms_per_batch"]
    bad = subprocess.run([sys.executable, "-m", "rt4ksr.benchmark_data", "devices=[gpu]"], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "error: devices=['gpu']: expected cpu, cuda or a list of them, e.g. devices=[cuda]")


def test_loader_throughput_is_steady_state_on_a_small_set(tmp_path, monkeypatch):
    """Three images and 40 crops: one iterator (one worker start) for the whole measurement, not one per epoch."""
    from torch.utils.data import DataLoader

    from rt4ksr.measure.throughput import loader_crops_per_s

    starts = []
    real_iter = DataLoader.__iter__
    monkeypatch.setattr(DataLoader, "__iter__", lambda self: starts.append(1) or real_iter(self))
    write_images(tmp_path / "hr", [(40, 40)] * 3)
    dm = datamodule(tmp_path, {"x": tmp_path / "hr"})
    assert loader_crops_per_s(dm, packed=False, crops=40, batch_size=4) > 0
    assert len(starts) == 1
