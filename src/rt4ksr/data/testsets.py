"""The standard SR test sets (Set5, Set14, B100, Urban100) in the layout of the RT4KSR README."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rt4ksr.core.errors import ConfigValueError, InputNotFoundError, UserError
from rt4ksr.data.degraded_sets import EXAMPLE, FORM, parse_degraded
from rt4ksr.data.io import ImageReadError, list_images, read_image
from rt4ksr.data.lr_files import cached_lr

LAYOUT = "<testsets_dir>/<name>/test/HR/*.png and <testsets_dir>/<name>/test/LR_bicubic_x<scale>/*.png"


class MissingLRError(UserError, FileNotFoundError):
    """The set has HR images but no LR folder for this scale."""


def available_sets(testsets_dir: Path) -> list[str]:
    """The names under ``testsets_dir`` that hold a ``test/HR`` folder."""
    if not testsets_dir.is_dir():
        return []
    return sorted(p.name for p in testsets_dir.iterdir() if (p / "test" / "HR").is_dir())


def no_set_error(name: str, base: str, testsets_dir: Path) -> InputNotFoundError:
    """What is missing and where to point: the data folder when there are no test sets at all, else the sets that
    are there (``base`` is the set a degraded name builds on)."""
    hr_dir = testsets_dir / base / "test" / "HR"
    sets = available_sets(testsets_dir)
    if not sets:
        return InputNotFoundError(
            f"benchmark {name!r}: no test sets in {testsets_dir}; set paths.data_dir=<folder> (or RT4KSR_DATA_DIR) "
            f"to the folder that holds testsets/, or data.testsets_dir=<folder> to the sets' own folder "
            f"(layout: {LAYOUT})")
    if base != name:
        return InputNotFoundError(f"benchmark {name!r}: no HR folder of its base set {base!r} at {hr_dir}; "
                                  f"{testsets_dir} holds: {', '.join(sets)}")
    return InputNotFoundError(f"benchmark {name!r}: no HR folder at {hr_dir}; {testsets_dir} holds: "
                              f"{', '.join(sets)} (degraded sets are named {FORM}, e.g. {EXAMPLE})")


class TestSet(Dataset):
    """HR/LR pairs of one test set: LR as given, HR mod-cropped to LR size x scale, both uint8 (3, H, W).

    The set is ``<testsets_dir>/<name>/test/HR`` with its ``LR_bicubic_x<scale>`` folder, or, with
    ``hr_files``, any list of HR images whose LR images are generated into ``lr_cache_dir``. A name that is no
    folder there is read as a degraded set (``set14_bicubic_n5_q75``, see ``rt4ksr.data.degraded_sets``): the
    base set's HR images, and LR images generated once into ``lr_cache_dir`` by the recipe the name spells.
    """

    __test__ = False  # a data set, not a pytest test class

    def __init__(self, testsets_dir: str | Path | None, name: str, scale: int,
                 lr_cache_dir: str | Path | None = None, progress: bool = False,
                 hr_files: list[Path] | None = None) -> None:
        self.name, self.scale = name, scale
        if hr_files is not None:
            if lr_cache_dir is None:
                raise ConfigValueError(f"benchmark {name!r} from HR files needs an lr_cache_dir")
            self.hr_files = [Path(p) for p in hr_files]
            lr_of = cached_lr(self.hr_files, lr_cache_dir, name, scale, progress=progress)
            self.lr_files = [lr_of[hr] for hr in self.hr_files]
            return
        if not (Path(testsets_dir) / name).exists() and "_" in name:
            self._degraded(Path(testsets_dir), name, scale, lr_cache_dir, progress)
            return
        base = Path(testsets_dir) / name / "test"
        self.hr_dir, self.lr_dir = base / "HR", base / f"LR_bicubic_x{scale}"
        if not self.hr_dir.is_dir():
            raise no_set_error(name, name, Path(testsets_dir))
        self.hr_files = list_images(self.hr_dir)
        if not self.hr_files:
            raise InputNotFoundError(f"benchmark {name!r}: no images in {self.hr_dir}")
        if self.lr_dir.is_dir():
            self.lr_files = [self.lr_dir / hr.name for hr in self.hr_files]
            for hr, lr in zip(self.hr_files, self.lr_files, strict=True):
                if not lr.is_file():
                    raise InputNotFoundError(f"benchmark {name!r}: HR image {hr} has no LR partner {lr}")
        elif lr_cache_dir is not None:  # HR-only set: MATLAB-identical LR, generated once into the cache
            lr_of = cached_lr(self.hr_files, lr_cache_dir, name, scale, progress=progress)
            self.lr_files = [lr_of[hr] for hr in self.hr_files]
        else:
            raise MissingLRError(f"benchmark {name!r}: no LR folder {self.lr_dir} for x{scale} "
                                 "(give lr_cache_dir to generate it)")

    def _degraded(self, testsets_dir: Path, name: str, scale: int, lr_cache_dir: str | Path | None,
                  progress: bool) -> None:
        recipe = parse_degraded(name)
        self.hr_dir = testsets_dir / recipe.base / "test" / "HR"
        if not self.hr_dir.is_dir():
            raise no_set_error(name, recipe.base, testsets_dir)
        self.hr_files = list_images(self.hr_dir)
        if not self.hr_files:
            raise InputNotFoundError(f"benchmark {name!r}: no images in {self.hr_dir}")
        if lr_cache_dir is None:
            raise MissingLRError(f"benchmark {name!r}: a degraded set needs lr_cache_dir to generate its LR into")
        lr_of = cached_lr(self.hr_files, lr_cache_dir, recipe.canonical, scale, progress=progress, recipe=recipe)
        self.lr_files = [lr_of[hr] for hr in self.hr_files]

    def __len__(self) -> int:
        return len(self.hr_files)

    def __getitem__(self, i: int) -> dict[str, Tensor | str]:
        hr_path, lr_path = self.hr_files[i], self.lr_files[i]
        hr, lr = read_image(hr_path), read_image(lr_path)
        s = self.scale
        (h, w), (hh, hw) = lr.shape[:2], hr.shape[:2]
        if (hh // s, hw // s) != (h, w):
            raise ImageReadError(
                f"size mismatch: HR {hr_path} is {hw}x{hh} but LR {lr_path} is {w}x{h}; "
                f"x{s} expects LR {hw // s}x{hh // s}"
            )
        hr = hr[: h * s, : w * s]
        return {"name": hr_path.stem, "set": self.name, "lr": _chw(lr), "hr": _chw(hr)}


def _chw(img: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
