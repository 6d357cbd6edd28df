"""rt4ksr.upscale: images, folders, videos, tiling, and bad input."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers import randomize_
from rt4ksr.data import read_image
from rt4ksr.deploy.inference import Upscaler, build_model
from rt4ksr.deploy.upscaling import UnsupportedInputError, upscale_path
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
    tiled = Upscaler(model, torch.device("cpu"), tile=24, overlap=12)(img)
    assert tiled.shape == whole.shape == (75 * scale, 101 * scale, 3)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1  # within 1/255


def test_image_and_folder_resume(tmp_path, up2):
    write(tmp_path / "in" / "a.png", 20, 31)
    write(tmp_path / "in" / "sub" / "b.jpg", 17, 16, seed=1)
    (tmp_path / "in" / "notes.txt").write_text("hello")
    (tmp_path / "in" / "sub" / "broken.png").write_bytes(b"nope")
    errors = upscale_path(up2, tmp_path / "in", tmp_path / "out", progress=False)
    assert len(errors) == 1 and "broken.png" in errors[0]  # reported; the others are done
    assert read_image(tmp_path / "out" / "a.png").shape == (40, 62, 3)
    assert read_image(tmp_path / "out" / "sub" / "b.png").shape == (34, 32, 3)
    stamp = (tmp_path / "out" / "a.png").stat().st_mtime_ns
    upscale_path(up2, tmp_path / "in", tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "a.png").stat().st_mtime_ns == stamp  # resumed: kept
    upscale_path(up2, tmp_path / "in", tmp_path / "out", overwrite=True, progress=False)
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


def make_video(path, frames=7, size=(33, 47), rate=12, audio=True):
    import av

    h, w = size
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        a = c.add_stream("aac", rate=16000) if audio else None
        rng = np.random.default_rng(0)
        for i in range(frames):
            img = rng.integers(0, 256, (v.height, v.width, 3), dtype=np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        if a is not None:
            t = np.arange(16000 * frames // rate) / 16000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, samples.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(samples[:, start:start + 1024].copy(), format="fltp", layout="mono")
                af.sample_rate, af.pts = 16000, start
                c.mux(a.encode(af))
            c.mux(a.encode(None))


@pytest.mark.parametrize("scale,audio", [(2, True), (3, False)])
def test_video_keeps_rate_frames_and_audio(tmp_path, scale, audio):
    import av

    make_video(tmp_path / "in.mp4", size=(33, 47), audio=audio)
    up = Upscaler(tiny_model(scale), torch.device("cpu"))
    upscale_path(up, tmp_path / "in.mp4", tmp_path / "out.mp4", batch_size=3, progress=False)
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
        build_model(None, tmp_path / "bare.pth")
