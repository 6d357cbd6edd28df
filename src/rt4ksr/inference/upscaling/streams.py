"""A video's streams in the output container: the encoder and bit depth of the upscaled video, and every other
stream (audio, subtitles, attachments, chapters) copied, re-encoded or named as dropped, as ``ffmpeg -map 0``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from rt4ksr.core import threads
from rt4ksr.core.errors import UnsupportedInputError
from rt4ksr.inference.upscaling.options import DEFAULT_CODECS, VIDEO_CODECS, OutputOptions

log = logging.getLogger(__name__)


# for input of more than 8 bits, the encoders that keep 10, best first: HEVC Main 10 (which most hardware plays),
# then H.264 High 10; VP9 profile 2 in WebM where libvpx is built for it; none in AVI (MPEG-4 Part 2 is 8-bit)
DEEP_CODECS = {".webm": ("libvpx-vp9",), ".avi": ()}


DEFAULT_DEEP_CODECS = ("libx265", "libx264")


DEEP_PIX_FMT = "yuv420p10le"


MORE_CODECS = {"mpegts": {"h264", "hevc", "aac", "ac3", "eac3", "mp3", "mp2", "opus", "dvb_subtitle",
                           "dvb_teletext"}}


AUDIO_ENCODERS = {"opus": ("libopus", "opus"), "vorbis": ("libvorbis", "vorbis"), "mp3": ("libmp3lame", "mp3")}


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
class StreamMap:
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


def map_streams(av: Any, inp: Any, vin: Any, out: Any, src: Path, dst: Path, size: tuple[int, int],
                 opts: OutputOptions) -> StreamMap:
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
    vout.thread_count = threads.threads()  # the thread policy's count (FFmpeg's default: 1.5x the cores)
    vout.thread_type = "AUTO"  # frame threads, FFmpeg's default (PyAV's is slice threads: x264 then trades
    # throughput for latency and scales worse with cores, while a video file wants throughput)
    if codec == "libx265" and out.format.name in ("mp4", "mov", "ipod"):
        vout.codec_context.codec_tag = "hvc1"  # the tag Apple's players need for HEVC
    _keep_tags(vin, vout)
    streams = StreamMap(vin, vout, "rgb48le" if pix_fmt == DEEP_PIX_FMT else "rgb24")
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
