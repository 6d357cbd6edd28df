"""Reading images as 8-bit RGB, whatever the file holds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(OSError):
    """A file that is missing, unreadable or truncated."""


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """Grayscale, BGR, BGRA, 16-bit or float images as H x W x 3 uint8 RGB."""
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)  # MATLAB im2uint8
    elif img.dtype != np.uint8:
        scale = 255.0 if np.issubdtype(img.dtype, np.floating) else 1.0
        img = np.clip(np.round(img.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if img.shape[2] == 4:
        img = img[:, :, :3]  # alpha dropped
    return np.ascontiguousarray(img[:, :, ::-1])  # OpenCV's BGR to RGB


def read_image(path: str | Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB; ``ImageReadError`` names the file when it cannot be decoded."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageReadError(f"cannot read image (unreadable, truncated or unsupported format): {path}")
    return to_rgb8(img)


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write H x W x 3 uint8 RGB, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise ImageReadError(f"cannot write image: {path}")
