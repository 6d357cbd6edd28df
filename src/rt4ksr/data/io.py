"""Images as files: 8-bit RGB for training and benchmarks (``read_image``), and, for the upscaler, the file's
own depth, channels, alpha and orientation (``read_picture`` / ``write_picture``), so nothing is lost."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rt4ksr.core.errors import UserError
from rt4ksr.core.files import write_bytes

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEEP_FORMATS = (".png", ".tif", ".tiff")           # formats that hold 16 bits per channel
ALPHA_FORMATS = (".png", ".tif", ".tiff", ".webp")  # formats that hold an alpha channel


class ImageReadError(UserError, OSError):
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


def _imread(path: Path, orientation: int = 1, quiet: bool = False) -> tuple[np.ndarray, int]:
    """The file's samples as ``cv2.imread(IMREAD_UNCHANGED)`` gives them (BGR[A] or gray, the stored depth), and
    the EXIF ``orientation`` still to apply to them. OpenCV's TIFF decoder applies orientations 2-4 itself and
    fails on 5-8, so an oriented TIFF is read upright by Pillow where Pillow keeps its depth; a file OpenCV
    cannot decode at all is read by Pillow too. ``ImageReadError`` names a missing or undecodable file. With
    ``quiet``, what the native decoders print for a file they cannot decode is dropped (see ``_native_stderr``)."""
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    if is_truncated(path):
        raise ImageReadError(f"cannot read image {path} (truncated: the file ends before its image data does)")
    if orientation != 1 and path.suffix.lower() in (".tif", ".tiff"):
        img = _pillow_read(path, keep_depth=True)
        if img is not None:
            return img, 1
    with _native_stderr(quiet) as said:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is not None and img.size:
        if "".join(said):  # a decoder's warning about a file it did read: kept
            sys.stderr.write("".join(said))
        return img, orientation
    img = _pillow_read(path, keep_depth=False)
    if img is None or img.size == 0:
        raise ImageReadError(f"cannot read image (unreadable, truncated or unsupported format): {path}")
    return img, 1


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def is_truncated(path: Path) -> bool:
    """Whether a JPEG or PNG file stops before its end marker (a cut download or copy). Decoders fill the
    missing rows with gray and only print a warning, so this is checked on the file itself: a JPEG needs its
    end-of-image marker after the image data, a PNG its IEND chunk. Other formats, and files whose structure
    cannot be followed, are left to the decoder."""
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 64))
        tail = f.read()
        if head[:3] == b"\xff\xd8\xff":
            if tail.rstrip(b"\x00 \t\r\n").endswith(b"\xff\xd9"):
                return False
            f.seek(0)
            return _jpeg_truncated(f.read())
        if head == _PNG_SIGNATURE:
            return not tail.endswith(_PNG_END) and _png_truncated(f, size)
    return False


def _jpeg_truncated(data: bytes) -> bool:
    """No end-of-image marker after the first scan (data may follow it: motion photos append a video)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return False  # not a structure this check follows
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the entropy-coded data follows; FF D9 is its only end marker
            return data.find(b"\xff\xd9", i + 2) < 0
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return True  # the headers end before the image data starts


def _png_truncated(f: object, size: int) -> bool:
    """The chunks, followed by their lengths, end before the IEND chunk."""
    pos = 8
    while pos + 8 <= size:
        f.seek(pos)
        header = f.read(8)
        if pos == 8 and header[4:8] != b"IHDR":  # not a PNG's structure: a damaged file, left to the decoder
            return False
        if header[4:8] == b"IEND":
            return False
        if not header[4:8].isalpha():  # not a chunk: a damaged file, left to the decoder
            return False
        pos += 12 + int.from_bytes(header[:4], "big")
    return True


@contextlib.contextmanager
def _native_stderr(capture: bool) -> Iterator[list[str]]:
    """Collect what C libraries (libpng's ``libpng error: ...``) write to file descriptor 2 inside the block,
    instead of letting it precede the command's one-line error. The descriptor is process-wide, so this is
    used only on the upscaler's single-threaded image path; the collected text is in the yielded list."""
    said: list[str] = []
    if not capture:
        yield said
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield said
            finally:
                os.dup2(saved, 2)
                sink.seek(0)
                said.append(sink.read().decode(errors="replace"))
    finally:
        os.close(saved)


