"""Training data: HR folders scanned once, workers that only cut uint8 HR crops, and a packed format.

Everything else (flips, rot90, float conversion, degradation) runs on the device, on the whole batch, in
``SRDataModule.on_after_batch_transfer``: a CPU worker that also resized would starve a GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from rt4ksr.core.errors import ConfigValueError, InputNotFoundError
from rt4ksr.data.io import IMAGE_EXTENSIONS, ImageReadError, read_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HRImage:
    path: Path
    height: int
    width: int


def _header_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels."""
    with Image.open(path) as im:
        w, h = im.size
    return h, w


def require_folder(folder: str | Path, hint: str | None = None) -> Path:
    """``folder`` as a Path, or an error that says where the data comes from (``hint``) when it is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFoundError(
            f"training folder not found: {folder} (a folder of HR images; paths.data_dir or RT4KSR_DATA_DIR "
            f"sets where data is looked for). {hint or ''} Without any download: experiment=quickstart")
    return folder


def scan_folder(folder: str | Path, files: Sequence[str] | None = None, recursive: bool = True,
                hint: str | None = None) -> list[Path]:
    """Image files of an HR folder (recursively), or the listed ``files`` in it. ``hint`` (from the set's
    config) tells a user whose folder is missing where the data comes from."""
    folder = require_folder(folder, hint)
    if files is not None:
        paths = [folder / f for f in files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise InputNotFoundError(f"listed training images not found: {', '.join(missing)}")
        return paths
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def scan_images(paths: Sequence[Path], min_size: int, workers: int = 8) -> list[HRImage]:
    """Headers of every image; unreadable ones and ones smaller than ``min_size`` are excluded with a warning."""
    def probe(p: Path) -> HRImage | str:
        try:
            h, w = _header_size(p)
        except (OSError, ValueError) as e:
            return f"unreadable training image skipped: {p} ({e})"
        if h < min_size or w < min_size:
            return f"training image {p} is {w}x{h}, smaller than the {min_size}x{min_size} HR crop: excluded"
        return HRImage(p, h, w)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(probe, paths))
    for r in results:
        if isinstance(r, str):
            log.warning(r)
    return [r for r in results if isinstance(r, HRImage)]


class PackedImages:
    """Every HR image decoded once into one uint8 file (memory-mapped) plus a JSON index.

    Workers then cut crops with a slice of the map: no PNG decoding per crop.
    """

    def __init__(self, prefix: str | Path) -> None:
        prefix = Path(prefix)
        self.data_path, self.index_path = prefix.with_suffix(".u8"), prefix.with_suffix(".json")
        index = json.loads(self.index_path.read_text())
        self.entries = index["images"]
        self._map: np.memmap | None = None  # opened lazily, once per worker process

    @property
    def data(self) -> np.memmap:
        if self._map is None:
            self._map = np.memmap(self.data_path, dtype=np.uint8, mode="r")
        return self._map

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}

    def __len__(self) -> int:
        return len(self.entries)

    def image(self, i: int) -> np.ndarray:
        e = self.entries[i]
        n = e["height"] * e["width"] * 3
        return self.data[e["offset"]: e["offset"] + n].reshape(e["height"], e["width"], 3)

    @staticmethod
    def key(images: Sequence[HRImage]) -> str:
        """Names the pack after the files, their sizes and modification times: a changed file repacks."""
        h = hashlib.sha1()
        for im in images:
            st = im.path.stat()
            h.update(f"{im.path.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]

    @classmethod
    def build(cls, images: Sequence[HRImage], prefix: str | Path, workers: int = 0) -> PackedImages:
        """Decode every image once (threads: OpenCV releases the GIL) and write the pack atomically."""
        prefix = Path(prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        tmp = prefix.with_name(prefix.name + f".tmp{os.getpid()}")
        entries, offset = [], 0
        workers = workers or min(8, os.cpu_count() or 1)
        with open(tmp.with_suffix(".u8"), "wb") as f, ThreadPoolExecutor(workers) as pool:
            for im, arr in zip(images, pool.map(_try_read, [i.path for i in images]), strict=True):
                if arr is None:
                    log.warning("unreadable training image skipped while packing: %s", im.path)
                    continue
                f.write(arr.tobytes())
                entries.append({"name": str(im.path), "offset": offset, "height": arr.shape[0],
                                "width": arr.shape[1]})
                offset += arr.size
        tmp.with_suffix(".json").write_text(json.dumps({"images": entries}))
        os.replace(tmp.with_suffix(".u8"), prefix.with_suffix(".u8"))
        os.replace(tmp.with_suffix(".json"), prefix.with_suffix(".json"))
        return cls(prefix)


def _try_read(path: Path) -> np.ndarray | None:
    try:
        return read_image(path)
    except ImageReadError:
        return None


class HRCrops(Dataset):
    """Random uint8 HR crops, ``repeats`` per image per epoch; ``skipped`` counts unreadable files met.

    An image that fails to decode is skipped with one warning (per worker) naming it, and a crop of the next
    image takes its place, so training goes on.
    """

    def __init__(self, images: Sequence[HRImage], crop: int, repeats: int = 1,
                 packed: PackedImages | None = None) -> None:
        if not images:
            raise ConfigValueError("the training set is empty: no readable image at least as large as the crop")
        self.images, self.crop, self.repeats, self.packed = list(images), crop, repeats, packed
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.images) * self.repeats

    def _load(self, i: int) -> np.ndarray:
        if self.packed is not None:
            return self.packed.image(i)
        return read_image(self.images[i].path)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        n = len(self.images)
        i, skipped = index % n, 0
        for _ in range(n):
            if i not in self._bad:
                try:
                    img = self._load(i)
                    break
                except ImageReadError as e:
                    self._bad.add(i)
                    log.warning("skipping unreadable training image: %s", e)
            skipped += 1
            i = (i + 1) % n
        else:
            raise ImageReadError("no training image could be read")
        h, w = img.shape[:2]
        c = self.crop
        y = int(torch.randint(0, h - c + 1, ()))
        x = int(torch.randint(0, w - c + 1, ()))
        patch = np.ascontiguousarray(img[y: y + c, x: x + c].transpose(2, 0, 1))
        return {"hr": torch.from_numpy(patch), "skipped": torch.tensor(skipped)}
