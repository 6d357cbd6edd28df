"""Upscaling files: an image, a folder (recursive, resumable) or a video (threaded decode, model, encode)."""

from __future__ import annotations

import logging
import queue
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rt4ksr.data.io import IMAGE_EXTENSIONS, ImageReadError, read_image, write_image
from rt4ksr.deploy.inference import Upscaler
from rt4ksr.extras import require

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts")
# output codec by container, best first; PyAV's bundled FFmpeg has all of these
VIDEO_CODECS = {".webm": ("libvpx-vp9",), ".avi": ("mpeg4",)}
DEFAULT_CODECS = ("libx264", "mpeg4")


class UnsupportedInputError(ValueError):
    """The input's format or codec cannot be read."""


def upscale_image(up: Upscaler, src: Path, dst: Path) -> None:
    write_image(dst, up(read_image(src)))


def upscale_folder(up: Upscaler, src: Path, dst: Path, overwrite: bool = False, progress: bool = True) -> list[str]:
    """Every image below ``src`` (recursively) to ``dst`` with the same relative name as PNG; existing outputs
    are skipped unless ``overwrite``. Returns the errors of files that could not be read."""
    files = sorted(p for p in src.rglob("*") if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    for p in files:
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            log.info("not an image, skipped: %s", p)
    todo = [(p, (dst / p.relative_to(src)).with_suffix(".png")) for p in images]
    if not overwrite:
        done = sum(o.exists() for _, o in todo)
        if done:
            log.info("%d of %d outputs exist and are kept (overwrite=true redoes them)", done, len(todo))
        todo = [(p, o) for p, o in todo if not o.exists()]
    errors = []
    for p, o in tqdm(todo, desc="upscale", unit="img", disable=not progress):
        try:
            upscale_image(up, p, o)
        except ImageReadError as e:
            log.warning("%s", e)
            errors.append(str(e))
    return errors


def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: an odd output (x3 of an odd input) gets its last row/column repeated."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def upscale_video(up: Upscaler, src: Path, dst: Path, batch_size: int = 4, crf: int = 18,
                  progress: bool = True) -> int:
    """Decode, upscale in batches, encode; the frame rate is kept and the audio stream copied. Decoding,
    inference and encoding run in three threads joined by bounded queues, so they overlap. Returns frames."""
    av = require("av", "video", "video upscaling")

    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as e:
        raise UnsupportedInputError(f"cannot open video {src}: {e}") from e
    if not inp.streams.video:
        raise UnsupportedInputError(f"{src} has no video stream")
    vin = inp.streams.video[0]
    vin.thread_type = "AUTO"
    ain = inp.streams.audio[0] if inp.streams.audio else None
    try:
        vin.codec_context  # noqa: B018 - raises for an unknown codec
    except Exception as e:  # pragma: no cover - depends on the FFmpeg build
        raise UnsupportedInputError(f"{src}: unsupported video codec ({e})") from e
    rate = vin.average_rate or vin.guessed_rate or Fraction(25)
    dst.parent.mkdir(parents=True, exist_ok=True)
    out = av.open(str(dst), "w")
    codec = next((c for c in VIDEO_CODECS.get(dst.suffix.lower(), DEFAULT_CODECS) if c in av.codecs_available), None)
    if codec is None:
        raise UnsupportedInputError(f"no video encoder for {dst.suffix} in this FFmpeg build")
    vout = out.add_stream(codec, rate=rate)
    vout.width, vout.height = (-(-vin.width * up.scale // 2) * 2, -(-vin.height * up.scale // 2) * 2)
    vout.pix_fmt = "yuv420p"
    if codec in ("libx264", "libx265"):
        vout.options = {"crf": str(crf), "preset": "medium"}
    aout = out.add_stream_from_template(ain) if ain is not None else None
    total = vin.frames or None

    decoded: queue.Queue = queue.Queue(maxsize=8)
    encoded: queue.Queue = queue.Queue(maxsize=8)
    errors: list[BaseException] = []

    def decode() -> None:
        try:
            batch: list[np.ndarray] = []
            streams = [s for s in (vin, ain) if s is not None]
            for packet in inp.demux(*streams):
                if packet.stream is ain:
                    if packet.dts is not None:
                        decoded.put(("audio", packet))
                    continue
                for frame in packet.decode():
                    batch.append(frame.to_ndarray(format="rgb24"))
                    if len(batch) == batch_size:
                        decoded.put(("video", np.stack(batch)))
                        batch = []
            if batch:
                decoded.put(("video", np.stack(batch)))
        except BaseException as e:  # handed to the main thread
            errors.append(e)
        finally:
            decoded.put(None)

    def encode() -> None:
        try:
            n = 0
            while (item := encoded.get()) is not None:
                kind, payload = item
                if kind == "audio":
                    payload.stream = aout
                    out.mux(payload)
                    continue
                for img in payload:
                    frame = av.VideoFrame.from_ndarray(_even(img), format="rgb24")
                    frame.pts = n
                    n += 1
                    out.mux(vout.encode(frame))
            out.mux(vout.encode(None))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=decode, daemon=True), threading.Thread(target=encode, daemon=True)]
    for t in threads:
        t.start()
    frames = 0
    bar = tqdm(total=total, desc=f"upscale {src.name}", unit="frame", disable=not progress)
    try:
        while (item := decoded.get()) is not None:
            kind, payload = item
            if kind == "video":
                payload = up(payload)
                frames += len(payload)
                bar.update(len(payload))
            encoded.put((kind, payload))
    finally:
        encoded.put(None)
        for t in threads:
            t.join()
        bar.close()
        out.close()
        inp.close()
    if errors:
        raise errors[0]
    return frames


def upscale_path(up: Upscaler, src: Path, dst: Path, overwrite: bool = False, batch_size: int = 4,
                 progress: bool = True) -> list[str]:
    """Dispatch on the input: a folder, an image or a video. Returns the errors of skipped files."""
    if src.is_dir():
        return upscale_folder(up, src, dst, overwrite, progress)
    if not src.is_file():
        raise FileNotFoundError(f"input not found: {src}")
    ext = src.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        target = dst / f"{src.stem}.png" if dst.is_dir() or not dst.suffix else dst
        if target.exists() and not overwrite:
            log.info("output exists, kept (overwrite=true redoes it): %s", target)
            return []
        upscale_image(up, src, target)
        return []
    if ext in VIDEO_EXTENSIONS:
        target = dst / f"{src.stem}_x{up.scale}{ext}" if dst.is_dir() or not dst.suffix else dst
        if target.exists() and not overwrite:
            log.info("output exists, kept (overwrite=true redoes it): %s", target)
            return []
        upscale_video(up, src, target, batch_size, progress=progress)
        return []
    raise UnsupportedInputError(f"unsupported input format {ext or '(none)'!r} for {src}: images "
                                f"{', '.join(IMAGE_EXTENSIONS)}; videos {', '.join(VIDEO_EXTENSIONS)}")
