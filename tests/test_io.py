"""Image reading: every file becomes 8-bit RGB, unreadable files name themselves."""

import cv2
import numpy as np
import pytest

from rt4ksr.data import ImageReadError, read_image


def test_grayscale_rgba_and_16_bit_become_rgb8(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 2], rgba[..., 3] = 10, 200, 7  # BGRA: blue 10, red 200
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    deep = np.full((4, 5, 3), 65535, np.uint16)
    deep[..., 2] = 257 * 100  # red channel in BGR order
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    g, a, d = (read_image(tmp_path / n) for n in ("g.png", "a.png", "d.png"))
    for img in (g, a, d):
        assert img.dtype == np.uint8 and img.shape == (4, 5, 3)
    assert (g[..., 0] == gray).all() and (g[..., 1] == gray).all()
    assert (a[..., 0] == 200).all() and (a[..., 2] == 10).all()
    assert (d[..., 0] == 100).all() and (d[..., 1] == 255).all()


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="nope.png"):
        read_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ImageReadError, match="bad.png"):
        read_image(bad)
