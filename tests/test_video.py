"""Video fidelity in rt4ksr upscale: cut files refused, 10 bits kept, audio layout and level kept, every track
kept (or named when the container cannot hold it), a progress total for Matroska/WebM, one clean line per
failed file. The test videos are made here with PyAV: 64x48, 10 to 30 frames."""

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import randomize_
from rt4ksr.inference.upscaler import Upscaler
from rt4ksr.inference.upscaling import DamagedVideoError, OutputOptions, upscale_path
from rt4ksr.inference.upscaling.streams import DEEP_PIX_FMT
from rt4ksr.inference.upscaling.video import expected_frames
from rt4ksr.models import RTSRN, reparameterize

av = pytest.importorskip("av")
ROOT = Path(__file__).resolve().parents[1]
W, H, RATE = 64, 48, 10


def tiny_model():
    return reparameterize(randomize_(RTSRN(scale=2, feature_channels=8, num_blocks=1), seed=2))


@pytest.fixture(scope="module")
def up():
    return Upscaler(tiny_model(), torch.device("cpu"))


def sine(channels: int, seconds: float, rate: int = 48000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.tile((amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], (channels, 1))


def make(path: Path, frames: int = 30, codec: str = "libx264", pix_fmt: str = "yuv420p",
         audio: list[tuple[str, str]] = (("aac", "stereo"),), subtitle: str | None = None, options=None,
         attachment: bool = False, chapters: bool = False) -> Path:
    """A test video: ``frames`` frames of noise (or a 10-bit gradient), audio tracks (codec, layout) of 440 Hz
    at -13.5 dBFS RMS, languages eng, fra, ...; a subtitle track (language deu) saying Hello at 0.1 s; an
    attachment; two chapters."""
    with av.open(str(path), "w", options=options or {}) as c:
        v = c.add_stream(codec, rate=RATE, options={"x265-params": "log-level=error"} if codec == "libx265" else {})
        v.width, v.height, v.pix_fmt = W, H, pix_fmt
        tracks = []
        for (name, layout), lang in zip(audio, ("eng", "fra", "spa"), strict=False):
            a = c.add_stream(name, rate=48000, layout=layout)
            a.metadata["language"] = lang
            tracks.append((a, layout))
        s = None
        if subtitle:
            s = c.add_mux_stream(subtitle)
            s.metadata["language"] = "deu"
            s.time_base = Fraction(1, 1000)
        if attachment:
            c.add_attachment("font.ttf", "font/ttf", b"\0font")
        rng = np.random.default_rng(0)
        for i in range(frames):
            if pix_fmt == DEEP_PIX_FMT:  # a smooth gradient: 8 bits would band it
                g = np.linspace(0, 65535, W * H).reshape(H, W).astype(np.uint16)
                f = av.VideoFrame.from_ndarray(np.stack([g, np.roll(g, i, 1), g], -1), format="rgb48le")
            else:
                f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), format="rgb24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        for a, layout in tracks:
            samples = sine(1 if layout == "mono" else 2, frames / RATE)
            for start in range(0, samples.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(samples[:, start:start + 1024].copy(), format="fltp", layout=layout)
                af.sample_rate, af.pts = 48000, start
                c.mux(a.encode(af))
            c.mux(a.encode(None))
        if chapters:
            c.set_chapters([{"id": i + 1, "start": i * 5, "end": (i + 1) * 5, "time_base": Fraction(1, RATE),
                             "metadata": {"title": title}} for i, title in enumerate(("one", "two"))])
        if s is not None:
            text = b"Hello"
            payload = len(text).to_bytes(2, "big") + text if subtitle == "mov_text" else text
            p = av.Packet(payload)
            p.stream, p.time_base, p.pts, p.dts, p.duration = s, Fraction(1, 1000), 100, 100, 500
            c.mux(p)
    return path


def cut_in_half(path: Path, dst: Path) -> Path:
    data = path.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial" in p.name]


# --- truncated files ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,options", [("clip.mp4", {"movflags": "faststart"}), ("clip.mkv", None)])
def test_a_cut_video_is_refused_and_nothing_is_written(tmp_path, up, name, options):
    whole = make(tmp_path / name, options=options)
    cut = cut_in_half(whole, tmp_path / f"cut_{name}")
    with av.open(str(cut)) as c:  # the container still says 30 frames / 3 s: FFmpeg opens it without a word
        assert expected_frames(c, c.streams.video[0]) == 30
    with pytest.raises(DamagedVideoError, match=r"is truncated: its video stops at 1\.\d+ s of the 3\.00 s"):
        upscale_path(up, cut, tmp_path / "out" / name, progress=False)
    assert not (tmp_path / "out" / name).exists() and not leftovers(tmp_path)
    report = upscale_path(up, whole, tmp_path / "out" / name, progress=False)  # the whole file is complete
    with av.open(str(report.written[0])) as c:
        assert sum(1 for _ in c.decode(video=0)) == 30
    # in a folder run, the cut file fails (listed) and the rest is written
    folder = tmp_path / "folder"
    folder.mkdir()
    os.replace(cut, folder / cut.name)
    (folder / name).write_bytes(whole.read_bytes())
    report = upscale_path(up, folder, tmp_path / "folder_out", progress=False)
    assert [p.name for p in report.written] == [name]
    assert len(report.failed) == 1 and "is truncated" in report.failed[0]
    assert report.failed[0].count(str(folder / cut.name)) == 1
    assert not (tmp_path / "folder_out" / cut.name).exists() and not leftovers(tmp_path)


def test_a_decoding_error_midway_is_refused_as_damaged(tmp_path, up, monkeypatch):
    """FFmpeg raising while demuxing (here made to, after 12 packets) fails the video in one line that says
    where, and leaves no output."""
    src = make(tmp_path / "clip.mkv")
    real_open = av.open

    class Failing:
        def __init__(self, container):
            self._c = container

        def __getattr__(self, name):
            return getattr(self._c, name)

        def demux(self, *streams):
            for i, packet in enumerate(self._c.demux(*streams)):
                if i == 12:
                    raise av.error.InvalidDataError(-1094995529, "Invalid data found when processing input")
                yield packet

    monkeypatch.setattr(av, "open", lambda path, *a, **k: Failing(real_open(path, *a, **k)) if not a else
                        real_open(path, *a, **k))
    with pytest.raises(DamagedVideoError, match=r"clip\.mkv is damaged or truncated: decoding failed after \d+ "
                                                r"frames \(\d\.\d\d s\): Invalid data found when processing input$"):
        upscale_path(up, src, tmp_path / "out.mkv", progress=False)
    assert not (tmp_path / "out.mkv").exists() and not leftovers(tmp_path)


def test_a_folder_run_lists_each_failure_once_on_a_clean_line(tmp_path):
    """The command: exit 3, one 'failed:' line per file that starts its own line (the bar cleared first) and
    names the path once, then the error line."""
    model = tiny_model()
    torch.save({"state_dict": model.state_dict(), "config": model.config}, tmp_path / "w.pth")
    src = tmp_path / "in"
    src.mkdir()
    whole = make(src / "whole.mkv", frames=10)
    cut_in_half(make(tmp_path / "clip.mkv"), src / "cut.mkv")
    (src / "broken.png").write_bytes(b"not an image")
    (src / "fake.mp4").write_bytes(b"not a video")
    proc = subprocess.run([sys.executable, "-m", "rt4ksr.upscale", f"ckpt_path={tmp_path / 'w.pth'}",
                           f"input={src}", f"output={tmp_path / 'out'}", "progress=true"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.split("\n")
    failed = [line for line in lines if "failed:" in line and not line.startswith("error:")]
    assert len(failed) == 3, proc.stderr
    for name in ("broken.png", "cut.mkv", "fake.mp4"):
        line = next(line for line in failed if name in line)
        assert line.startswith("failed: ") and line.count(str(src / name)) == 1, line
    assert "is truncated" in next(line for line in failed if "cut.mkv" in line)
    assert lines.count("error: 3 file(s) failed (listed above); the others were written") == 1
    assert (tmp_path / "out" / whole.name).is_file() and not leftovers(tmp_path)


# --- 10 bits -----------------------------------------------------------------------------------------------------


def low_bits_used(path: Path) -> tuple[str, int]:
    """The output's pixel format, and how many of the 4 values of the two lowest bits of a 10-bit luma occur."""
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        if frame.format.name != DEEP_PIX_FMT:
            return frame.format.name, 0
        y = np.frombuffer(bytes(frame.planes[0]), np.uint16)
        return frame.format.name, np.unique(y & 3).size


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_10_bit_video_stays_10_bit(tmp_path, up, suffix, caplog):
    src = make(tmp_path / "deep.mkv", frames=10, codec="libx265", pix_fmt=DEEP_PIX_FMT, audio=())
    out = tmp_path / f"out{suffix}"
    with caplog.at_level("WARNING"):
        upscale_path(up, src, out, progress=False)
    assert "8-bit" not in caplog.text
    fmt, used = low_bits_used(out)
    assert fmt == DEEP_PIX_FMT and used == 4  # the two bits 8-bit video lacks carry information
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "hevc" and v.profile == "Main 10" and sum(1 for _ in c.decode(v)) == 10
        if suffix == ".mp4":
            assert v.codec_context.codec_tag == "hvc1"


@pytest.mark.parametrize("suffix", [".webm", ".avi"])
def test_10_bit_video_in_a_container_without_a_10_bit_encoder_is_said(tmp_path, up, suffix, caplog):
    """VP9 profile 2 when this FFmpeg's libvpx is built for it; otherwise, and always in AVI (MPEG-4 Part 2),
    8-bit with one warning line that says so and which output keeps 10 bits."""
    src = make(tmp_path / "deep.mkv", frames=10, codec="libx265", pix_fmt=DEEP_PIX_FMT, audio=())
    out = tmp_path / f"out{suffix}"
    with caplog.at_level("WARNING"):
        upscale_path(up, src, out, progress=False)
    fmt, _ = low_bits_used(out)
    vp9_deep = DEEP_PIX_FMT in [f.name for f in av.codec.Codec("libvpx-vp9", "w").video_formats or []]
    if suffix == ".webm" and vp9_deep:
        assert fmt == DEEP_PIX_FMT and "8-bit" not in caplog.text
    else:
        warned = [r.getMessage() for r in caplog.records if "written 8-bit" in r.getMessage()]
        assert fmt == "yuv420p" and len(warned) == 1 and "\n" not in warned[0]
        assert warned[0].startswith("deep.mkv: 10-bit video written 8-bit") and "keeps 10 bits" in warned[0]


# --- audio -------------------------------------------------------------------------------------------------------


def rms_db(path: Path, track: int = 0) -> tuple[str, int, float]:
    """(layout, channels, RMS in dBFS) of an audio track, its first and last tenth left out (encoder delay)."""
    with av.open(str(path)) as c:
        a = c.streams.audio[track]
        x = np.concatenate([f.to_ndarray() for f in c.decode(a)], axis=1).astype(np.float64)
        n = x.shape[1]
        x = x[:, n // 10: n - n // 10]
        return a.codec_context.layout.name, a.codec_context.channels, 20 * np.log10(np.sqrt((x ** 2).mean()))


def test_mono_audio_reencoded_to_opus_stays_mono_at_its_level(tmp_path, up, caplog):
    src = make(tmp_path / "mono.mp4", frames=20, audio=[("aac", "mono")])
    with caplog.at_level("INFO"):
        upscale_path(up, src, tmp_path / "out.webm", progress=False)
    assert "re-encoded with libopus (mono)" in caplog.text
    layout_in, channels_in, level_in = rms_db(src)
    layout_out, channels_out, level_out = rms_db(tmp_path / "out.webm")
    assert (layout_in, channels_in) == (layout_out, channels_out) == ("mono", 1)
    assert abs(level_out - level_in) < 0.5, (level_in, level_out)  # -3 dB when spread over two channels


# --- every track -------------------------------------------------------------------------------------------------


def samples(path: Path, track: int) -> int:
    with av.open(str(path)) as c:
        return sum(f.samples for f in c.decode(audio=track))


def streams(path: Path) -> list[tuple]:
    with av.open(str(path)) as c:
        out = [("chapters", [(ch["start"] * ch["time_base"], ch["metadata"]["title"]) for ch in c.chapters()])]
        for s in c.streams:
            if s.type == "attachment":
                out.append(("attachment", s.name))
            elif s.type == "audio":
                out.append(("audio", s.codec_context.name, s.codec_context.layout.name, s.metadata.get("language")))
            elif s.type == "subtitle":
                texts = [bytes(p) for p in c.demux(s) if p.size and b"Hello" in bytes(p)]
                out.append(("subtitle", s.codec_context.name, s.metadata.get("language"), len(texts)))
            else:  # the video; MP4 keeps chapters in a data track
                out.append((s.type, s.codec_context.name if s.codec_context is not None else None))
        return out


@pytest.mark.parametrize("name,subtitle", [("multi.mkv", "subrip"), ("multi.mp4", "mov_text")])
def test_every_audio_and_subtitle_track_is_kept(tmp_path, up, name, subtitle, caplog):
    src = make(tmp_path / name, frames=10, audio=[("aac", "stereo"), ("aac", "mono")], subtitle=subtitle,
               attachment=name.endswith(".mkv"), chapters=True)
    with caplog.at_level("WARNING"):
        upscale_path(up, src, tmp_path / "out" / name, progress=False)
    assert "dropped" not in caplog.text
    kept, given = streams(tmp_path / "out" / name), streams(src)
    assert kept[0] == ("chapters", [(0, "one"), (Fraction(1, 2), "two")]) and kept[1] == ("video", "h264")
    assert kept == given  # both audio tracks (layouts, languages), the subtitle and its text, attachment, chapters
    for track in (0, 1):  # each audio track whole
        assert samples(tmp_path / "out" / name, track) >= samples(src, track) > 0
    assert [s[0] for s in kept].count("audio") == 2 and ("subtitle" in [s[0] for s in kept])


def test_tracks_a_container_cannot_hold_are_named_in_one_line(tmp_path, up, caplog):
    src = make(tmp_path / "multi.mkv", frames=10, audio=[("aac", "stereo"), ("aac", "mono")], subtitle="subrip",
               attachment=True, chapters=True)
    with caplog.at_level("WARNING"):
        upscale_path(up, src, tmp_path / "out.mp4", progress=False)
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped == ["multi.mkv: dropped subtitle track 3 (srt, deu), attachment font.ttf: .mp4 output cannot "
                       "hold them (an output in the input's container, .mkv, keeps them)"]
    kept = streams(tmp_path / "out.mp4")
    assert [s[:3] for s in kept if s[0] == "audio"] == [("audio", "aac", "stereo"), ("audio", "aac", "mono")]
    assert [s[0] for s in kept] == ["chapters", "video", "audio", "audio", "data"]  # data: MP4's chapter track
    assert kept[0] == ("chapters", [(0, "one"), (Fraction(1, 2), "two")])


# --- progress ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mkv", ".webm"])
def test_matroska_and_webm_progress_has_a_total(tmp_path, up, suffix, capfd):
    """Matroska and WebM give no frame count: the total is duration x frame rate, so the bar has an ETA."""
    codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
    audio = [("libopus", "stereo")] if suffix == ".webm" else [("aac", "stereo")]
    src = make(tmp_path / f"in{suffix}", frames=20, codec=codec, audio=audio)
    with av.open(str(src)) as c:
        assert c.streams.video[0].frames == 0 and expected_frames(c, c.streams.video[0]) == 20
    upscale_path(up, src, tmp_path / f"out{suffix}", OutputOptions(), progress=True)
    err = capfd.readouterr().err
    assert "| 0/20 [" in err and "100%" in err and "| 20/20 [" in err  # a total, hence a percentage and an ETA
