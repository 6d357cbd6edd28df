"""Upscaling files: an image, a folder (recursive, resumable) or a video (threaded decode, model, encode).

Nothing is dropped silently: 16-bit images stay 16-bit, grayscale stays single-channel and neutral, alpha
is kept (upscaled by the model, as Real-ESRGAN does, or by bicubic interpolation), EXIF orientation is
honoured, and a video's audio is copied, or re-encoded when the output container cannot hold its codec.
Every output is written atomically, so an interrupted run never leaves a truncated file under its name.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from rt4ksr.config import bool_option, int_option, number_option
from rt4ksr.data.io import IMAGE_EXTENSIONS, Picture, read_picture, write_picture
from rt4ksr.deploy.inference import Upscaler
from rt4ksr.errors import ConfigValueError, InputNotFoundError, UnsupportedInputError, UserError
from rt4ksr.extras import require
from rt4ksr.files import atomic_path, check_writable, is_partial, remove_stale_partials

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts")
# output codec by container, best first; PyAV's bundled FFmpeg has all of these
VIDEO_CODECS = {".webm": ("libvpx-vp9",), ".avi": ("mpeg4",)}
DEFAULT_CODECS = ("libx264", "mpeg4")
# the crf each encoder takes: x264/x265 0-51, VP9 0-63; mpeg4 has no crf and gets the quantiser crf/6 (1-31)
CRF_MAX = {"libx264": 51, "libx265": 51, "libvpx-vp9": 63, "mpeg4": 63}
AUDIO_ENCODERS = {"opus": ("libopus", "opus"), "vorbis": ("libvorbis", "vorbis"), "mp3": ("libmp3lame", "mp3")}
ALPHA_MODES = ("model", "bicubic")


@dataclass
class OutputOptions:
    """How outputs are made and named; the names follow Real-ESRGAN's command line where it has one.

    ``outscale``: the final size relative to the input (None: the model's scale), reached by a Lanczos
    (enlarging) or area (shrinking) resize of the model's output. ``suffix``: appended to each output's
    stem. ``ext``: the image format (None: png, or the output file's own suffix; ``auto`` keeps the input's).
    ``alpha``: ``model`` or ``bicubic``. ``overwrite``: redo outputs that exist in a folder run (a single
    file is always written). ``crf``: video quality, lower is better (x264/x265/VP9 constant rate factor;
    mpeg4 gets quantiser crf/6). Every value is checked here, before a model is loaded.
    """

    outscale: float | None = None
    suffix: str = ""
    ext: str | None = None
    alpha: str = "model"
    overwrite: bool = False
    quality: int = 95
    crf: int = 18

    def __post_init__(self) -> None:
        if self.alpha not in ALPHA_MODES:
            raise ConfigValueError(f"alpha must be one of {ALPHA_MODES}, got {self.alpha!r}")
        if self.ext is not None:
            ext = str(self.ext).lower().lstrip(".")
            if ext != "auto" and f".{ext}" not in IMAGE_EXTENSIONS:
                raise ConfigValueError(f"ext must be auto or one of {', '.join(e[1:] for e in IMAGE_EXTENSIONS)}, "
                                       f"got {self.ext!r}")
            self.ext = ext
        self.outscale = number_option("outscale", self.outscale, 0, 16, none=True)
        self.quality = int_option("quality", self.quality, 0, 100)
        self.crf = int_option("crf", self.crf, 0, max(CRF_MAX.values()))
        self.overwrite = bool_option("overwrite", self.overwrite)
        if self.suffix is None or isinstance(self.suffix, bool) or not isinstance(self.suffix, str | int):
            raise ConfigValueError(f"suffix must be text such as _x2, got {self.suffix!r}")
        self.suffix = str(self.suffix)
        if any(bad in self.suffix for bad in ("/", "\\", "..", "\0")):
            raise ConfigValueError(f"suffix must not hold '/', '\\', '..' or NUL (it names files inside the output "
                                   f"folder), got {self.suffix!r}")

    def check_video(self, suffix: str) -> None:
        """``crf`` within the range of the encoder that writes ``suffix`` videos."""
        codec = VIDEO_CODECS.get(suffix.lower(), DEFAULT_CODECS)[0]
        high = CRF_MAX.get(codec, 63)
        if self.crf > high:
            raise ConfigValueError(f"crf must be from 0 to {high} for {suffix} videos ({codec}), got {self.crf}")


@dataclass
class Report:
    """What a run did: files written, outputs kept from an earlier run, and failures (file: reason)."""

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"wrote {len(self.written)} file(s)"]
        if len(self.written) == 1:
            parts = [f"wrote {self.written[0]}"]
        elif self.written:
            parts[0] += f" under {_common_parent(self.written)}"
        if self.kept:
            parts.append(f"kept {len(self.kept)} existing (overwrite=true redoes them)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return "; ".join(parts)


def _common_parent(paths: list[Path]) -> Path:
    parents = [p.parent.resolve().parts for p in paths]
    common = []
    for level in zip(*parents, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return Path(*common) if common else Path("/")


# --- images -------------------------------------------------------------------------------------------------


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``img`` (H x W [x C], uint8/uint16) at ``size`` (height, width): Lanczos enlarging, area shrinking."""
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    shrink = h < img.shape[0]
    out = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)
    return out.reshape(h, w, *img.shape[2:])


