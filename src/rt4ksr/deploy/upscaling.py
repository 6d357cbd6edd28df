"""Upscaling files: an image, a folder (recursive, resumable) or a video (threaded decode, model, encode).

Nothing is dropped silently: 16-bit images stay 16-bit, grayscale stays single-channel and neutral, alpha
is kept (upscaled by the model, as Real-ESRGAN does, or by bicubic interpolation), EXIF orientation is
honoured. A 10-bit video stays 10-bit where the output's encoder can write it; its audio tracks are copied, or
re-encoded in their own channel layout when the output container cannot hold their codec; its subtitle tracks,
attachments and chapters are copied where the container holds them, and what it cannot hold is named. A video
that ends before its container says is refused. Every output is written atomically, so an interrupted run
never leaves a truncated file under its name.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

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
# for input of more than 8 bits, the encoders that keep 10, best first: HEVC Main 10 (which most hardware plays),
# then H.264 High 10; VP9 profile 2 in WebM where libvpx is built for it; none in AVI (MPEG-4 Part 2 is 8-bit)
DEEP_CODECS = {".webm": ("libvpx-vp9",), ".avi": ()}
DEFAULT_DEEP_CODECS = ("libx265", "libx264")
DEEP_PIX_FMT = "yuv420p10le"
# the crf each encoder takes: x264/x265 0-51, VP9 0-63; mpeg4 has no crf and gets the quantiser crf/6 (1-31)
CRF_MAX = {"libx264": 51, "libx265": 51, "libvpx-vp9": 63, "mpeg4": 63}
MORE_CODECS = {"mpegts": {"h264", "hevc", "aac", "ac3", "eac3", "mp3", "mp2", "opus", "dvb_subtitle",
                           "dvb_teletext"}}
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
    bar = tqdm(todo, desc="upscale", unit="file", disable=not progress)
    with logging_redirect_tqdm(), bar:  # the files' own log lines print above the bar, not inside it
        for p, o, is_video in bar:
            try:
                if is_video:
                    upscale_video(up, p, o, batch_size, opts, progress=False)
                else:
                    upscale_image(up, p, o, opts)
                report.written.append(o)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                report.failed.append(f"{p}: out of GPU memory: tile=512 (or smaller) upscales it in tiles")
            except (UserError, OSError, ValueError) as e:  # this file's problem: list it, go on with the rest
                report.failed.append(failure(p, e))
            if report.failed:  # each failure is listed once, after the bar, when the run ends
                bar.set_postfix(failed=len(report.failed), refresh=False)
    return report


def failure(path: Path, e: BaseException) -> str:
    """One line for a file that failed: its path, then the reason, the path not said twice when the reason
    names it already."""
    reason = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return reason if str(path) in reason else f"{path}: {reason}"


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


class DamagedVideoError(UserError, ValueError):
    """A video that ends before its container says it does (a cut download or copy), or that FFmpeg cannot
    decode to its end: refused, so that a partial upscale never passes as a complete one."""


def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: an odd output (x3 of an odd input) gets its last row/column repeated."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def _bit_depth(vin: Any) -> int:
    """Bits per sample of the video stream's pixel format (8 when FFmpeg does not say)."""
    fmt = vin.codec_context.format
    return max((c.bits for c in fmt.components), default=8) if fmt is not None else 8


def _supported(out: Any) -> set[str]:
    """The codecs the output container takes: FFmpeg's list, and, for MPEG-TS, whose muxer has no list of its own
    (FFmpeg then names only the defaults, MPEG-2 video and MP2 audio), the codecs its muxer maps to TS streams."""
    return set(out.supported_codecs) | MORE_CODECS.get(out.format.name, set())


def _muxable(out: Any, codec: str) -> bool:
    """Whether the output container takes ``codec`` (an encoder name or a codec name)."""
    import av

    supported = _supported(out)
    if not supported or codec in supported:
        return True
    for mode in ("w", "r"):
        try:
            return av.codec.Codec(codec, mode).canonical_name in supported
        except (av.error.FFmpegError, ValueError):  # no encoder (or decoder) of that name
            continue
    return False


def _video_encoder(av: Any, out: Any, suffix: str, bits: int) -> tuple[str, str, str | None]:
    """(encoder, pixel format, note): the container's encoder, 10-bit where the input has more than 8 bits and
    an encoder of this FFmpeg build keeps them, else 8-bit with a note that says so."""
    suffix = suffix.lower()
    if bits > 8:
        for enc in DEEP_CODECS.get(suffix, DEFAULT_DEEP_CODECS):
            if (enc in av.codecs_available and DEEP_PIX_FMT in _pixel_formats(av, enc)
                    and _muxable(out, enc)):
                note = f"{bits}-bit video written 10-bit" if bits > 10 else None
                return enc, DEEP_PIX_FMT, note
    codec = next((c for c in VIDEO_CODECS.get(suffix, DEFAULT_CODECS) if c in av.codecs_available), None)
    if codec is None:
        raise UnsupportedInputError(f"no video encoder for {suffix} in this FFmpeg build")
    note = None
    if bits > 8:
        deep = next((e for e in DEFAULT_DEEP_CODECS
                     if e in av.codecs_available and DEEP_PIX_FMT in _pixel_formats(av, e)), None)
        hint = f"; an .mkv or .mp4 output keeps 10 bits ({deep})" if deep else ""
        note = f"{bits}-bit video written 8-bit: {codec} in this FFmpeg build writes 8 bits only{hint}"
    return codec, "yuv420p", note


