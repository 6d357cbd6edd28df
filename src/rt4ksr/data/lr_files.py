"""MATLAB-identical LR images for HR files, and the cache behind benchmarks that ship HR only (urban100).

LR images of an HR-only set are generated once into a writable cache, keyed by a hash of each HR file, never
written next to the data.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rt4ksr.core.errors import ConfigValueError, InputNotFoundError
from rt4ksr.data.degradation import imresize, mod_crop
from rt4ksr.data.degraded_sets import DegradedSet, degraded_lr
from rt4ksr.data.io import ImageReadError, list_images, read_image, write_image

log = logging.getLogger(__name__)


def bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """The benchmark LR of an H x W x 3 uint8 HR image: mod-crop, then MATLAB bicubic 1/scale, uint8."""
    t = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))
    return imresize(mod_crop(t, scale), 1.0 / scale).numpy().transpose(1, 2, 0)


def _make_one(job: tuple[str, str, int, DegradedSet | None]) -> str | None:
    hr_path, out_path, scale, recipe = job
    torch.set_num_threads(1)
    try:
        hr = read_image(hr_path)
        lr = bicubic_lr(hr, scale) if recipe is None else degraded_lr(hr, scale, recipe, Path(hr_path).stem)
        write_image(out_path, lr)
    except (ImageReadError, OSError) as e:
        return str(e)
    return None


def make_lr_files(pairs: Sequence[tuple[Path, Path]], scale: int, workers: int = 0, progress: bool = True,
                  desc: str = "LR", recipe: DegradedSet | None = None) -> list[str]:
    """Write LR images for (hr, out) pairs in parallel, MATLAB bicubic or a degraded set's ``recipe``; returns
    the errors of files that failed."""
    jobs = [(str(h), str(o), scale, recipe) for h, o in pairs]
    workers = workers or min(8, os.cpu_count() or 1)
    errors: list[str] = []
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, unit="img")
    if workers <= 1 or len(jobs) <= 1:
        results = map(_make_one, jobs)
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_make_one, jobs, chunksize=max(1, len(jobs) // (workers * 8)))
    for err in results:
        bar.update()
        if err:
            log.warning(err)
            errors.append(err)
    bar.close()
    if workers > 1 and len(jobs) > 1:
        pool.shutdown()
    return errors


def make_lr_folder(hr_dir: str | Path, out_dir: str | Path, scale: int, workers: int = 0, overwrite: bool = False,
                   progress: bool = True) -> list[str]:
    """Every image of ``hr_dir`` to ``out_dir`` with the same file name (PNG for lossless files)."""
    hr_dir, out_dir = Path(hr_dir), Path(out_dir)
    if not hr_dir.is_dir():
        raise InputNotFoundError(f"HR folder not found: {hr_dir}")
    if out_dir.resolve() == hr_dir.resolve():
        raise ConfigValueError("out_dir must differ from hr_dir")
    pairs = [(p, out_dir / p.name) for p in list_images(hr_dir)]
    todo = [(h, o) for h, o in pairs if overwrite or not o.exists()]
    log.info("%d HR images in %s, %d to generate", len(pairs), hr_dir, len(todo))
    return make_lr_files(todo, scale, workers, progress, desc=f"x{scale} LR")


def file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:16]


def cached_lr(hr_files: Sequence[Path], cache_dir: str | Path, set_name: str, scale: int,
              progress: bool = True, recipe: DegradedSet | None = None) -> dict[Path, Path]:
    """LR files for HR files, generated into ``cache_dir/<set>/x<scale>/<stem>-<hash>.png`` when missing: MATLAB
    bicubic, or a degraded set's ``recipe`` (``set_name`` is then the degraded set's name).

    The hash of the HR file is part of the name, so a changed HR image gets a new LR image.
    """
    folder = Path(cache_dir) / set_name / f"x{scale}"
    mapping = {h: folder / f"{h.stem}-{file_digest(h)}.png" for h in hr_files}
    todo = [(h, lr) for h, lr in mapping.items() if not lr.exists()]
    if todo:
        log.info("generating %d x%d LR images for %s into %s", len(todo), scale, set_name, folder)
        errors = make_lr_files(todo, scale, progress=progress, desc=f"{set_name} x{scale} LR", recipe=recipe)
        if errors:
            raise ImageReadError("; ".join(errors))
    return mapping
