"""Cutting large HR images into sub-images, as the original preprocessing (BasicSR's) does.

crop_size x crop_size windows every ``step`` pixels, plus one flush with the far edge when the leftover exceeds
``thresh_size``. Parallel, resumable (finished images are skipped), and an unreadable file is listed while the
rest goes on.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from rt4ksr.core.errors import InputNotFoundError
from rt4ksr.data.io import ImageReadError, list_images, read_image, write_image

log = logging.getLogger(__name__)


def window_starts(length: int, crop: int, step: int, thresh: int) -> list[int]:
    """Start offsets along one axis; an image shorter than the crop gives one window at 0 (cut to size)."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop + 1, step))
    if length - (starts[-1] + crop) > thresh:
        starts.append(length - crop)
    return starts


def sub_image_names(path: Path, h: int, w: int, crop: int, step: int, thresh: int) -> list[tuple[str, int, int]]:
    ys, xs = window_starts(h, crop, step, thresh), window_starts(w, crop, step, thresh)
    return [(f"{path.stem}_s{k:03d}.png", y, x) for k, (y, x) in enumerate((y, x) for y in ys for x in xs)]


def _extract_one(job: tuple[str, str, int, int, int]) -> tuple[str, int, str | None]:
    """Returns (file, sub-images written, error)."""
    src, out_dir, crop, step, thresh = job
    path, out = Path(src), Path(out_dir)
    try:
        with Image.open(path) as im:
            w, h = im.size
        names = sub_image_names(path, h, w, crop, step, thresh)
        if all((out / n).exists() for n, _, _ in names):
            return src, 0, None  # finished in an earlier run
        img = read_image(path)
    except (OSError, ImageReadError, ValueError) as e:
        return src, 0, str(e)
    written = 0
    for name, y, x in names:
        target = out / name
        if target.exists():
            continue
        tmp = target.with_name(f".{name}.tmp.png")
        write_image(tmp, np.ascontiguousarray(img[y: y + crop, x: x + crop]))
        os.replace(tmp, target)
        written += 1
    return src, written, None


def extract_subimages(input_dir: str | Path, output_dir: str | Path, crop_size: int = 512, step: int = 256,
                      thresh_size: int = 0, workers: int = 0,
                      progress: bool = True) -> list[str]:
    """Cut every image of ``input_dir``; returns the errors of unreadable files."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise InputNotFoundError(f"input folder not found: {input_dir}")
    output_dir.mkdir(parents=True, exist_ok=True)
    files = list_images(input_dir)
    jobs = [(str(f), str(output_dir), crop_size, step, thresh_size) for f in files]
    workers = workers or min(8, os.cpu_count() or 1)
    errors, total = [], 0
    cv2.setNumThreads(1)
    with ProcessPoolExecutor(workers) as pool:
        for src, n, err in tqdm(pool.map(_extract_one, jobs), total=len(jobs), disable=not progress,
                                desc="sub-images", unit="img"):
            total += n
            if err:
                errors.append(f"{src}: {err}")
    log.info("%d sub-images written to %s from %d images", total, output_dir, len(files))
    return errors