def _pixel_formats(av: Any, encoder: str) -> list[str]:
    formats = av.codec.Codec(encoder, "w").video_formats or []
    return [f.name for f in formats]


def _audio_plan(av: Any, out: Any, ain: Any) -> tuple[str, str | None]:
    """('copy', None) when the container takes the source's audio codec; else ('encode', encoder)."""
    supported = _supported(out)
    name = ain.codec_context.name
    if not supported or name in supported:
        return "copy", None
    target = out.default_audio_codec
    for enc in AUDIO_ENCODERS.get(target, (target,)):
        if enc in av.codecs_available:
            return "encode", enc
    raise UnsupportedInputError(f"the {out.format.name} container cannot hold {name} audio and this FFmpeg build "
                                f"has no {target} encoder: choose another output container (.mkv takes any)")


def _audio_rate(av: Any, encoder: str, rate: int | None) -> int:
    """The source's sample rate when the encoder takes it, else 48 kHz (Opus takes no 44.1 kHz); the encoder
    resamples the frames it is given to its stream's rate."""
    rates = av.codec.Codec(encoder, "w").audio_rates
    if not rates or (rate and rate in rates):
        return rate or 48000
    return 48000 if 48000 in rates else max(rates)


def video_options(codec: str, crf: int) -> dict[str, str]:
    """The encoder options that give quality ``crf`` (lower is better): crf for x264/x265, crf with no bitrate
    cap for VP9 (its constant-quality mode), a fixed quantiser for mpeg4, which has no crf. x265 prints its
    settings on stderr unless told not to."""
    if codec == "libx264":
        return {"crf": str(crf), "preset": "medium"}
    if codec == "libx265":
        return {"crf": str(crf), "preset": "medium", "x265-params": "log-level=error"}
    if codec == "libvpx-vp9":
        return {"crf": str(crf), "b:v": "0"}
    if codec == "mpeg4":
        q = str(min(31, max(1, round(crf / 6))))
        return {"qmin": q, "qmax": q}
    return {}


AVDISCARD_ALL = 48  # FFmpeg's mark on a stream its demuxer reads into something else (MP4's chapter track)
# stream tags that describe the stream rather than the file's statistics (which the muxer writes anew)
_KEPT_TAGS = ("language", "title", "handler_name")


def _keep_tags(src: Any, dst: Any) -> None:
    """A copied or re-encoded stream keeps its language, title and flags (default, forced), which players use
    to pick a track."""
    for key in _KEPT_TAGS:
        if src.metadata.get(key):
            dst.metadata[key] = src.metadata[key]
    try:
        dst.disposition = src.disposition
    except (AttributeError, TypeError, ValueError):  # pragma: no cover - a PyAV without dispositions
        pass


def _label(stream: Any, kind: str) -> str:
    """``subtitle track 3 (mov_text, deu)``: a stream as the messages name it."""
    name = stream.codec_context.name if stream.codec_context is not None else stream.type
    lang = stream.metadata.get("language")
    return f"{kind} track {stream.index} ({name}{', ' + lang if lang and lang != 'und' else ''})"


@dataclass
class _Streams:
    """Where each kept input stream goes: the video is upscaled; the other streams are copied (packets
    remuxed) or, for audio the container cannot hold, re-encoded. ``dropped``, ``videos`` and ``data`` name
    the rest."""

    vin: Any
    vout: Any
    decode_format: str  # rgb24, or rgb48le for a 10-bit output
    copied: dict[int, Any] = field(default_factory=dict)  # input stream index -> output stream
    encoded: dict[int, Any] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # what the output container cannot hold
    videos: list[str] = field(default_factory=list)  # other video streams (a cover picture)
    data: list[str] = field(default_factory=list)  # data tracks (timecodes, sensor data)

    def inputs(self, inp: Any) -> list[Any]:
        keep = {self.vin.index, *self.copied, *self.encoded}
        return [s for s in inp.streams if s.index in keep]