def output_size(size: tuple[int, int], scale: int, outscale: float | None) -> tuple[int, int]:
    """(height, width) of the output: the model's scale, or ``outscale`` x the input (rounded)."""
    factor = scale if outscale is None else outscale
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


def _single_channel(up: Upscaler, plane: np.ndarray) -> np.ndarray:
    """A gray plane (H x W) through the 3-channel model, as a neutral gray: the mean of the output channels
    (the network tints gray by a few levels per channel; the mean removes the tint)."""
    sr = up.run(up.to_tensor(np.repeat(plane[:, :, None], 3, axis=2)))
    return up.to_array(sr.float().mean(dim=1, keepdim=True), plane.dtype)[0, :, :, 0]


def upscale_picture(up: Upscaler, pic: Picture, alpha: str = "model", outscale: float | None = None) -> Picture:
    """The upscaled picture, with the input's depth, channels and alpha."""
    size = output_size(pic.size, up.scale, outscale)
    color = _single_channel(up, pic.color[:, :, 0])[:, :, None] if pic.gray else up(pic.color)
    color = resize(color, size)
    a = None
    if pic.alpha is not None:
        if pic.alpha.min() == pic.alpha.max():  # uniform (often fully opaque): nothing to upscale
            a = np.full(size, pic.alpha.flat[0], pic.alpha.dtype)
        elif alpha == "model":
            a = resize(_single_channel(up, pic.alpha), size)
        else:
            a = cv2.resize(pic.alpha, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    return Picture(color, a)


def upscale_image(up: Upscaler, src: Path, dst: Path, opts: OutputOptions | None = None) -> Path:
    """One image file to ``dst`` (its suffix picks the format), written atomically."""
    opts = opts or OutputOptions()
    pic = read_picture(src)
    return write_picture(dst, upscale_picture(up, pic, opts.alpha, opts.outscale), opts.quality)


def image_name(src: Path, opts: OutputOptions) -> str:
    """The output file name for an input image: stem + suffix + the chosen extension (``auto``: the input's,
    in its case; none chosen: png)."""
    ext = src.suffix if opts.ext == "auto" else f".{opts.ext or 'png'}"
    return f"{src.stem}{opts.suffix}{ext}"


def video_name(src: Path, opts: OutputOptions) -> str:
    """The output file name for an input video: stem + suffix, in the input's container (``ext`` is for
    images), so that videos are named as images are."""
    return f"{src.stem}{opts.suffix}{src.suffix}"


def output_name(src: Path, opts: OutputOptions) -> str:
    """The output file name for any input (image or video) in a folder output."""
    return video_name(src, opts) if src.suffix.lower() in VIDEO_EXTENSIONS else image_name(src, opts)


_SAME_FORMAT = {".jpeg": ".jpg", ".tiff": ".tif"}


def _format(suffix: str) -> str:
    suffix = suffix.lower()
    return _SAME_FORMAT.get(suffix, suffix)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (links and case-insensitive file systems included)."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


# --- folders ------------------------------------------------------------------------------------------------


def upscale_folder(up: Upscaler, src: Path, dst: Path, opts: OutputOptions | None = None, batch_size: int = 4,
                   progress: bool = True) -> Report:
    """Every image and video below ``src`` (recursively) into ``dst`` with the same relative path. Outputs
    that exist are kept unless ``overwrite``, so a stopped run resumes where it was. A file that fails is
    listed in the report and the rest goes on."""
    opts = opts or OutputOptions()
    report = Report()
    check_output_folder(src, dst, opts)
    src_resolved, dst_resolved = src.resolve(), dst.resolve()
    in_place = dst_resolved == src_resolved
    nested = not in_place and dst_resolved.is_relative_to(src_resolved)  # outputs below the input: not inputs
    files = sorted(p for p in src.rglob("*") if p.is_file() and not is_partial(p))
    if nested:
        inside = [p for p in files if p.resolve().is_relative_to(dst_resolved)]
        if inside:
            log.info("skipped %d file(s) inside the output folder %s (outputs, not inputs)", len(inside), dst)
            files = [p for p in files if not p.resolve().is_relative_to(dst_resolved)]
    todo: list[tuple[Path, Path, bool]] = []
    for p in files:
        ext = p.suffix.lower()
        is_video = ext in VIDEO_EXTENSIONS
        if ext not in IMAGE_EXTENSIONS and not is_video:
            log.info("not an image or a video, skipped: %s", p)
            continue
        if in_place and p.stem.endswith(opts.suffix):
            log.info("an output of an earlier run (its name ends with %s), skipped: %s", opts.suffix, p)
            continue
        if is_video:
            opts.check_video(p.suffix)
        todo.append((p, dst / p.relative_to(src).parent / output_name(p, opts), is_video))
    inputs = {p.resolve() for p, _, _ in todo}
    for p, o, _ in todo:
        if o.resolve() in inputs or _same_file(p, o):
            raise ConfigValueError(f"the output {o} would overwrite an input: give another output folder or a "
                                   "suffix (suffix=_x2)")
    if dst.is_dir():
        remove_stale_partials(dst)
    if not opts.overwrite:
        report.kept = [o for _, o, _ in todo if o.exists()]
        if report.kept:
            log.info("%d of %d outputs exist and are kept (overwrite=true redoes them)", len(report.kept), len(todo))
        todo = [(p, o, v) for p, o, v in todo if not o.exists()]
    for p, o, is_video in tqdm(todo, desc="upscale", unit="file", disable=not progress):
        try:
            if is_video:
                upscale_video(up, p, o, batch_size, opts, progress=False)
            else:
                upscale_image(up, p, o, opts)
            report.written.append(o)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            log.warning("failed: %s: out of GPU memory", p)
            report.failed.append(f"{p}: out of GPU memory: tile=512 (or smaller) upscales it in tiles")
        except (UserError, OSError, ValueError) as e:  # this file's problem: list it, go on with the rest
            log.warning("failed: %s", e)
            report.failed.append(f"{p}: {e}")
    return report


def check_output_folder(src: Path, dst: Path, opts: OutputOptions) -> None:
    """The output of a folder run, checked before any work: a folder (one that does not exist yet must not look
    like a file name), and, when it is the input folder, a ``suffix`` that tells outputs from inputs."""
    if dst.exists() and not dst.is_dir():
        raise ConfigValueError(f"output {dst} is a file: a folder input needs an output folder")
    if not dst.exists() and dst.suffix:
        raise ConfigValueError(f"output {dst} looks like a file name, but the input {src} is a folder: give an "
                               f"output folder (output={dst.with_suffix('')}); create it first to use this name")
    if dst.resolve() == src.resolve() and not opts.suffix:
        raise ConfigValueError(f"the output folder is the input folder {src}: give a suffix (suffix=_x2), which "
                               "tells the outputs from the inputs, or another output folder")


# --- videos -------------------------------------------------------------------------------------------------


def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: an odd output (x3 of an odd input) gets its last row/column repeated."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def _audio_plan(av: object, out: object, ain: object) -> tuple[str, str | None]:
    """('copy', None) when the container takes the source's audio codec; else ('encode', encoder)."""
    supported = out.supported_codecs
    name = ain.codec_context.name
    if not supported or name in supported:
        return "copy", None
    target = out.default_audio_codec
    for enc in AUDIO_ENCODERS.get(target, (target,)):
        if enc in av.codecs_available:
            return "encode", enc
    raise UnsupportedInputError(f"the {out.format.name} container cannot hold {name} audio and this FFmpeg build "
                                f"has no {target} encoder: choose another output container (.mkv takes any)")


def _audio_rate(av: object, encoder: str, rate: int | None) -> int:
    """The source's sample rate when the encoder takes it, else 48 kHz (Opus takes no 44.1 kHz); the encoder
    resamples the frames it is given to its stream's rate."""
    rates = av.codec.Codec(encoder, "w").audio_rates
    if not rates or (rate and rate in rates):
        return rate or 48000
    return 48000 if 48000 in rates else max(rates)


def video_options(codec: str, crf: int) -> dict[str, str]:
    """The encoder options that give quality ``crf`` (lower is better): crf for x264/x265, crf with no bitrate
    cap for VP9 (its constant-quality mode), a fixed quantiser for mpeg4, which has no crf."""
    if codec in ("libx264", "libx265"):
        return {"crf": str(crf), "preset": "medium"}
    if codec == "libvpx-vp9":
        return {"crf": str(crf), "b:v": "0"}
    if codec == "mpeg4":
        q = str(min(31, max(1, round(crf / 6))))
        return {"qmin": q, "qmax": q}
    return {}


def upscale_video(up: Upscaler, src: Path, dst: Path, batch_size: int = 4, opts: OutputOptions | None = None,
                  progress: bool = True) -> int:
    """Decode, upscale in batches, encode; the frame rate is kept and the audio copied (or re-encoded to the
    container's codec when it cannot hold the source's, which the log says). Decoding, inference and encoding
    run in three threads joined by bounded queues, so they overlap. Written atomically. Returns frames."""
    av = require("av", "video", "video upscaling")
    opts = opts or OutputOptions()
    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as e:
        raise UnsupportedInputError(f"cannot open video {src}: {e}") from e
    try:
        if not inp.streams.video:
            raise UnsupportedInputError(f"{src} has no video stream")
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        try:
            vin.codec_context  # noqa: B018 - raises for an unknown codec
        except Exception as e:  # pragma: no cover - depends on the FFmpeg build
            raise UnsupportedInputError(f"{src}: unsupported video codec ({e})") from e
        with atomic_path(dst) as tmp:
            frames = _transcode(av, up, inp, vin, tmp, dst, batch_size, opts, progress)
    except av.error.FFmpegError as e:  # a stream FFmpeg cannot decode, convert or encode: one line
        raise UnsupportedInputError(f"{src}: {e}") from e
    finally:
        inp.close()
    return frames


def _transcode(av: object, up: Upscaler, inp: object, vin: object, tmp: Path, dst: Path, batch_size: int,
               opts: OutputOptions, progress: bool) -> int:
    ain = inp.streams.audio[0] if inp.streams.audio else None
    rate = vin.average_rate or vin.guessed_rate or Fraction(25)
    out = av.open(str(tmp), "w")
    try:
        codec = next((c for c in VIDEO_CODECS.get(dst.suffix.lower(), DEFAULT_CODECS) if c in av.codecs_available),
                     None)
        if codec is None:
            raise UnsupportedInputError(f"no video encoder for {dst.suffix} in this FFmpeg build")
        vout = out.add_stream(codec, rate=rate)
        h, w = output_size((vin.height, vin.width), up.scale, opts.outscale)
        vout.width, vout.height = w + w % 2, h + h % 2
        vout.pix_fmt = "yuv420p"
        vout.options = video_options(codec, opts.crf)
        plan, aout = ("none", None), None
        if ain is not None:
            plan = _audio_plan(av, out, ain)
            name, source_rate = ain.codec_context.name, ain.codec_context.sample_rate
            if plan[0] == "copy":
                aout = out.add_stream_from_template(ain)
                log.info("audio: %s copied", name)
            else:
                rate = _audio_rate(av, plan[1], source_rate)
                aout = out.add_stream(plan[1], rate=rate)
                resampled = f", resampled from {source_rate} to {rate} Hz" if rate != (source_rate or rate) else ""
                log.info("audio: %s cannot go into %s; re-encoded with %s%s", name, dst.suffix, plan[1], resampled)
        frames = _pipeline(up, inp, vin, ain, out, vout, aout, plan[0], (h, w), batch_size, progress, dst.name)
    finally:
        out.close()
    return frames


def _pipeline(up: Upscaler, inp: object, vin: object, ain: object, out: object, vout: object, aout: object,
              audio: str, size: tuple[int, int], batch_size: int, progress: bool, name: str) -> int:
    import av

    decoded: queue.Queue = queue.Queue(maxsize=8)
    encoded: queue.Queue = queue.Queue(maxsize=8)
    errors: list[BaseException] = []
    stop = threading.Event()  # set by the main thread when it ends: the decoder stops reading

    def decode() -> None:
        try:
            batch: list[np.ndarray] = []
            streams = [s for s in (vin, ain) if s is not None]
            for packet in inp.demux(*streams):
                if stop.is_set():
                    return
                if packet.stream is ain:
                    if audio == "copy" and packet.dts is not None:
                        decoded.put(("audio", packet))
                    elif audio == "encode":
                        decoded.put(("audio_frames", list(packet.decode())))
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
                if kind == "audio_frames":
                    for f in payload:
                        f.pts = None  # the encoder numbers its own samples
                        out.mux(aout.encode(f))
                    continue
                for img in payload:
                    frame = av.VideoFrame.from_ndarray(_even(resize(img, size)), format="rgb24")
                    frame.pts = n
                    n += 1
                    out.mux(vout.encode(frame))
            out.mux(vout.encode(None))
            if audio == "encode":
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
    bar = tqdm(total=vin.frames or None, desc=f"upscale {name}", unit="frame", disable=not progress)
    try:
        while not errors:  # a failed decoder or encoder ends the run: no use upscaling the rest
            item = decoded.get()
            if item is None:
                decoder_done = True
                break
            kind, payload = item
            if kind == "video":
                payload = up(payload)
                frames += len(payload)
                bar.update(len(payload))
            encoded.put((kind, payload))
    finally:
        stop.set()
        while not decoder_done:  # unblock the decoder's put until it has said it ended
            decoder_done = decoded.get() is None
        encoded.put(None)
        for t in threads:
            t.join()
        bar.close()
    if errors:
        raise errors[0]
    return frames


# --- dispatch -----------------------------------------------------------------------------------------------


def check_paths(src: Path, dst: Path, opts: OutputOptions) -> None:
    """The input and the output checked before a model is loaded: the input exists in a supported format, the
    output fits it (see ``single_target`` and ``check_output_folder``) and its folder can be written."""
    if src.is_dir():
        check_output_folder(src, dst, opts)
        check_writable(dst)
        return
    if not src.is_file():
        raise InputNotFoundError(f"input not found: {src}")
    ext = src.suffix.lower()
    if ext not in IMAGE_EXTENSIONS and ext not in VIDEO_EXTENSIONS:
        raise UnsupportedInputError(f"unsupported input format {ext or '(none)'!r} for {src}: images "
                                    f"{', '.join(IMAGE_EXTENSIONS)}; videos {', '.join(VIDEO_EXTENSIONS)}")
    check_writable(single_target(src, dst, opts).parent)


def single_target(src: Path, dst: Path, opts: OutputOptions) -> Path:
    """Where a single input goes: ``dst`` itself, or ``dst/<name>`` when ``dst`` is a folder (or has no suffix).
    The user asked for that file, so an existing one is replaced. Checked before any work: the format fits the
    input, an explicit ``ext`` agrees with the file name, the input is not overwritten."""
    is_video = src.suffix.lower() in VIDEO_EXTENSIONS
    as_folder = dst.is_dir() or not dst.suffix
    target = dst / output_name(src, opts) if as_folder else dst
    if not as_folder:
        valid = VIDEO_EXTENSIONS if is_video else IMAGE_EXTENSIONS
        if target.suffix.lower() not in valid:
            kind = "a video" if is_video else "an image"
            raise ConfigValueError(f"output {target}: {kind} is written as {', '.join(valid)}, not "
                                   f"{target.suffix!r}")
        wanted = src.suffix if opts.ext == "auto" else f".{opts.ext}" if opts.ext else None
        if not is_video and wanted is not None and _format(wanted) != _format(target.suffix):
            raise ConfigValueError(f"ext={opts.ext} contradicts output {target.name}: the output's suffix picks the "
                                   f"format; drop ext, or name the output {target.stem}{wanted}")
    if is_video:
        opts.check_video(target.suffix)
    if _same_file(target, src):
        raise ConfigValueError(f"the output {target} would overwrite the input: give another output or a suffix")
    return target


def upscale_path(up: Upscaler, src: Path, dst: Path, opts: OutputOptions | None = None, batch_size: int = 4,
                 progress: bool = True) -> Report:
    """Dispatch on the input: a folder, an image or a video. ``dst`` is a file path (its suffix picks the
    format) or a folder. Returns what was written, kept and failed."""
    opts = opts or OutputOptions()
    check_paths(src, dst, opts)
    if src.is_dir():
        return upscale_folder(up, src, dst, opts, batch_size, progress)
    is_video = src.suffix.lower() in VIDEO_EXTENSIONS
    target = single_target(src, dst, opts)
    if target.parent.is_dir():
        remove_stale_partials(target.parent, stem=target.stem)
    report = Report()
    if is_video:
        upscale_video(up, src, target, batch_size, opts, progress=progress)
    else:
        upscale_image(up, src, target, opts)
    report.written.append(target)
    return report