def _pillow_read(path: Path, keep_depth: bool) -> np.ndarray | None:
    """The file upright, read by Pillow, in OpenCV's channel order; None when Pillow cannot read it, or when
    ``keep_depth`` and Pillow would round its samples to 8 bits (it has no 16-bit colour modes)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            bits = getattr(im, "tag_v2", {}).get(258, 8)
            if max(bits if isinstance(bits, tuple) else (bits,)) > 8 and not im.mode.startswith("I;16"):
                if keep_depth:
                    return None
                log.warning("%s: read with 8 bits per channel (OpenCV cannot decode it)", path.name)
            im = ImageOps.exif_transpose(im)
            if im.mode == "1":
                im = im.convert("L")
            elif im.mode in ("P", "PA"):
                im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
            elif im.mode not in ("L", "LA", "RGB", "RGBA") and not im.mode.startswith("I;16"):
                im = im.convert("RGB")
            img = np.array(im)
        img = img.astype(img.dtype.newbyteorder("="), copy=False)  # big-endian 16-bit TIFFs: native order
    except Exception:  # not an image Pillow reads either
        return None
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = np.ascontiguousarray(img[:, :, [2, 1, 0, 3][: img.shape[2]]])  # RGB[A] -> OpenCV's BGR[A]
    return img


def read_image(path: str | Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB; ``ImageReadError`` names the file when it cannot be decoded."""
    return to_rgb8(_imread(Path(path))[0])


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write H x W x 3 uint8 RGB atomically, creating the folder."""
    write_picture(path, Picture(np.asarray(rgb), None))


# --- the upscaler's images: nothing dropped ---------------------------------------------------------------


@dataclass
class Picture:
    """An image as its file holds it: ``color`` is H x W x 3 RGB or H x W x 1 gray, uint8 or uint16;
    ``alpha`` is H x W of the same dtype, or None."""

    color: np.ndarray
    alpha: np.ndarray | None = None

    @property
    def gray(self) -> bool:
        return self.color.shape[2] == 1

    @property
    def bits(self) -> int:
        return 16 if self.color.dtype == np.uint16 else 8

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)"""
        return self.color.shape[0], self.color.shape[1]


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag (1-8; 1 when absent), read from the header only."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            value = im.getexif().get(0x0112, 1)
    except Exception:  # not a format Pillow reads, or no EXIF: OpenCV decodes it as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an H x W [x C] array, so the image looks as cameras and viewers show it."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],                       # mirrored
        3: lambda a: a[::-1, ::-1],                    # rotated 180
        4: lambda a: a[::-1],                          # flipped
        5: lambda a: a.swapaxes(0, 1),                 # transposed
        6: lambda a: np.rot90(a, k=-1),                # rotated 90 clockwise
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],     # transversed
        8: lambda a: np.rot90(a, k=1),                 # rotated 90 counter-clockwise
    }
    return np.ascontiguousarray(ops[orientation](img))


def _to_depth(img: np.ndarray, path: Path) -> np.ndarray:
    """uint8 and uint16 stay; float images (TIFF, EXR) and other integer depths become uint16."""
    if img.dtype in (np.uint8, np.uint16):
        return img
    if np.issubdtype(img.dtype, np.floating):
        log.warning("%s: %s samples stored as 16-bit", path.name, img.dtype)
        return np.clip(np.round(img.astype(np.float64) * 65535.0), 0, 65535).astype(np.uint16)
    info = np.iinfo(img.dtype)
    log.warning("%s: %s samples stored as 16-bit", path.name, img.dtype)
    scaled = (img.astype(np.float64) - info.min) / (info.max - info.min) * 65535.0
    return np.round(scaled).astype(np.uint16)


def read_picture(path: str | Path) -> Picture:
    """An image with its depth (8 or 16 bits), gray or colour, alpha, and EXIF orientation applied."""
    path = Path(path)
    img, orientation = _imread(path, exif_orientation(path), quiet=True)
    img = _to_depth(img, path)
    if img.ndim == 2:
        img = img[:, :, None]
    alpha = None
    if img.shape[2] == 2:  # gray + alpha
        img, alpha = img[:, :, :1], img[:, :, 1]
    elif img.shape[2] == 4 and (img[:, :, 0] == img[:, :, 1]).all() and (img[:, :, 1] == img[:, :, 2]).all():
        img, alpha = img[:, :, :1], img[:, :, 3]  # OpenCV reads gray + alpha as BGRA with B = G = R
    elif img.shape[2] == 4:
        img, alpha = img[:, :, 2::-1], img[:, :, 3]  # BGRA -> RGB + alpha
    elif img.shape[2] == 3:
        img = img[:, :, ::-1]
    color = orient(img, orientation)
    alpha = orient(alpha, orientation) if alpha is not None else None
    return Picture(color, alpha)


def encode_picture(pic: Picture, suffix: str, quality: int = 95) -> bytes:
    """The bytes of ``pic`` in the format of ``suffix``; a format that cannot hold its depth or alpha gets an
    8-bit or opaque version, and the log says so."""
    suffix = suffix.lower()
    color, alpha = pic.color, pic.alpha
    if color.dtype == np.uint16 and suffix not in DEEP_FORMATS:
        log.warning("%s holds 8 bits per channel: the 16-bit result is rounded to 8 bits (use ext=png or tif to "
                    "keep 16)", suffix)
        color = np.round(color.astype(np.float32) / 257.0).astype(np.uint8)
        alpha = None if alpha is None else np.round(alpha.astype(np.float32) / 257.0).astype(np.uint8)
    if alpha is not None and suffix not in ALPHA_FORMATS:
        log.warning("%s has no alpha channel: the transparency is dropped (use ext=png to keep it)", suffix)
        alpha = None
    if color.shape[2] == 1 and alpha is not None and suffix == ".png" and color.dtype == np.uint8:
        from PIL import Image

        buffer = io.BytesIO()  # OpenCV writes no 2-channel files: Pillow writes gray + alpha
        Image.fromarray(np.dstack([color[:, :, 0], alpha]), "LA").save(buffer, format="PNG")
        return buffer.getvalue()
    if color.shape[2] == 1:  # other formats and 16 bits: gray + alpha goes out as neutral RGBA
        img = color[:, :, 0] if alpha is None else np.dstack([color, color, color, alpha])
    else:
        img = color[:, :, ::-1] if alpha is None else np.dstack([color[:, :, ::-1], alpha])
    params: list[int] = []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(img), params)
    if not ok:
        raise ImageReadError(f"cannot encode an image as {suffix}")
    return buf.tobytes()


def write_picture(path: str | Path, pic: Picture, quality: int = 95) -> Path:
    """``pic`` written atomically in the format of ``path``'s suffix (see ``encode_picture``)."""
    path = Path(path)
    return write_bytes(path, encode_picture(pic, path.suffix, quality))