def _map_streams(av: Any, inp: Any, vin: Any, out: Any, src: Path, dst: Path, size: tuple[int, int],
                 opts: OutputOptions) -> _Streams:
    """Every stream of the input, as FFmpeg's ``-map 0`` keeps them: the first video upscaled, every audio and
    subtitle track and every attachment copied where the output container takes it (audio re-encoded to the
    container's codec otherwise), chapters and file tags kept. What cannot go in is said in one line."""
    rate = vin.average_rate or vin.guessed_rate or Fraction(25)
    bits = _bit_depth(vin)
    codec, pix_fmt, note = _video_encoder(av, out, dst.suffix, bits)
    if note:
        log.warning("%s: %s", src.name, note)
    vout = out.add_stream(codec, rate=rate)
    h, w = size
    vout.width, vout.height = w + w % 2, h + h % 2
    vout.pix_fmt = pix_fmt
    vout.options = video_options(codec, opts.crf)
    if codec == "libx265" and out.format.name in ("mp4", "mov", "ipod"):
        vout.codec_context.codec_tag = "hvc1"  # the tag Apple's players need for HEVC
    _keep_tags(vin, vout)
    streams = _Streams(vin, vout, "rgb48le" if pix_fmt == DEEP_PIX_FMT else "rgb24")
    audios = list(inp.streams.audio)
    for ain in audios:
        label = "audio" if len(audios) == 1 else f"audio track {ain.index}"
        plan, encoder = _audio_plan(av, out, ain)
        name, source_rate = ain.codec_context.name, ain.codec_context.sample_rate
        if plan == "copy":
            streams.copied[ain.index] = aout = out.add_stream_from_template(ain)
            log.info("%s: %s: %s copied", src.name, label, name)
        else:
            arate = _audio_rate(av, encoder, source_rate)
            # the source's channel layout: a mono track stays mono, at its level (an encoder's default stereo
            # would spread it over two channels at -3 dB)
            aout = out.add_stream(encoder, rate=arate, layout=ain.codec_context.layout)
            streams.encoded[ain.index] = aout
            resampled = f", resampled from {source_rate} to {arate} Hz" if arate != (source_rate or arate) else ""
            log.info("%s: %s: %s cannot go into %s; re-encoded with %s (%s)%s", src.name, label, name, dst.suffix,
                     encoder, ain.codec_context.layout.name, resampled)
        _keep_tags(ain, aout)
    for sin in inp.streams.subtitles:
        if sin.codec_context is not None and _muxable(out, sin.codec_context.name):
            streams.copied[sin.index] = sout = out.add_stream_from_template(sin)
            _keep_tags(sin, sout)
        else:
            streams.dropped.append(_label(sin, "subtitle"))
    for s in inp.streams:
        if s.type == "attachment":
            if out.format.name == "matroska":  # fonts of ASS subtitles, cover art: only Matroska holds files
                out.add_attachment(s.name, s.mimetype, bytes(s.data))
            else:
                streams.dropped.append(f"attachment {s.name}")
        elif s.type == "data" and int(s.discard) < AVDISCARD_ALL:  # not the MP4 chapter track: chapters below
            streams.data.append(_label(s, "data"))
        elif s.type == "video" and s is not vin:
            streams.videos.append(_label(s, "video"))
    chapters = inp.chapters()
    if chapters:
        try:
            out.set_chapters(chapters)
        except (av.error.FFmpegError, ValueError, TypeError):  # pragma: no cover - a container without chapters
            streams.dropped.append(f"{len(chapters)} chapter(s)")
    for key, value in inp.metadata.items():
        if key.lower() not in ("encoder", "major_brand", "minor_version", "compatible_brands"):
            out.metadata[key] = value
    said = []
    if streams.dropped:
        said.append(f"{', '.join(streams.dropped)}: {dst.suffix} output cannot hold them (an output in the input's "
                    f"container, {src.suffix}, keeps them)")
    if streams.videos:
        said.append(f"{', '.join(streams.videos)}: one video stream is upscaled")
    if streams.data:
        said.append(f"{', '.join(streams.data)}: data tracks are not copied")
    if said:
        log.warning("%s: dropped %s", src.name, "; ".join(said))
    return streams


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
        raise UnsupportedInputError(f"cannot open video {src}: {_ffmpeg_reason(e)}") from e
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
        raise UnsupportedInputError(f"{src}: {_ffmpeg_reason(e)}") from e
    finally:
        inp.close()
    return frames


def main_video(av: Any, inp: Any) -> Any:
    """The video stream to upscale: the first that is not a cover picture (which MP4 and MKV store as a
    one-frame video stream, sometimes before the video)."""
    cover = getattr(getattr(av.stream, "Disposition", None), "attached_pic", 0)
    return next((s for s in inp.streams.video if not (cover and s.disposition & cover)), inp.streams.video[0])


def _ffmpeg_reason(e: Exception) -> str:
    """FFmpeg's reason without the errno and the file name PyAV appends (the message names the file)."""
    return getattr(e, "strerror", None) or str(e)


def _transcode(av: Any, up: Upscaler, inp: Any, vin: Any, src: Path, tmp: Path, dst: Path, batch_size: int,
               opts: OutputOptions, progress: bool) -> int:
    out = av.open(str(tmp), "w")
    try:
        size = output_size((vin.height, vin.width), up.scale, opts.outscale)
        streams = _map_streams(av, inp, vin, out, src, dst, size, opts)
        decoded = _Decoded()
        frames = _pipeline(up, inp, streams, out, size, batch_size, progress, src, dst.name, decoded)
        _check_complete(src, inp, vin, decoded)
    finally:
        out.close()
    return frames


def _pipeline(up: Upscaler, inp: Any, streams: _Streams, out: Any, size: tuple[int, int], batch_size: int,
              progress: bool, src: Path, name: str, decoded: _Decoded) -> int:
    import av

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
                                            f"frames ({decoded.end:.2f} s): {_ffmpeg_reason(e)}"))
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
