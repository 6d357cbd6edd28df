"""Upscaling a video: decode, model and encode in three threads joined by bounded queues, the frame rate and bit
depth kept, every other stream mapped (``streams``), and a video that ends before its container says refused."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rt4ksr.core.errors import UnsupportedInputError, UserError
from rt4ksr.core.extras import require
from rt4ksr.core.files import atomic_path
from rt4ksr.inference.upscaler import Upscaler
from rt4ksr.inference.upscaling.options import OutputOptions
from rt4ksr.inference.upscaling.pictures import output_size, resize
from rt4ksr.inference.upscaling.streams import StreamMap, map_streams

log = logging.getLogger(__name__)


class DamagedVideoError(UserError, ValueError):
    """A video that ends before its container says it does (a cut download or copy), or that FFmpeg cannot
    decode to its end: refused, so that a partial upscale never passes as a complete one."""


def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: an odd output (x3 of an odd input) gets its last row/column repeated."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def _clock(text: str | None) -> float | None:
    """Seconds from a Matroska ``DURATION`` tag (``00:01:02.500000000``); None when there is none."""
    if not text:
        return None
    try:
        h, m, s = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        return None


def stated_end(inp: Any, vin: Any) -> tuple[float | None, bool]:
    """Where the container says the video stream ends (seconds), and whether that is the video's own length (a
    stream duration, as MP4 and MOV give, or a Matroska/WebM ``DURATION`` tag) rather than the file's, which a
    longer audio track may make longer. (None, False) when the container does not say."""
    tb = vin.time_base
    if vin.duration and tb:
        start = float(vin.start_time * tb) if vin.start_time is not None else 0.0
        return start + float(vin.duration * tb), True
    tagged = _clock(vin.metadata.get("DURATION") or vin.metadata.get("duration"))
    if tagged:
        return tagged, True
    if inp.duration:
        only_video = all(s.type in ("video", "attachment") for s in inp.streams) and len(inp.streams.video) == 1
        return ((inp.start_time or 0) + inp.duration) / 1_000_000, only_video
    return None, False


def expected_frames(inp: Any, vin: Any) -> int | None:
    """The video's frame count: the stream's own (MP4, MOV, AVI), else duration x frame rate (Matroska, WebM)."""
    if vin.frames:
        return int(vin.frames)
    end, _ = stated_end(inp, vin)
    rate = vin.average_rate or vin.guessed_rate
    if end is None or not rate:
        return None
    start = float(vin.start_time * vin.time_base) if vin.start_time is not None and vin.time_base else 0.0
    return max(1, round((end - start) * float(rate)))


@dataclass
class _Decoded:
    """What the decoder got through: frames, and where the last one ends (seconds)."""

    frames: int = 0
    end: float = 0.0

    def add(self, frame: Any, rate: float) -> None:
        self.frames += 1
        if frame.pts is not None and frame.time_base:
            length = float(frame.duration * frame.time_base) if frame.duration else 1.0 / rate
            self.end = max(self.end, frame.time + length)


def _check_complete(src: Path, inp: Any, vin: Any, decoded: _Decoded) -> None:
    """Refuse a video that stops more than two frames before the end its container states (one cut short); an
    end that only the file's duration gives (which a longer audio track may set) is not held against it."""
    if decoded.frames == 0:
        raise DamagedVideoError(f"{src} has no decodable video frame")
    end, own = stated_end(inp, vin)
    rate = float(vin.average_rate or vin.guessed_rate or 25)
    if end is None or not own:
        return
    if decoded.end == 0.0:  # frames without timestamps: count them from the start
        start = float(vin.start_time * vin.time_base) if vin.start_time is not None and vin.time_base else 0.0
        decoded.end = start + decoded.frames / rate
    if end - decoded.end > 2.0 / rate + 0.05:
        total = expected_frames(inp, vin)
        about = f" of about {total}" if total else ""
        raise DamagedVideoError(f"{src} is truncated: its video stops at {decoded.end:.2f} s of the {end:.2f} s its "
                                f"container states ({decoded.frames}{about} frames decoded); no output was written")


def upscale_video(up: Upscaler, src: Path, dst: Path, batch_size: int = 4, opts: OutputOptions | None = None,
                  progress: bool = True) -> int:
    """Decode, upscale in batches, encode; the frame rate and bit depth are kept (10-bit where the output's
    encoder takes it), and every other stream copied (or re-encoded when the container cannot hold its codec,
    which the log says). Decoding, inference and encoding run in three threads joined by bounded queues, so
    they overlap. A video that ends before its container says is refused. Written atomically. Returns
    frames."""
    av = require("av", "video", "video upscaling")
    opts = opts or OutputOptions()
    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as e:
        raise UnsupportedInputError(f"cannot open video {src}: {ffmpeg_reason(e)}") from e
    try:
        if not inp.streams.video:
            raise UnsupportedInputError(f"{src} has no video stream")
        vin = main_video(av, inp)
        vin.thread_type = "AUTO"
        try:
            vin.codec_context  # noqa: B018 - raises for an unknown codec
        except Exception as e:  # pragma: no cover - depends on the FFmpeg build
            raise UnsupportedInputError(f"{src}: unsupported video codec ({e})") from e
        with atomic_path(dst) as tmp:
            frames = _transcode(av, up, inp, vin, src, tmp, dst, batch_size, opts, progress)
    except av.error.FFmpegError as e:  # a stream FFmpeg cannot convert or encode: one line
        raise UnsupportedInputError(f"{src}: {ffmpeg_reason(e)}") from e
    finally:
        inp.close()
    return frames


