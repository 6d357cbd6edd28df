"""The LightningDataModule: HR crops from the CPU workers, augmentation and degradation on the device."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler

from rt4ksr.core.errors import ConfigValueError
from rt4ksr.data.crops import HRCrops, HRImage, PackedImages, require_folder, scan_folder, scan_images
from rt4ksr.data.degradation import MatlabBicubic
from rt4ksr.data.realworld import SeededDegradation
from rt4ksr.data.testsets import TestSet

log = logging.getLogger(__name__)


def random_dihedral(x: Tensor) -> Tensor:
    """Per-sample random flips and transposition of a square batch: all 8 flips/rot90s, on x's device."""
    flips = (torch.rand(x.shape[0], 3, device=x.device) < 0.5)[:, :, None, None, None]
    x = torch.where(flips[:, 0], x.flip(-1), x)
    x = torch.where(flips[:, 1], x.flip(-2), x)
    if x.shape[-1] == x.shape[-2]:
        x = torch.where(flips[:, 2], x.transpose(-1, -2), x)
    return x


class ShardSampler(DistributedSampler):
    """Indices rank, rank + world, ... of a dataset: disjoint shares whose union is every item once.

    Unlike ``DistributedSampler`` it pads nothing, so no image is counted twice. Being one, it is kept as is
    by Lightning, which would otherwise wrap it in a padding distributed sampler.
    """

    def __init__(self, length: int, rank: int = 0, world: int = 1) -> None:  # no process group needed
        self.rank, self.num_replicas, self.epoch, self.shuffle = rank, world, 0, False
        self.indices = list(range(rank, length, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class SRDataModule(L.LightningDataModule):
    """Training crops from enabled HR folders; validation is the test sets named in ``test_sets``.

    ``train_sets`` maps a name to ``{dir, enabled, files}``; enabling several combines them (the original
    ``--use-lsdir`` / ``--use-gta`` become ``data.train_sets.lsdir.enabled=true`` ...).
    """

    def __init__(
        self,
        train_sets: Mapping[str, Mapping[str, Any]],
        scale: int = 2,
        lr_crop: int = 128,
        batch_size: int = 64,
        repeats: int = 1,
        num_workers: int = 4,
        packed: bool = False,
        cache_dir: str | Path | None = None,
        degradation: nn.Module | None = None,
        augment: bool = True,
        test_sets: Sequence[str] = ("set5", "set14", "b100", "urban100"),
        testsets_dir: str | Path | None = None,
        lr_cache_dir: str | Path | None = None,
        extra_test_sets: Mapping[str, Mapping[str, Any]] | None = None,
        val_workers: int = 1,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        self.train_sets = {k: dict(v) for k, v in train_sets.items()}
        self.scale, self.lr_crop, self.batch_size, self.repeats = scale, lr_crop, batch_size, repeats
        self.num_workers, self.packed, self.cache_dir = num_workers, packed, cache_dir
        self.degradation = degradation if degradation is not None else MatlabBicubic(scale)
        self.augment = augment
        self.test_sets, self.testsets_dir, self.lr_cache_dir = list(test_sets), testsets_dir, lr_cache_dir
        self.extra_test_sets = {k: dict(v) for k, v in (extra_test_sets or {}).items()}
        self.val_workers = val_workers
        self._val_sets: list[TestSet] | None = None
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers
        self.train_dataset: HRCrops | None = None
        self.skipped = 0  # unreadable training images met so far (summed over batches)
        self._draw_step, self._draws = -1, 0  # which step the last degraded batch was, and how many it had

    @property
    def hr_crop(self) -> int:
        return self.lr_crop * self.scale

    def enabled_sets(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.train_sets.items() if v.get("enabled", True)}

    def check_sources(self) -> None:
        """Fail early, with where the data comes from, when an enabled training folder does not exist."""
        sets = self.enabled_sets()
        if not sets:
            raise ConfigValueError(f"no training set enabled (data.train_sets: {', '.join(self.train_sets)})")
        for cfg in sets.values():
            require_folder(cfg["dir"], cfg.get("hint"))

    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "fit") or self.train_dataset is not None:
            return
        sets = self.enabled_sets()
        if not sets:
            raise ConfigValueError(f"no training set enabled (data.train_sets: {', '.join(self.train_sets)})")
        paths = [p for cfg in sets.values() for p in scan_folder(cfg["dir"], cfg.get("files"), hint=cfg.get("hint"))]
        images = scan_images(paths, self.hr_crop)
        if not images:
            folders = ", ".join(str(c["dir"]) for c in sets.values())
            raise ConfigValueError(f"the training set is empty: no readable image of at least "
                                   f"{self.hr_crop}x{self.hr_crop} in {folders}")
        pack = None
        if self.packed:
            if self.cache_dir is None:
                raise ConfigValueError("packed=true needs a cache_dir to write the pack into")
            prefix = Path(self.cache_dir) / "packed" / f"{'+'.join(sets)}-{PackedImages.key(images)}"
            if prefix.with_suffix(".json").exists():
                pack = PackedImages(prefix)
            else:
                log.info("packing %d HR images into %s.u8 (once)", len(images), prefix)
                pack = PackedImages.build(images, prefix)
            images = [HRImage(Path(e["name"]), e["height"], e["width"]) for e in pack.entries]
        log.info("training set: %d HR images from %s, %d crops/epoch", len(images), "+".join(sets),
                 len(images) * self.repeats)
        self.train_dataset = HRCrops(images, self.hr_crop, self.repeats, pack)

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        return DataLoader(self.train_dataset, batch_size=self.batch_size, shuffle=True,
                          drop_last=len(self.train_dataset) >= self.batch_size,
                          num_workers=self.num_workers, pin_memory=self.pin_memory and torch.cuda.is_available(),
                          persistent_workers=self.persistent_workers and self.num_workers > 0)

    def test_datasets(self) -> list[TestSet]:
        """The validation sets: ``test_sets`` by name (a missing one is skipped with a warning) and
        ``extra_test_sets`` given as HR files; LR images of HR-only sets are generated into the cache."""
        if self._val_sets is not None:
            return self._val_sets
        sets = []
        for name in self.test_sets if self.testsets_dir is not None else []:
            try:
                sets.append(TestSet(self.testsets_dir, name, self.scale, self.lr_cache_dir))
            except FileNotFoundError as e:
                log.warning("validation set %s skipped: %s", name, e)
        for name, spec in self.extra_test_sets.items():
            files = scan_folder(spec["dir"], spec.get("files"), recursive=False)
            sets.append(TestSet(None, name, self.scale, self.lr_cache_dir, hr_files=files))
        self._val_sets = sets
        return sets

    @property
    def val_names(self) -> list[str]:
        return [ds.name for ds in self.test_datasets()]

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per set, batch 1 (sizes differ); each rank takes its own share of the images, without the
        padding a DistributedSampler adds, so the reduced means are exact."""
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return [DataLoader(ds, batch_size=1, sampler=ShardSampler(len(ds), rank, world), num_workers=self.val_workers)
                for ds in self.test_datasets()]

    def test_dataloader(self) -> list[DataLoader]:
        """The same sets as validation, for the end-of-run test of the final and the best state."""
        return self.val_dataloader()

    @torch.no_grad()
    def make_pairs(self, hr_u8: Tensor, seed: int | None = None) -> dict[str, Tensor]:
        """uint8 HR crops on any device -> augmented float HR and its degraded LR, in [0, 1]. ``seed`` fixes the
        draws of a random degradation (without one, it draws from torch's global generator)."""
        hr = hr_u8.float().div_(255.0)
        if self.augment:
            hr = random_dihedral(hr)
        if isinstance(self.degradation, SeededDegradation):
            lr = self.degradation(hr, seed=seed)
        else:
            lr = self.degradation(hr)
        return {"lr": lr.contiguous(), "hr": hr}

    def batch_seed(self) -> int | None:
        """The seed of a random degradation for the batch being made: from the training seed, the rank, the global
        step and the batch's place in that step (gradient accumulation makes several), so a resumed run draws
        what the first one drew at that step. None outside a trainer, or for a degradation with no draws."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or not isinstance(self.degradation, SeededDegradation):
            return None
        step = trainer.global_step
        self._draws = self._draws + 1 if step == self._draw_step else 0
        self._draw_step = step
        return self.degradation.batch_seed(trainer.global_rank, step, self._draws)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, Mapping) and "skipped" in batch:  # counted on the host: no device sync per step
            self.skipped += int(batch["skipped"].sum())
            batch = {k: v for k, v in batch.items() if k != "skipped"}
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, Mapping) and "hr" in batch and "lr" not in batch:  # a training batch of crops
            return self.make_pairs(batch["hr"], seed=self.batch_seed())
        return batch
