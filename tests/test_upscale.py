"""rt4ksr.upscale: images, folders, videos, tiling, and bad input."""

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers import randomize_
from rt4ksr.core.errors import ConfigValueError, UnsupportedInputError
from rt4ksr.data import read_image
from rt4ksr.inference.loading import load_file
from rt4ksr.inference.upscaler import Upscaler
from rt4ksr.inference.upscaling import OutputOptions, upscale_path
from rt4ksr.models import RTSRN, reparameterize

ROOT = Path(__file__).resolve().parents[1]


def tiny_model(scale=2):
    return reparameterize(randomize_(RTSRN(scale=scale, feature_channels=8, num_blocks=2), seed=scale))


@pytest.fixture
def up2():
    return Upscaler(tiny_model(2), torch.device("cpu"))


def write(path, h, w, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("scale", [2, 3])
def test_tiled_output_equals_untiled(scale):
    model = tiny_model(scale)
    img = np.random.default_rng(1).integers(0, 256, (75, 101, 3), dtype=np.uint8)
    whole = Upscaler(model, torch.device("cpu"))(img)
    tiled = Upscaler(model, torch.device("cpu"), tile=24, tile_pad=12)(img)
    assert tiled.shape == whole.shape == (75 * scale, 101 * scale, 3)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1  # within 1/255


def test_image_and_folder_resume(tmp_path, up2):
    write(tmp_path / "in" / "a.png", 20, 31)
    write(tmp_path / "in" / "sub" / "b.jpg", 17, 16, seed=1)
    (tmp_path / "in" / "notes.txt").write_text("hello")
    (tmp_path / "in" / "sub" / "broken.png").write_bytes(b"nope")
    report = upscale_path(up2, tmp_path / "in", tmp_path / "out", progress=False)
    assert len(report.failed) == 1 and "broken.png" in report.failed[0]  # reported; the others are done
    assert len(report.written) == 2
    assert read_image(tmp_path / "out" / "a.png").shape == (40, 62, 3)
    assert read_image(tmp_path / "out" / "sub" / "b.png").shape == (34, 32, 3)
    stamp = (tmp_path / "out" / "a.png").stat().st_mtime_ns
    upscale_path(up2, tmp_path / "in", tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "a.png").stat().st_mtime_ns == stamp  # resumed: kept
    upscale_path(up2, tmp_path / "in", tmp_path / "out", OutputOptions(overwrite=True), progress=False)
    assert (tmp_path / "out" / "a.png").stat().st_mtime_ns != stamp
    upscale_path(up2, tmp_path / "in" / "a.png", tmp_path / "single.png", progress=False)
    assert read_image(tmp_path / "single.png").shape == (40, 62, 3)


def test_unsupported_format_is_named(tmp_path, up2):
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(UnsupportedInputError, match="'.xyz'"):
        upscale_path(up2, tmp_path / "x.xyz", tmp_path / "o", progress=False)
    (tmp_path / "fake.mp4").write_bytes(b"not a video")
    with pytest.raises(UnsupportedInputError, match="fake.mp4"):
        upscale_path(up2, tmp_path / "fake.mp4", tmp_path / "o.mp4", progress=False)
    with pytest.raises(FileNotFoundError):
        upscale_path(up2, tmp_path / "missing.png", tmp_path / "o", progress=False)


def make_video(path, frames=7, size=(33, 47), rate=12, audio=True, audio_rate=16000):
    import av

    h, w = size
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        a = c.add_stream("aac", rate=audio_rate) if audio else None
        rng = np.random.default_rng(0)
        for i in range(frames):
            img = rng.integers(0, 256, (v.height, v.width, 3), dtype=np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        if a is not None:
            t = np.arange(audio_rate * frames // rate) / audio_rate
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, samples.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(samples[:, start:start + 1024].copy(), format="fltp", layout="mono")
                af.sample_rate, af.pts = audio_rate, start
                c.mux(a.encode(af))
            c.mux(a.encode(None))


@pytest.mark.parametrize("scale,audio", [(2, True), (3, False)])
def test_video_keeps_rate_frames_and_audio(tmp_path, scale, audio, caplog):
    import av

    make_video(tmp_path / "in.mp4", size=(33, 47), audio=audio)
    up = Upscaler(tiny_model(scale), torch.device("cpu"))
    with caplog.at_level("INFO"):
        upscale_path(up, tmp_path / "in.mp4", tmp_path / "out.mp4", batch_size=3, progress=False)
    assert ("audio: aac copied" in caplog.text) == audio
    with av.open(str(tmp_path / "in.mp4")) as a, av.open(str(tmp_path / "out.mp4")) as b:
        vin, vout = a.streams.video[0], b.streams.video[0]
        assert vout.average_rate == vin.average_rate
        assert (vout.width, vout.height) == (-(-vin.width * scale // 2) * 2, -(-vin.height * scale // 2) * 2)
        assert len(b.streams.audio) == int(audio)
        assert sum(1 for _ in b.decode(video=0)) == sum(1 for _ in a.decode(video=0)) == 7


def test_upscale_command_with_a_run_checkpoint(tmp_path):
    """A run's deploy_best.pth (the bsd200 recipe's bicubic-skip network) needs no model config; the fused
    kernels (here on Triton's interpreter, layers fused in pairs) give the eager output."""
    model = randomize_(RTSRN(feature_channels=8, num_blocks=1, global_skip="bicubic"), seed=2)
    deploy = reparameterize(model)
    torch.save({"state_dict": deploy.state_dict(), "config": deploy.config}, tmp_path / "deploy_best.pth")
    write(tmp_path / "img.png", 21, 13)
    outs = []
    for name, extra in [("eager", []), ("kernels", ["kernels=true", "kernel_options.fuse=2"])]:
        proc = subprocess.run([sys.executable, "-m", "rt4ksr.upscale", f"ckpt_path={tmp_path / 'deploy_best.pth'}",
                               f"input={tmp_path / 'img.png'}", f"output={tmp_path / name}.png", "progress=false",
                               *extra], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outs.append(read_image(tmp_path / f"{name}.png").astype(int))
    assert outs[0].shape == (42, 26, 3)
    assert np.abs(outs[0] - outs[1]).max() <= 1


def test_upscaler_leaves_the_callers_model_alone():
    model = reparameterize(RTSRN(feature_channels=8, num_blocks=1))
    Upscaler(model, torch.device("cpu"), half=True)
    assert next(model.parameters()).dtype == torch.float32


def test_build_model_needs_a_config_for_bare_state_dicts(tmp_path):
    torch.save(reparameterize(RTSRN()).state_dict(), tmp_path / "bare.pth")
    with pytest.raises(ValueError, match="carries no model config"):
        load_file(tmp_path / "bare.pth")


# --- nothing lost: depth, gray, alpha, orientation ----------------------------------------------------------


def test_alpha_is_kept_and_upscaled(tmp_path, up2):
    """Alpha goes through the network as a gray plane (Real-ESRGAN's default) or through bicubic resizing; a
    uniform alpha stays uniform."""
    from rt4ksr.inference.upscaling.pictures import _single_channel

    rgba = np.random.default_rng(3).integers(0, 256, (18, 22, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(np.arange(22) < 11, 255, 0)[None]  # opaque left half, transparent right half
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    expected = {"model": _single_channel(up2, rgba[..., 3]),
                "bicubic": cv2.resize(rgba[..., 3], (44, 36), interpolation=cv2.INTER_CUBIC)}
    for mode in ("model", "bicubic"):
        upscale_path(up2, tmp_path / "a.png", tmp_path / f"{mode}.png", OutputOptions(alpha=mode), progress=False)
        out = cv2.imread(str(tmp_path / f"{mode}.png"), cv2.IMREAD_UNCHANGED)
        assert out.shape == (36, 44, 4) and out.dtype == np.uint8
        assert (out[..., 3] == expected[mode]).all()
        assert (out[..., 2::-1] == up2(rgba[..., 2::-1])).all()  # the colour as without alpha
    opaque = rgba.copy()
    opaque[..., 3] = 255
    cv2.imwrite(str(tmp_path / "o.png"), opaque)
    upscale_path(up2, tmp_path / "o.png", tmp_path / "o_out.png", progress=False)
    assert (cv2.imread(str(tmp_path / "o_out.png"), cv2.IMREAD_UNCHANGED)[..., 3] == 255).all()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_stays_16_bit(tmp_path, up2, suffix):
    deep = np.random.default_rng(4).integers(0, 65536, (12, 15, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / f"d{suffix}"), deep)
    upscale_path(up2, tmp_path / f"d{suffix}", tmp_path / f"o{suffix}", progress=False)
    out = cv2.imread(str(tmp_path / f"o{suffix}"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (24, 30, 3)
    as8 = up2(np.round(deep[..., ::-1] / 257.0).astype(np.uint8))  # the same image through the 8-bit path
    assert np.abs(out[..., ::-1] / 257.0 - as8).max() <= 2.0
    assert len(np.unique(out)) > 256  # more than 8 bits of levels


def test_gray_stays_single_channel_and_neutral(tmp_path, up2):
    gray = np.random.default_rng(5).integers(0, 256, (14, 19), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    upscale_path(up2, tmp_path / "g.png", tmp_path / "o.png", progress=False)
    out = cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (28, 38) and out.dtype == np.uint8
    rgb = up2.run(up2.to_tensor(np.repeat(gray[:, :, None], 3, axis=2)))  # what the network makes of it
    mean = (rgb.mean(dim=1)[0].clamp(0, 1) * 255).round().numpy()
    assert np.abs(out - mean).max() <= 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_honoured(tmp_path, orientation):
    from PIL import Image, ImageOps

    from rt4ksr.data.io import read_picture

    img = Image.fromarray(np.random.default_rng(orientation).integers(0, 256, (6, 9, 3), dtype=np.uint8))
    exif = img.getexif()
    exif[0x0112] = orientation
    # PNG, and TIFF (OpenCV applies orientations 2-4 itself and cannot read 5-8: such TIFFs go through Pillow)
    for name in ("e.png", "e.tif"):
        img.save(tmp_path / name, exif=exif.tobytes())
        with Image.open(tmp_path / name) as im:
            expected = np.asarray(ImageOps.exif_transpose(im))
        got = read_picture(tmp_path / name).color
        assert got.shape == expected.shape and (got == expected).all(), name
    img.save(tmp_path / "e.jpg", exif=exif.tobytes(), quality=100)  # cameras write JPEG: decoders may differ a little
    with Image.open(tmp_path / "e.jpg") as im:
        expected = np.asarray(ImageOps.exif_transpose(im)).astype(int)
    got = read_picture(tmp_path / "e.jpg").color.astype(int)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 8


def test_formats_that_cannot_hold_the_result_say_so(tmp_path, up2, caplog):
    rgba = np.random.default_rng(6).integers(0, 256, (10, 10, 4), dtype=np.uint8)
    rgba[:5, :, 3] = 0
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    cv2.imwrite(str(tmp_path / "d.png"), np.full((10, 10, 3), 40000, np.uint16))
    with caplog.at_level("WARNING"):
        upscale_path(up2, tmp_path / "a.png", tmp_path / "a.jpg", progress=False)
        upscale_path(up2, tmp_path / "d.png", tmp_path / "d.jpg", progress=False)
    assert "transparency is dropped" in caplog.text and "rounded to 8 bits" in caplog.text
    assert cv2.imread(str(tmp_path / "d.jpg"), cv2.IMREAD_UNCHANGED).dtype == np.uint8


# --- the conventions of Real-ESRGAN and chaiNNer users --------------------------------------------------------


def test_outscale_suffix_ext_and_tile_pad(tmp_path, up2):
    write(tmp_path / "in" / "a.png", 20, 30)
    write(tmp_path / "in" / "b.jpg", 11, 13, seed=2)
    opts = OutputOptions(outscale=3.5, suffix="_out", ext="auto")
    report = upscale_path(up2, tmp_path / "in", tmp_path / "out", opts, progress=False)
    assert sorted(p.name for p in report.written) == ["a_out.png", "b_out.jpg"]
    assert read_image(tmp_path / "out" / "a_out.png").shape == (70, 105, 3)
    assert read_image(tmp_path / "out" / "b_out.jpg").shape == (38, 46, 3)  # round(11 * 3.5), round(13 * 3.5)
    shrink = upscale_path(up2, tmp_path / "in" / "a.png", tmp_path / "half.png", OutputOptions(outscale=0.5),
                          progress=False)
    assert read_image(shrink.written[0]).shape == (10, 15, 3)
    with pytest.raises(ConfigValueError, match="overwrite"):  # same folder, same name, same format
        upscale_path(up2, tmp_path / "in" / "a.png", tmp_path / "in", progress=False)
    with pytest.raises(ConfigValueError, match="ext must be"):
        OutputOptions(ext="gif")


def test_realesrgan_flags_become_overrides():
    from rt4ksr.upscale import translate_flags

    argv = ["-i", "in dir/x.png", "-o", "out", "-s", "3.5", "-t", "256", "--tile_pad=10", "--fp32", "--suffix",
            "_out", "--ext", "jpg", "--model_path", "w.pth", "-g", "1", "--alpha_upsampler", "realesrgan",
            "compile=true", "--cfg", "job"]
    assert translate_flags(argv) == ["input='in dir/x.png'", "output=out", "outscale=3.5", "tile=256", "tile_pad=10",
                                     "half=false", "suffix=_out", "ext=jpg", "ckpt_path=w.pth", "device=cuda:1",
                                     "alpha=model", "compile=true", "--cfg", "job"]


def test_onnxruntime_backend_matches_torch(up2):
    pytest.importorskip("onnxruntime")
    img = np.random.default_rng(7).integers(0, 256, (21, 34, 3), dtype=np.uint8)
    model = tiny_model(2)
    ref = Upscaler(model, torch.device("cpu"))(img)
    for tile in (0, 16):
        got = Upscaler(model, torch.device("cpu"), backend="onnxruntime", tile=tile, tile_pad=16)(img)
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("audio_rate", [16000, 44100])  # Opus takes no 44.1 kHz: resampled to 48 kHz
def test_webm_output_reencodes_aac_audio(tmp_path, caplog, audio_rate):
    import av

    make_video(tmp_path / "in.mp4", frames=5, size=(16, 20), audio=True, audio_rate=audio_rate)
    up = Upscaler(tiny_model(2), torch.device("cpu"))
    with caplog.at_level("INFO"):
        report = upscale_path(up, tmp_path / "in.mp4", tmp_path / "clip.webm", progress=False)
    assert "re-encoded with libopus" in caplog.text
    assert ("resampled from 44100 to 48000 Hz" in caplog.text) == (audio_rate == 44100)
    with av.open(str(report.written[0])) as c:
        assert c.streams.video[0].codec_context.name == "vp9"
        assert c.streams.audio[0].codec_context.name == "opus"
        assert c.streams.audio[0].codec_context.sample_rate in (audio_rate, 48000)
        assert sum(1 for _ in c.decode(video=0)) == 5
    with av.open(str(report.written[0])) as c:
        assert sum(f.samples for f in c.decode(audio=0)) > 0
    assert report.video[0] == 5 and re.fullmatch(r"wrote \S+clip\.webm \(5 frames in [\d.]+ s, [\d.]+ fps\)",
                                                report.summary())
    assert not list(tmp_path.glob(".*partial*"))  # the temporary file became the output


def test_cpu_commands_keep_freed_memory():
    """glibc takes the thresholds (checked in a fresh process: the setting is process-wide)."""
    code = "from rt4ksr.inference.cpu_memory import keep_freed_memory; assert keep_freed_memory()"
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt exists on Linux only; elsewhere the call is a no-op")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_automatic_cpu_tiles_change_nothing():
    """tile=None tiles on the CPU (the allocator then reuses the small intermediates) only where the output stays
    the untiled one: local operations, with context covering the receptive field."""
    from rt4ksr.models import NAFBlock

    model = tiny_model(2)
    img = np.random.default_rng(8).integers(0, 256, (530, 600, 3), dtype=np.uint8)
    auto = Upscaler(model, torch.device("cpu"), tile=None)
    assert auto.tile == 512
    assert np.abs(auto(img).astype(int) - Upscaler(model, torch.device("cpu"))(img).astype(int)).max() <= 1
    global_attention = reparameterize(RTSRN(feature_channels=8, num_blocks=1, baseblock=NAFBlock, squeeze=True))
    assert Upscaler(global_attention, torch.device("cpu"), tile=None).tile == 0


# --- folders in place, failures mid-video, output formats -----------------------------------------------------


def test_a_folder_upscaled_in_place(tmp_path, up2):
    """The output folder may be the input folder with a suffix: earlier outputs (names ending with the suffix) are
    not inputs. Without a suffix it is refused, whatever the formats (a .jpg input with a .png output too, which
    would be an input on the next run)."""
    write(tmp_path / "a.png", 10, 12)
    write(tmp_path / "sub" / "b.png", 9, 8, seed=1)
    opts = OutputOptions(suffix="_up")
    report = upscale_path(up2, tmp_path, tmp_path, opts, progress=False)
    assert sorted(p.name for p in report.written) == ["a_up.png", "b_up.png"]
    again = upscale_path(up2, tmp_path, tmp_path, OutputOptions(suffix="_up", overwrite=True), progress=False)
    assert sorted(p.name for p in again.written) == ["a_up.png", "b_up.png"]  # a_up.png is no input
    assert not list(tmp_path.rglob("*_up_up*"))
    with pytest.raises(ConfigValueError, match=r"is the input folder .*suffix=_x2"):
        upscale_path(up2, tmp_path, tmp_path, progress=False)
    write(tmp_path / "jp" / "p.jpg", 8, 8)
    with pytest.raises(ConfigValueError, match="suffix=_x2"):
        upscale_path(up2, tmp_path / "jp", tmp_path / "jp", progress=False)
    assert [p.name for p in (tmp_path / "jp").iterdir()] == ["p.jpg"]
    parent = upscale_path(up2, tmp_path / "sub", tmp_path, OutputOptions(suffix="_p"), progress=False)
    assert sorted(p.name for p in parent.written) == ["b_p.png", "b_up_p.png"]  # the output folder holds the input
    nested = upscale_path(up2, tmp_path / "sub", tmp_path / "sub" / "out", progress=False)  # outputs inside
    assert [p.name for p in nested.written] == ["b.png", "b_up.png"]
    assert [p.name for p in upscale_path(up2, tmp_path / "sub", tmp_path / "sub" / "out", progress=False).kept] \
        == ["b.png", "b_up.png"]  # the outputs below the input are not inputs on the second run


def test_a_failing_model_ends_a_video_promptly(tmp_path):
    """The model raising mid-video ends the run with its error (the decoder, blocked on its full queue, is
    released), and no output or temporary file is left."""
    import threading

    make_video(tmp_path / "in.mp4", frames=30, size=(16, 20), audio=True)
    up = Upscaler(tiny_model(2), torch.device("cpu"))
    calls = []

    class Failing:
        scale = 2

        def __call__(self, batch):
            calls.append(len(batch))
            if len(calls) == 2:
                raise RuntimeError("the model failed")
            return up(batch)

    result = []

    def work():
        try:
            upscale_path(Failing(), tmp_path / "in.mp4", tmp_path / "out.mp4", batch_size=1, progress=False)
        except RuntimeError as e:
            result.append(e)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the video pipeline hangs after a model error"
    assert len(result) == 1 and "the model failed" in str(result[0]) and len(calls) == 2
    assert not (tmp_path / "out.mp4").exists() and not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("suffix,codec", [(".webm", "vp9"), (".avi", "mpeg4")])
def test_crf_sets_the_quality_of_every_video_codec(tmp_path, suffix, codec):
    """crf reaches VP9 (constant quality, no bitrate cap) and MPEG-4 (a fixed quantiser): a lower crf gives a
    larger file."""
    import av

    make_video(tmp_path / "in.mp4", frames=4, size=(24, 32), audio=False)
    up = Upscaler(tiny_model(2), torch.device("cpu"))
    sizes = []
    for crf in (4, 50):
        out = tmp_path / f"crf{crf}{suffix}"
        upscale_path(up, tmp_path / "in.mp4", out, OutputOptions(crf=crf), progress=False)
        with av.open(str(out)) as c:
            assert c.streams.video[0].codec_context.name == codec
            assert sum(1 for _ in c.decode(video=0)) == 4
        sizes.append(out.stat().st_size)
    assert sizes[0] > 1.5 * sizes[1]


def test_an_output_suffix_that_is_no_image_format_fails_up_front(tmp_path, up2):
    write(tmp_path / "a.png", 8, 8)
    for name in ("out.mp4", "out.txt"):
        with pytest.raises(ConfigValueError, match=r"\.png.*not '\.(mp4|txt)'"):
            upscale_path(up2, tmp_path / "a.png", tmp_path / name, progress=False)
        assert not (tmp_path / name).exists()


def test_ext_auto_keeps_the_inputs_suffix_case(tmp_path, up2):
    write(tmp_path / "in" / "A.PNG", 8, 8)
    report = upscale_path(up2, tmp_path / "in", tmp_path / "out", OutputOptions(ext="auto"), progress=False)
    assert [p.name for p in report.written] == ["A.PNG"]


def test_gray_with_alpha_stays_gray_with_alpha(tmp_path, up2):
    """OpenCV reads a gray + alpha PNG as BGRA with B = G = R: it is upscaled as gray (neutral, no tint) and
    written gray + alpha."""
    from PIL import Image

    from rt4ksr.data.io import read_picture
    from rt4ksr.inference.upscaling.pictures import _single_channel

    rng = np.random.default_rng(9)
    gray, alpha = rng.integers(0, 256, (12, 14), dtype=np.uint8), np.tile(np.arange(14, dtype=np.uint8) * 18, (12, 1))
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(tmp_path / "la.png")
    pic = read_picture(tmp_path / "la.png")
    assert pic.gray and (pic.color[:, :, 0] == gray).all() and (pic.alpha == alpha).all()
    upscale_path(up2, tmp_path / "la.png", tmp_path / "out.png", progress=False)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "LA" and im.size == (28, 24)
        out = np.asarray(im)
    assert (out[:, :, 0] == _single_channel(up2, gray)).all()


def test_stale_temporary_files_go_and_live_ones_stay(tmp_path, up2):
    import os

    write(tmp_path / "in" / "a.png", 8, 8)
    (tmp_path / "out").mkdir()
    live = tmp_path / "out" / f".b.partial-{os.getpid()}.png"  # a run that is still writing
    dead = tmp_path / "out" / ".c.partial-2147483647.png"  # no such process
    live.write_bytes(b"x")
    dead.write_bytes(b"x")
    upscale_path(up2, tmp_path / "in", tmp_path / "out", progress=False)
    assert live.exists() and not dead.exists()


def test_quoted_overrides_survive_hydras_parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from rt4ksr.upscale import _quote

    parser = OverridesParser.create()
    for value in ["in dir/x.png", "it's", "C:\\out dir\\", "a\\'b", "x\\\\"]:
        assert parser.parse_override(f"output={_quote(value)}").value() == value


def test_out_of_gpu_memory_fails_one_file_and_suggests_tiles(tmp_path, up2, monkeypatch):
    import rt4ksr.inference.upscaling.paths as upscaling

    write(tmp_path / "in" / "a.png", 8, 8)
    write(tmp_path / "in" / "b.png", 8, 8)
    real = upscaling.upscale_image

    def oom_on_a(up, src, dst, opts=None):
        if src.name == "a.png":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(up, src, dst, opts)

    monkeypatch.setattr(upscaling, "upscale_image", oom_on_a)
    report = upscale_path(up2, tmp_path / "in", tmp_path / "out", progress=False)
    assert [p.name for p in report.written] == ["b.png"]
    assert len(report.failed) == 1 and "a.png" in report.failed[0] and "tile=512" in report.failed[0]


# --- mistakes found on first use: truncated files, names, options ------------------------------------------------


def test_truncated_images_are_refused(tmp_path, up2):
    """A JPEG or PNG cut in half decodes with gray rows and only a decoder warning: it is refused, alone or in a
    folder; data after the end marker (padding, a motion photo's video) is no truncation."""
    from rt4ksr.data.io import ImageReadError, is_truncated

    for name in ("a.jpg", "b.png"):
        write(tmp_path / "full" / name, 40, 48, seed=3)
        data = (tmp_path / "full" / name).read_bytes()
        (tmp_path / "cut").mkdir(exist_ok=True)
        (tmp_path / "cut" / name).write_bytes(data[: len(data) // 2])
        (tmp_path / "full" / f"padded_{name}").write_bytes(data + b"\0" * 64 + b"ftypmp42" + bytes(300))
        with pytest.raises(ImageReadError, match=r"cannot read image .*\(truncated"):
            upscale_path(up2, tmp_path / "cut" / name, tmp_path / "o.png", progress=False)
    assert not any(is_truncated(p) for p in (tmp_path / "full").iterdir())
    assert len(upscale_path(up2, tmp_path / "full", tmp_path / "full_out", progress=False).written) == 4
    report = upscale_path(up2, tmp_path / "cut", tmp_path / "out", progress=False)
    assert not report.written and len(report.failed) == 2 and all("truncated" in f for f in report.failed)


def test_a_single_file_is_replaced_and_ext_must_agree(tmp_path, up2):
    """The user named the file: a second run with other options writes it again (only folder runs resume). An
    explicit ext that contradicts the output's suffix is refused, before any work."""
    write(tmp_path / "a.png", 10, 12)
    upscale_path(up2, tmp_path / "a.png", tmp_path / "o.png", progress=False)
    report = upscale_path(up2, tmp_path / "a.png", tmp_path / "o.png", OutputOptions(outscale=3), progress=False)
    assert report.written and read_image(tmp_path / "o.png").shape == (30, 36, 3)
    for ext in ("webp", "auto"):
        with pytest.raises(ConfigValueError, match=f"ext={ext} contradicts output o.jpg"):
            upscale_path(up2, tmp_path / "a.png", tmp_path / "o.jpg", OutputOptions(ext=ext), progress=False)
    assert not (tmp_path / "o.jpg").exists()
    upscale_path(up2, tmp_path / "a.png", tmp_path / "o.jpeg", OutputOptions(ext="jpg"), progress=False)
    assert read_image(tmp_path / "o.jpeg").shape == (20, 24, 3)


def test_output_options_are_checked_before_any_work(tmp_path):
    from rt4ksr.core.config import int_option

    bad = [dict(quality=500), dict(quality="high"), dict(crf=70), dict(crf=-1), dict(outscale="abc"),
           dict(outscale=0), dict(overwrite="yes"), dict(suffix="/../../esc"), dict(suffix="a/b"),
           dict(suffix="a\\b"), dict(suffix="a\0b")]
    for kwargs in bad:
        with pytest.raises(ConfigValueError, match=next(iter(kwargs))):
            OutputOptions(**kwargs)
    with pytest.raises(ConfigValueError, match=r"crf must be from 0 to 51 for \.mp4"):
        OutputOptions(crf=60).check_video(".mp4")
    OutputOptions(crf=60).check_video(".webm")  # VP9 takes up to 63
    for tile, tile_pad in (("abc", 16), (64.5, 16), (-1, 16), (64, "abc"), (64, -2)):
        with pytest.raises(ConfigValueError, match="tile"):
            Upscaler(tiny_model(2), torch.device("cpu"), tile=tile, tile_pad=tile_pad)
    assert int_option("tile", 64.0, 0) == 64


def test_videos_are_named_as_images(tmp_path, up2):
    """In a folder run a video keeps its name (and gets the suffix) as an image does; no scale is made up."""
    pytest.importorskip("av")
    write(tmp_path / "in" / "a.png", 8, 8)
    make_video(tmp_path / "in" / "clip.mp4", frames=2, size=(8, 10), audio=False)
    report = upscale_path(up2, tmp_path / "in", tmp_path / "out", progress=False)
    assert sorted(p.name for p in report.written) == ["a.png", "clip.mp4"]
    opts = OutputOptions(suffix="_s", outscale=1.5)
    report = upscale_path(up2, tmp_path / "in", tmp_path / "in", opts, progress=False)
    assert sorted(p.name for p in report.written) == ["a_s.png", "clip_s.mp4"]


def test_folder_outputs_are_checked(tmp_path, up2, caplog):
    """A folder input needs an output folder (a new name with a file suffix is refused); outputs inside the input
    folder are no inputs, and the log says how many were left out."""
    write(tmp_path / "sf" / "a.png", 8, 8)
    (tmp_path / "x.txt").write_text("a file")
    for out in ("x.txt", "new.png"):
        with pytest.raises(ConfigValueError, match="output folder|is a file"):
            upscale_path(up2, tmp_path / "sf", tmp_path / out, progress=False)
    assert not (tmp_path / "new.png").exists()
    upscale_path(up2, tmp_path / "sf", tmp_path / "sf" / "sub", progress=False)
    with caplog.at_level("INFO"):
        report = upscale_path(up2, tmp_path / "sf", tmp_path / "sf" / "sub", OutputOptions(overwrite=True),
                              progress=False)
    assert [p.name for p in report.written] == ["a.png"]
    assert "skipped 1 file(s) inside the output folder" in caplog.text


def test_a_single_file_run_removes_its_own_stale_partials(tmp_path, up2):
    import os

    write(tmp_path / "a.png", 8, 8)
    dead = tmp_path / ".o.partial-2147483647.png"  # left by a killed run that wrote o.png
    live = tmp_path / f".o.partial-{os.getpid()}0.png"
    other = tmp_path / ".p.partial-2147483647.png"  # another output's: not this run's business
    for p in (dead, other):
        p.write_bytes(b"x")
    upscale_path(up2, tmp_path / "a.png", tmp_path / "o.png", progress=False)
    assert not dead.exists() and other.exists() and not live.exists()


def test_kernels_need_triton_and_cuda(monkeypatch):
    from rt4ksr.core.extras import MissingExtraError

    monkeypatch.setitem(sys.modules, "triton", None)
    with pytest.raises(MissingExtraError, match=r"rt4ksr\[kernels\]"):
        Upscaler(tiny_model(2), torch.device("cpu"), kernels=True)
    monkeypatch.delitem(sys.modules, "triton")
    pytest.importorskip("triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ConfigValueError, match="kernels=true runs on CUDA"):
        Upscaler(tiny_model(2), torch.device("cpu"), kernels=True)


def test_face_enhance_says_what_to_use_instead():
    from rt4ksr.upscale import translate_flags

    with pytest.raises(SystemExit, match="GFPGAN"):
        translate_flags(["--face_enhance"])


# --- one home for each thing: the model's descriptor, the run's options, the upscaler's setup ---------------------


def test_the_upscaler_reads_the_loaded_descriptor():
    """A ``Loaded`` and the bare network it describes (``Loaded.of``) give the same upscaler: the scale, the grid
    and the automatic tiles' context all come from the descriptor."""
    from rt4ksr.inference.loading import Loaded

    model = tiny_model(3)
    loaded = Loaded.of(model)
    assert Loaded.of(loaded) is loaded and loaded.train_model is None and loaded.source is None
    a, b = Upscaler(loaded, torch.device("cpu"), tile=None), Upscaler(model, torch.device("cpu"), tile=None)
    assert (a.scale, a.multiple, a.tile, a.tile_pad) == (b.scale, b.multiple, b.tile, b.tile_pad)
    assert (a.scale, a.multiple, a.tile) == (3, loaded.multiple, 512)
    assert a.tile_pad == max(16, loaded.radius + loaded.multiple)
    img = np.random.default_rng(2).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert np.array_equal(a(img), b(img))


def test_upscale_options_are_read_and_checked_in_one_place(caplog):
    from rt4ksr.core.config import compose
    from rt4ksr.inference.upscaling import UpscaleOptions, build_upscaler

    cfg = compose("upscale", ["input=a.png", "output=b.png", "device=cpu", "half=true", "tile=0", "backend=torch",
                              "outscale=3", "kernel_options.fuse=2"])
    with caplog.at_level("WARNING"):
        options = UpscaleOptions.from_config(cfg)
    assert "half=true applies on CUDA" in caplog.text
    assert options.device == torch.device("cpu") and options.half is False  # the CPU runs fp32
    assert (options.tile, options.tile_pad, options.batch_size, options.backend) == (0, 16, 4, "torch")
    assert options.output.outscale == 3.0 and options.kernel_options["fuse"] == 2
    assert isinstance(options.kernel_options, dict) and options.kernel_options["region"] == [32, 32]
    up = build_upscaler(tiny_model(2), options)
    assert (up.device, up.half, up.tile, up.backend) == (torch.device("cpu"), False, 0, "torch")
    for kwargs, message in ((dict(tile="abc"), "tile must be"), (dict(tile_pad=-2), "tile_pad must be"),
                            (dict(batch_size=0), "batch_size must be an integer >= 1"),
                            (dict(half="maybe"), "half must be true, false or null"),
                            (dict(compile="yes"), "compile must be"), (dict(progress=1), "progress must be"),
                            (dict(backend="tensorrt"), "backend must be one of auto, torch, onnxruntime, openvino"),
                            (dict(kernel_options={"fuse": 0}), "kernel_options"),
                            (dict(device="bogus"), "device must be auto, cpu, cuda or cuda:N")):
        with pytest.raises(ConfigValueError, match=message):
            UpscaleOptions(**kwargs)


def test_load_weights_takes_values(tmp_path):
    """``load_weights`` is ``load_model`` without a config: the same file, the same scale check and message."""
    from rt4ksr.inference.loading import load_weights

    model_cfg = {"_target_": "rt4ksr.models.RTSRN", "scale": 2, "feature_channels": 8, "num_blocks": 1}
    random = load_weights(None, None, model_cfg)
    assert random.source is None and random.train_model is not None and random.scale == 2
    from rt4ksr.models.checkpoint import portable_state_dict

    path = tmp_path / "x2.pth"
    torch.save({"state_dict": portable_state_dict(random.model), "config": random.model.config}, path)
    assert load_weights(str(path), None, model_cfg).scale == 2
    with pytest.raises(ConfigValueError, match=f"ckpt_path={path} is an x2 model, but the model options ask for x3"):
        load_weights(str(path), None, {**model_cfg, "scale": 3}, model_named=True)