def main_video(av: Any, inp: Any) -> Any:
    """The video stream to upscale: the first that is not a cover picture (which MP4 and MKV store as a
    one-frame video stream, sometimes before the video)."""
    cover = getattr(getattr(av.stream, "Disposition", None), "attached_pic", 0)
    return next((s for s in inp.streams.video if not (cover and s.disposition & cover)), inp.streams.video[0])


def ffmpeg_reason(e: Exception) -> str:
    """FFmpeg's reason without the errno and the file name PyAV appends (the message names the file)."""
    return getattr(e, "strerror", None) or str(e)


def _transcode(av: Any, up: Upscaler, inp: Any, vin: Any, src: Path, tmp: Path, dst: Path, batch_size: int,
               opts: OutputOptions, progress: bool) -> int:
    out = av.open(str(tmp), "w")
    try:
        size = output_size((vin.height, vin.width), up.scale, opts.outscale)
        streams = map_streams(av, inp, vin, out, src, dst, size, opts)
        job = Transcode(up, inp, out, streams, size, batch_size, src, dst.name)
        frames = _pipeline(job, progress)
        _check_complete(src, inp, vin, job.decoded)
    finally:
        out.close()
    return frames


@dataclass
class Transcode:
    """One video's transcode: what the decoding, inference and encoding threads share."""

    up: Upscaler
    inp: Any  # the input container (PyAV)
    out: Any  # the output container, written to a temporary file
    streams: StreamMap
    size: tuple[int, int]  # the output frames' (height, width)
    batch_size: int  # frames per forward pass
    src: Path
    name: str  # the output's name, for the progress bar
    decoded: _Decoded = field(default_factory=_Decoded)


def _pipeline(job: Transcode, progress: bool) -> int:
    import av

    up, inp, out, streams, size, batch_size = job.up, job.inp, job.out, job.streams, job.size, job.batch_size
    src, name, decoded = job.src, job.name, job.decoded

    vin, vout = streams.vin, streams.vout
    rate = float(vin.average_rate or vin.guessed_rate or 25)
    fmt = streams.decode_format
    queued: queue.Queue = queue.Queue(maxsize=8)
    encoded: queue.Queue = queue.Queue(maxsize=8)
    errors: list[BaseException] = []
    stop = threading.Event()  # set by the main thread when it ends: the decoder stops reading

    def decode() -> None:
        try:
            batch: list[np.ndarray] = []
            for packet in inp.demux(*streams.inputs(inp)):
                if stop.is_set():
                    return
                index = packet.stream.index
                if index in streams.copied:
                    if packet.size and (packet.dts is not None or packet.pts is not None):
                        queued.put(("copy", index, packet))
                    continue
                if index in streams.encoded:
                    queued.put(("audio", index, list(packet.decode())))
                    continue
                for frame in packet.decode():
                    decoded.add(frame, rate)
                    batch.append(frame.to_ndarray(format=fmt))
                    if len(batch) == batch_size:
                        queued.put(("video", None, np.stack(batch)))
                        batch = []
            if batch:
                queued.put(("video", None, np.stack(batch)))
        except av.error.FFmpegError as e:  # the input's fault: where it broke, in one line
            errors.append(DamagedVideoError(f"{src} is damaged or truncated: decoding failed after {decoded.frames} "
                                            f"frames ({decoded.end:.2f} s): {ffmpeg_reason(e)}"))
        except BaseException as e:  # handed to the main thread
            errors.append(e)
        finally:
            queued.put(None)

    def encode() -> None:
        try:
            n = 0
            while (item := encoded.get()) is not None:
                kind, index, payload = item
                if kind == "copy":
                    payload.stream = streams.copied[index]
                    out.mux(payload)
                elif kind == "audio":
                    aout = streams.encoded[index]
                    for f in payload:
                        f.pts = None  # the encoder numbers its own samples
                        out.mux(aout.encode(f))
                else:
                    for img in payload:
                        frame = av.VideoFrame.from_ndarray(_even(resize(img, size)), format=fmt)
                        frame.pts = n
                        n += 1
                        out.mux(vout.encode(frame))
            out.mux(vout.encode(None))
            for aout in streams.encoded.values():
                out.mux(aout.encode(None))
        except BaseException as e:
            errors.append(e)
            while encoded.get() is not None:  # keep draining, so that the producer never blocks
                pass

    threads = [threading.Thread(target=decode, daemon=True), threading.Thread(target=encode, daemon=True)]
    for t in threads:
        t.start()
    frames = 0
    decoder_done = False
    bar = tqdm(total=expected_frames(inp, vin), desc=f"upscale {name}", unit="frame", disable=not progress)
    try:
        while not errors:  # a failed decoder or encoder ends the run: no use upscaling the rest
            item = queued.get()
            if item is None:
                decoder_done = True
                break
            kind, index, payload = item
            if kind == "video":
                payload = up(payload)
                frames += len(payload)
                bar.update(len(payload))
            encoded.put((kind, index, payload))
    finally:
        stop.set()
        while not decoder_done:  # unblock the decoder's put until it has said it ended
            decoder_done = queued.get() is None
        encoded.put(None)
        for t in threads:
            t.join()
        bar.close()
    if errors:
        raise errors[0]
    return frames
