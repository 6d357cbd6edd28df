"""End-to-end video speed: is ``rt4ksr upscale`` on a video close to model speed, as docs/deployment.md says?

On the GPU machine, from the repo root (its image lacks hydra, omegaconf, kornia, safetensors and PyAV: on a
networked machine, ``../shared/tools/device-wheels.sh safetensors av==18.1.0`` builds their wheels into ``.whl``,
about 45 MiB with PyAV's 34 MiB, which is carried)::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site:$PWD/src TRITON_INTERPRET=0 \
      && for s in 2 3; do timeout 270 python3 scripts/video_e2e.py --scale $s --frames 150 \
           --json $OUT/video_e2e_x$s.json; done

and, in a second call if the time allows, the fused kernels (the same first two lines, then)::

    timeout 270 python3 scripts/video_e2e.py --scale 2 --frames 150 --override kernels=true \
      --json $OUT/video_e2e_x2_kernels.json

A run encodes 4K five times (the floor, the command, the pipeline, and the two what-ifs): at the 10-25 fps
that x264's medium preset reaches at 4K on 16 cores, 150 frames take about 1.5 to 4 minutes; 300 (the default)
twice that. On this CPU, at a test size: ``python scripts/video_e2e.py --width 64 --height 36 --frames 8``.

What it does, in order:

1. Makes a test clip with PyAV (no ffmpeg binary needed): a sub-pixel pan over a procedurally generated texture
   (noise octaves, shapes, text, film grain) with a moving object, H.264 yuv420p, ``--frames`` at ``--fps``;
   1920x1080 for x2 and 1280x720 for x3 (both give 3840x2160), or ``--width``/``--height``. Seeded, so the same
   arguments give the same frames; kept in the work folder and reused.
2. Decode only: the clip decoded to RGB as the upscaler's decoding thread does.
3. The floor, decode+encode without the model: ``upscale_video`` itself (the same three threads, queues,
   encoder, crf, preset, pixel format and threads as the command) with the network replaced by a bilinear
   OpenCV resize to the output size. No video upscale can be faster than this on the machine.
4. The command as a user runs it, ``python -m rt4ksr.upscale input=CLIP output=OUT weights=rt4ksr-x2`` plus the
   ``--override`` options, timed by wall clock (process start, imports and model load included); the progress
   bar's last rate is parsed from its stderr.
5. In this process, with the model built as the command builds it (``UpscaleOptions.from_config`` and
   ``build_upscaler``, from the same config): the model alone on decoded frames (``Upscaler`` on uint8 batches
   of ``batch_size``, transfers included, after a warm-up), then the whole video pipeline again with that warm
   model. Their difference from the command's wall clock is the
   command's start-up (imports, CUDA context, model load, kernel compilation).
   What if the encoder used slice threads (``--no-what-if`` skips it): the floor and the pipeline again with
   the encoder's ``thread_type`` set to SLICE, PyAV's default, instead of the frame threads (AUTO, FFmpeg's
   default) that upscale_video sets; x264 then runs sliced threads (``sliced_threads=1`` in ``x264_settings``;
   x264's doc/threads.txt: lower latency, lower throughput, scales worse with many cores).
6. Checks the command's output: every frame there (decoded and counted), the output size (3840x2160 at the
   default sizes), H.264, and its content (the output shrunk back against the input, PSNR >= 25 dB).

It prints a table and, with ``--json``, writes the figures (device, CPU count, each stage's fps, the ratios, the
encoder and its settings as x264 recorded them, the date, the exact command lines). ``claim.holds`` is
whether the in-process pipeline reaches 90% of the model's speed; ``claim.bound_by`` says which is slower,
the model or decode+encode. Exit status: 0 when the output checks pass, 1 when one fails or a stage fails
(one ``error:`` line), 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

SIZES = {2: (1920, 1080), 3: (1280, 720)}  # (width, height) of the input that gives 3840x2160
CLIP_VERSION = 1  # in the clip's name: a change to the generator makes a new clip instead of reusing an old one
CLIP_CRF = 20  # the test clip's own quality (the upscale's crf is the command's)
MIN_PSNR = 25.0  # dB: the output shrunk back to the input's size, against the input; garbage scores far less
CLAIM_RATIO = 0.9  # "close to model speed": the pipeline at >= 90% of the model alone
SAFE_PATH = re.compile(r"^[A-Za-z0-9/._+:~-]+$")  # what a Hydra override value takes unquoted


class VideoE2EError(Exception):
    """A failed stage or check: printed as one ``error:`` line."""


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of argparse's usage block
        fail(f"{message} (--help lists the options)", 2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(description=__doc__.split("\n", 1)[0], epilog="See the module docstring for the GPU command.")
    p.add_argument("--scale", type=int, choices=(2, 3), default=2, help="2: 1920x1080 input; 3: 1280x720 input")
    p.add_argument("--width", type=int, help="input width (even; default by scale)")
    p.add_argument("--height", type=int, help="input height (even; default by scale)")
    p.add_argument("--frames", type=int, default=300, help="frames in the test clip (default 300)")
    p.add_argument("--fps", type=int, default=30, help="frame rate of the test clip (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated content")
    p.add_argument("--weights", help="zoo entry (default rt4ksr-x<scale>)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the upscale command, repeatable: kernels=true, batch_size=8, half=false, "
                        "compile=true, tile=0, crf=23, device=cpu ...")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "rt4ksr-video-e2e",
                   help="folder for the clip and the outputs (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the upscaled videos (the clip is always kept)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds the upscale command may take")
    p.add_argument("--no-what-if", dest="what_if", action="store_false",
                   help="skip the what-if stages (the floor and the pipeline with a slice-threaded encoder)")
    p.add_argument("--json", type=Path, help="write the results here (atomically)")
    args = p.parse_args(argv)
    default_w, default_h = SIZES[args.scale]
    args.width = default_w if args.width is None else args.width
    args.height = default_h if args.height is None else args.height
    if args.width < 16 or args.height < 16 or args.width % 2 or args.height % 2:
        p.error(f"--width and --height must be even and at least 16 (yuv420p), got {args.width}x{args.height}")
    if args.frames < 1 or args.fps < 1:
        p.error(f"--frames and --fps must be at least 1, got {args.frames} and {args.fps}")
    if args.timeout <= 0:
        p.error(f"--timeout must be positive, got {args.timeout}")
    args.weights = args.weights or f"rt4ksr-x{args.scale}"
    for o in args.override:
        key = o.lstrip("+~").partition("=")[0]
        if "=" not in o or not key:
            p.error(f"--override takes KEY=VALUE (an option of rt4ksr upscale), got {o!r}")
        if key in ("input", "output", "weights"):
            p.error(f"--override {key}=... is set by the script: use {'--weights' if key == 'weights' else '--work'}")
    args.work = args.work.expanduser().resolve()
    if not SAFE_PATH.match(str(args.work)):
        p.error(f"--work {args.work}: choose a folder whose path has only letters, digits and /._+:~- (it is "
                "passed to the command as a Hydra override)")
    return args


# --- the test clip ------------------------------------------------------------------------------------------------


def texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A float32 RGB canvas with detail at every scale: value-noise octaves, anti-aliased shapes and text."""
    import cv2

    img = np.zeros((height, width, 3), np.float32)
    for cell, amp in ((max(2, height // 6), 110.0), (32, 60.0), (8, 35.0), (2, 20.0)):
        small = rng.random((max(2, height // cell), max(2, width // cell), 3), dtype=np.float32)
        img += amp * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    img = ((img - img.min()) * (255.0 / max(1e-6, float(img.max() - img.min())))).astype(np.uint8)
    area = height * width
    for _ in range(max(6, area // 30000)):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(2, max(3, min(height, width) // 8)))
        kind = int(rng.integers(0, 4))
        if kind == 0:
            cv2.circle(img, (x, y), r, color, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (x, y), (x + 2 * r, y + r), color, -1, cv2.LINE_AA)
        elif kind == 2:
            x2, y2 = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.line(img, (x, y), (x2, y2), color, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            text = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(3, 9))))
            cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, max(0.3, r / 25), color, max(1, r // 12),
                        cv2.LINE_AA)
    return img.astype(np.float32)


def clip_path(args: argparse.Namespace) -> Path:
    return args.work / f"clip_{args.width}x{args.height}_{args.frames}f_{args.fps}fps_s{args.seed}_v{CLIP_VERSION}.mp4"


def make_clip(av: Any, path: Path, width: int, height: int, frames: int, fps: int, seed: int) -> float:
    """The test clip (see the module docstring), written atomically; returns the seconds it took."""
    import cv2

    from rt4ksr.core.files import atomic_path

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    pan_x, pan_y = max(8, width // 2), max(4, height // 4)  # the pan's range
    canvas = texture(height + pan_y, width + pan_x, rng)
    sprite_r = max(3, height // 10)
    sprite = texture(2 * sprite_r, 2 * sprite_r, rng)
    mask = np.zeros((2 * sprite_r, 2 * sprite_r), np.float32)
    cv2.circle(mask, (sprite_r, sprite_r), sprite_r - 1, 1.0, -1, cv2.LINE_AA)
    grain = rng.normal(0.0, 2.5, (height, width, 1)).astype(np.float32)
    period = max(2, frames)
    with atomic_path(path) as tmp, av.open(str(tmp), "w") as out:
        v = out.add_stream("libx264", rate=fps, options={"crf": str(CLIP_CRF), "preset": "medium"})
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            phase = i / period  # a pan there and back, at sub-pixel steps, over the whole clip
            tri = 2 * phase if phase < 0.5 else 2 - 2 * phase
            x, y = tri * (pan_x - 1), 0.5 * (1 - math.cos(2 * math.pi * phase)) * (pan_y - 1)
            shift = np.float32([[1, 0, -x], [0, 1, -y]])
            img = cv2.warpAffine(canvas, shift, (width, height), flags=cv2.INTER_LINEAR)
            sx = int((width - 2 * sprite_r) * (0.5 + 0.45 * math.sin(2 * math.pi * 1.5 * phase)))
            sy = int((height - 2 * sprite_r) * (0.5 + 0.45 * math.cos(2 * math.pi * phase)))
            region = img[sy:sy + 2 * sprite_r, sx:sx + 2 * sprite_r]
            region += mask[:, :, None] * (sprite - region)
            img += np.roll(grain, (int(rng.integers(0, height)), int(rng.integers(0, width))), axis=(0, 1))
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    return time.perf_counter() - start


# --- the stages ---------------------------------------------------------------------------------------------------


class Resize:
    """The floor's stand-in for the network: the same uint8 batches in and out, at the model's scale, by an
    OpenCV bilinear resize (a few ms a 4K frame) rather than nearest, so the encoder gets smooth frames like
    the model's and not blocks, which it would encode faster."""

    def __init__(self, scale: int) -> None:
        self.scale = scale

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import cv2

        s = self.scale
        return np.stack([cv2.resize(f, (f.shape[1] * s, f.shape[0] * s), interpolation=cv2.INTER_LINEAR)
                         for f in frames])


def decode_only(av: Any, clip: Path) -> tuple[int, float]:
    """Frames and seconds to decode ``clip`` to RGB, as the upscaler's decoding thread does."""
    start = time.perf_counter()
    n = 0
    with av.open(str(clip)) as c:
        v = c.streams.video[0]
        v.thread_type = "AUTO"
        for frame in c.decode(v):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n, time.perf_counter() - start


def timed_video(up: Any, clip: Path, dst: Path, batch_size: int, opts: Any, slice_threads: bool = False
                ) -> tuple[int, float]:
    """``upscale_video`` timed. ``slice_threads``: the what-if of an encoder with PyAV's default threading
    (``thread_type`` SLICE: x264's sliced threads, built for latency) in place of the frame threads that
    upscale_video sets (AUTO, FFmpeg's default; x264's doc/threads.txt: more throughput with many cores)."""
    from rt4ksr.inference.upscaling import video

    original = video.map_streams

    def slice_threaded(*args: Any, **kwargs: Any) -> Any:
        streams = original(*args, **kwargs)
        streams.vout.thread_type = "SLICE"  # before the encoder opens, at its first frame
        return streams

    if slice_threads:
        video.map_streams = slice_threaded
    try:
        start = time.perf_counter()
        frames = video.upscale_video(up, clip, dst, batch_size, opts, progress=False)
        return frames, time.perf_counter() - start
    finally:
        video.map_streams = original


TQDM_RATE = re.compile(r"(\d+)/(\d+) \[[^\]]*?,\s*([0-9.]+)(frame/s|s/frame)\]")


def progress_rate(stderr: str) -> float | None:
    """The last rate the progress bar showed (frames/s; tqdm smooths it over the last updates)."""
    found = TQDM_RATE.findall(stderr)
    if not found:
        return None
    rate, unit = float(found[-1][2]), found[-1][3]
    return rate if unit == "frame/s" else (1.0 / rate if rate else None)


def run_command(cmd: list[str], timeout: float, log_dir: Path) -> tuple[float, str]:
    """Runs the upscale command; (wall seconds, stderr). Its output goes to command.stdout/.stderr there."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VideoE2EError(f"the upscale command took more than {timeout:.0f} s (--timeout): "
                            f"{shlex.join(cmd)}") from None
    seconds = time.perf_counter() - start
    (log_dir / "command.stdout").write_text(proc.stdout)
    (log_dir / "command.stderr").write_text(proc.stderr)
    if proc.returncode:
        lines = [line.strip() for line in re.split(r"[\r\n]", proc.stderr + proc.stdout) if line.strip()]
        last = lines[-1].removeprefix("error: ") if lines else "no output"
        raise VideoE2EError(f"the upscale command failed (exit {proc.returncode}): {last} (full output in "
                            f"{log_dir / 'command.stderr'})")
    return seconds, proc.stderr


def x264_settings(av: Any, path: Path) -> str | None:
    """The settings x264 recorded in the stream (its SEI: 'cabac=1 ref=3 ... threads=24 ... crf=18.0 ...')."""
    with av.open(str(path)) as c:
        for i, packet in enumerate(c.demux(c.streams.video[0])):
            data = bytes(packet)
            at = data.find(b"options: ")
            if at >= 0:
                return data[at + 9:data.find(b"\0", at)].decode("ascii", "replace").strip()
            if i > 4:
                break
    return None


def inspect_output(av: Any, out: Path, clip: Path, size: tuple[int, int]) -> dict[str, Any]:
    """Frames (decoded and counted), size, codec and pixel format of ``out``, and the PSNR of its first and
    last frames shrunk back to the input's size against the input's."""
    import cv2

    def frames(path: Path) -> tuple[int, np.ndarray | None, np.ndarray | None, Any]:
        n, first, last = 0, None, None
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            v.thread_type = "AUTO"
            info = (v.codec_context.name, v.codec_context.pix_fmt, v.codec_context.width, v.codec_context.height)
            for last in c.decode(v):
                first = last.to_ndarray(format="rgb24") if first is None else first
                n += 1
        return n, first, None if last is None else last.to_ndarray(format="rgb24"), info

    n_out, out_first, out_last, (codec, pix_fmt, w, h) = frames(out)
    n_in, in_first, in_last, _ = frames(clip)
    psnr = None
    if out_first is not None and in_first is not None:
        values = []
        for o, i in ((out_first, in_first), (out_last, in_last)):
            back = cv2.resize(o[: size[0], : size[1]], (i.shape[1], i.shape[0]), interpolation=cv2.INTER_AREA)
            mse = float(np.mean((back.astype(np.float64) - i.astype(np.float64)) ** 2))
            values.append(99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse))
        psnr = round(min(values), 2)
    checks = {"frames": n_out == n_in, "size": (h, w) == (size[0] + size[0] % 2, size[1] + size[1] % 2),
              "codec": codec == "h264", "content": psnr is not None and psnr >= MIN_PSNR}
    return {"frames_in": n_in, "frames_out": n_out, "width": w, "height": h, "codec": codec, "pix_fmt": pix_fmt,
            "psnr_shrunk_vs_input_db": psnr, "checks": checks, "ok": all(checks.values())}


def model_stages(cfg: Any, options: Any, av: Any, clip: Path, dst: Path, frames: int, what_if: bool
                 ) -> dict[str, Any]:
    """In this process, the model as the command builds it (``build_upscaler`` with the command's checked
    options): alone on decoded frames, then the whole pipeline (and, with ``what_if``, the pipeline again with a
    slice-threaded encoder)."""
    import torch

    from rt4ksr.inference.loading import load_model
    from rt4ksr.inference.upscaling import build_upscaler
    from rt4ksr.upscale import default_scale

    opts, device = options.output, options.device
    start = time.perf_counter()
    loaded = load_model(cfg, default_scale=default_scale(cfg, opts.outscale))
    up = build_upscaler(loaded, options)
    load_s = time.perf_counter() - start
    batch = options.batch_size
    held: list[np.ndarray] = []
    with av.open(str(clip)) as c:
        v = c.streams.video[0]
        v.thread_type = "AUTO"
        for f in c.decode(v):
            held.append(f.to_ndarray(format="rgb24"))
            if len(held) >= max(batch, min(frames, 4 * batch)):
                break
    batches = [np.stack(held[i:i + batch]) for i in range(0, len(held), batch)]
    batches = [b for b in batches if len(b) == batch] or batches
    start = time.perf_counter()
    for b in batches[:1] * 3:  # warm-up: CUDA context, cuDNN's choice, Triton or torch.compile kernels
        up(b)
    warm_s = time.perf_counter() - start
    done, i = 0, 0
    start = time.perf_counter()
    while done < frames:
        done += len(up(batches[i % len(batches)]))
        i += 1
    model_s = time.perf_counter() - start
    n, pipe_s = timed_video(up, clip, dst, batch, opts)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {"device": str(device), "device_name": name, "half": up.half, "load_s": round(load_s, 3),
              "warmup_s": round(warm_s, 3), "model": (done, model_s), "pipeline": (n, pipe_s)}
    if what_if:
        result["pipeline_slice_threads"] = timed_video(up, clip, dst, batch, opts, slice_threads=True)
    return result


# --- the report ---------------------------------------------------------------------------------------------------


def fps(frames: int, seconds: float) -> float:
    return round(frames / max(seconds, 1e-9), 2)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(av: Any) -> dict[str, str]:
    import cv2
    import torch

    import rt4ksr

    lib = getattr(av, "library_versions", {}).get("libavcodec")
    return {"python": platform.python_version(), "torch": torch.__version__, "av": av.__version__,
            "libavcodec": ".".join(map(str, lib)) if lib else "?", "opencv": cv2.__version__,
            "rt4ksr": getattr(rt4ksr, "__version__", "?"), "cuda": str(torch.version.cuda)}


STAGE_NAMES = {
    "decode": "decode only",
    "floor_decode_encode": "decode+encode, no model (floor)",
    "floor_slice_threads": "  what if: floor, slice threads",
    "model": "model alone",
    "pipeline": "video pipeline, in process",
    "pipeline_slice_threads": "  what if: pipeline, slice threads",
    "command": "upscale command, wall clock",
}


def table(r: dict[str, Any]) -> str:
    s = r["stages"]
    floor = s["floor_decode_encode"]["fps"]
    enc = r["encoder"]
    lines = [f"video e2e x{r['scale']}: {r['input']['width']}x{r['input']['height']} -> {r['output']['width']}x"
             f"{r['output']['height']}, {r['frames']} frames, batch {r['batch_size']}, {enc['codec']} "
             f"{' '.join(f'{k}={v}' for k, v in enc['options'].items())} (threads={enc.get('threads', '?')}, "
             f"sliced={enc.get('sliced_threads', '?')}), on {r['device_name']}, {r['cpu_count']} CPUs",
             f"{'stage':36}{'seconds':>9}{'fps':>9}{'/ floor':>9}"]
    for key, name in STAGE_NAMES.items():
        if key in s:
            st = s[key]
            lines.append(f"{name:36}{st['seconds']:9.2f}{st['fps']:9.2f}{st['fps'] / floor:9.2f}")
    cmd = s["command"]
    if cmd.get("progress_fps"):
        lines.append(f"  the command's progress bar said {cmd['progress_fps']:.2f} fps at the end")
    lines.append(f"  start-up (imports, model load, warm-up) ~ {cmd['startup_s']:.2f} s of the command's "
                 f"{cmd['seconds']:.2f} s")
    c = r["claim"]
    lines.append(f"claim (close to model speed): pipeline / model = {c['pipeline_vs_model']:.2f}, bound by "
                 f"{c['bound_by']}, pipeline / min(model, floor) = {c['overlap']:.2f}: "
                 f"{'holds' if c['holds'] else 'does not hold'}")
    v = r["verify"]
    lines.append(f"output: {v['frames_out']} frames of {v['frames_in']}, {v['width']}x{v['height']} {v['codec']} "
                 f"{v['pix_fmt']}, shrunk back vs input {v['psnr_shrunk_vs_input_db']} dB: "
                 f"{'ok' if v['ok'] else 'FAILED ' + ', '.join(k for k, ok in v['checks'].items() if not ok)}")
    return "\n".join(lines)


def stage(frames: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"frames": frames, "seconds": round(seconds, 3), "fps": fps(frames, seconds), **extra}


def prepare(args: argparse.Namespace, av: Any, clip: Path, out: Path) -> tuple[Any, Any, str]:
    """The command's config with the overrides and its options, checked as the command checks them
    (``UpscaleOptions.from_config``), before any work; the video encoder an .mp4 output gets."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from rt4ksr.command import describe
    from rt4ksr.core.config import compose
    from rt4ksr.inference.upscaling import UpscaleOptions
    from rt4ksr.inference.upscaling.options import DEFAULT_CODECS
    from rt4ksr.models.pretrained import entry

    try:
        cfg = compose("upscale", [f"input={clip}", f"output={out}", f"weights={args.weights}", *args.override])
        options = UpscaleOptions.from_config(cfg)
        options.output.check_video(".mp4")
    except HydraException as e:
        raise VideoE2EError(f"--override: {describe(e, 'upscale')}") from None
    except OmegaConfBaseException as e:
        raise VideoE2EError(f"--override: {str(e).splitlines()[0]}") from None
    zoo_scale = entry(args.weights).scale  # an unknown name: one line with the closest one
    if zoo_scale != args.scale:
        raise VideoE2EError(f"--weights {args.weights} is a x{zoo_scale} model: give --scale {zoo_scale}")
    if "libx264" not in av.codecs_available:
        raise VideoE2EError("this PyAV's FFmpeg has no libx264, which the test clip needs")
    codec = next((c for c in DEFAULT_CODECS if c in av.codecs_available), None)
    return cfg, options, codec or "?"


def run(args: argparse.Namespace) -> int:
    try:
        import av
    except ImportError:
        raise VideoE2EError("PyAV is not installed: pip install 'rt4ksr[video]' (or pip install av)") from None
    try:
        import rt4ksr  # noqa: F401
    except ImportError as e:
        raise VideoE2EError(f"rt4ksr cannot be imported ({e}): pip install -e . or set PYTHONPATH=src") from None
    from rt4ksr.core.files import write_json
    from rt4ksr.inference.upscaling.pictures import output_size
    from rt4ksr.inference.upscaling.streams import video_options

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    args.work.mkdir(parents=True, exist_ok=True)
    clip = clip_path(args)
    out, floor_out, inproc_out = (args.work / f"{n}_x{args.scale}.mp4" for n in ("upscaled", "floor", "inprocess"))
    cmd = [sys.executable, "-m", "rt4ksr.upscale", f"input={clip}", f"output={out}", f"weights={args.weights}",
           *args.override]
    cfg, options, codec = prepare(args, av, clip, out)
    opts, batch = options.output, options.batch_size
    size = output_size((args.height, args.width), args.scale, opts.outscale)
    stages: dict[str, dict[str, Any]] = {}

    made = None
    if not clip.is_file():
        made = make_clip(av, clip, args.width, args.height, args.frames, args.fps, args.seed)
        say(f"made {clip} in {made:.1f} s")
    stages["decode"] = stage(*decode_only(av, clip))
    if stages["decode"]["frames"] != args.frames:
        raise VideoE2EError(f"the test clip {clip} has {stages['decode']['frames']} frames, not {args.frames}: "
                            "delete it to remake it")
    say(f"decode only: {stages['decode']['fps']} fps; the floor (decode+encode) next")
    stages["floor_decode_encode"] = stage(*timed_video(Resize(args.scale), clip, floor_out, batch, opts),
                                          stand_in="cv2.resize INTER_LINEAR in place of the model")
    if args.what_if:
        stages["floor_slice_threads"] = stage(*timed_video(Resize(args.scale), clip, floor_out, batch, opts,
                                                           slice_threads=True))
    say(f"floor: {stages['floor_decode_encode']['fps']} fps; the upscale command next: {shlex.join(cmd)}")
    cmd_s, stderr = run_command(cmd, args.timeout, args.work)
    verify = inspect_output(av, out, clip, size)
    settings = x264_settings(av, out) if codec == "libx264" else None
    say(f"command: {fps(args.frames, cmd_s)} fps (wall clock); the model in this process next")
    m = model_stages(cfg, options, av, clip, inproc_out, args.frames, args.what_if)
    stages["model"] = stage(*m["model"], load_s=m["load_s"], warmup_s=m["warmup_s"])
    stages["pipeline"] = stage(*m["pipeline"])
    if "pipeline_slice_threads" in m:
        stages["pipeline_slice_threads"] = stage(*m["pipeline_slice_threads"])
    for key in ("pipeline", "pipeline_slice_threads"):
        if key in stages and stages[key]["frames"] != args.frames:
            verify["checks"][f"{key}_frames"] = False
            verify["ok"] = False
    model_fps, pipe_fps, floor_fps = (stages[k]["fps"] for k in ("model", "pipeline", "floor_decode_encode"))
    stages["command"] = stage(verify["frames_out"], cmd_s, progress_fps=progress_rate(stderr),
                              startup_s=round(max(0.0, cmd_s - args.frames / pipe_fps), 2))
    cmd_fps = stages["command"]["fps"]

    def setting(key: str) -> int | None:
        found = re.search(rf"\b{key}=(\d+)", settings or "")
        return int(found.group(1)) if found else None

    result: dict[str, Any] = {
        "script": "scripts/video_e2e.py",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": m["device"], "device_name": m["device_name"], "half": m["half"],
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model(), "versions": versions(av),
        "scale": args.scale, "weights": args.weights, "overrides": args.override, "batch_size": batch,
        "frames": args.frames, "fps": args.fps, "seed": args.seed,
        "input": {"path": str(clip), "width": args.width, "height": args.height, "codec": "h264",
                  "pix_fmt": "yuv420p", "crf": CLIP_CRF, "made_s": None if made is None else round(made, 2)},
        "output": {"width": size[1], "height": size[0], "is_4k": (size[1], size[0]) == (3840, 2160)},
        "encoder": {"codec": codec, "options": video_options(codec, opts.crf), "pix_fmt": "yuv420p",
                    "threads": setting("threads"), "sliced_threads": setting("sliced_threads"),
                    "x264_settings": settings},
        "stages": stages,
        "ratios": {"command_vs_floor": round(cmd_fps / floor_fps, 3),
                   "pipeline_vs_floor": round(pipe_fps / floor_fps, 3),
                   "pipeline_vs_model": round(pipe_fps / model_fps, 3),
                   "command_vs_model": round(cmd_fps / model_fps, 3)},
        "claim": {"text": "Decoding, inference and encoding run in three threads joined by bounded queues, so on a "
                          "GPU a video runs at close to model speed (docs/deployment.md)",
                  "pipeline_vs_model": round(pipe_fps / model_fps, 3),
                  "bound_by": "model" if model_fps <= floor_fps else "decode+encode",
                  "overlap": round(pipe_fps / min(model_fps, floor_fps), 3),
                  "holds": pipe_fps >= CLAIM_RATIO * model_fps, "threshold": CLAIM_RATIO},
        "verify": verify,
        "commands": {"script": shlex.join([sys.executable, *sys.argv]), "upscale": shlex.join(cmd)},
        "work": str(args.work),
    }
    if "floor_slice_threads" in stages:
        result["ratios"]["floor_slice_threads_vs_floor"] = round(stages["floor_slice_threads"]["fps"] / floor_fps, 3)
    print(table(result), flush=True)
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    if not args.keep:
        for p in (out, floor_out, inproc_out):
            p.unlink(missing_ok=True)
    if not verify["ok"]:
        bad = ", ".join(k for k, ok in verify["checks"].items() if not ok)
        raise VideoE2EError(f"the upscaled video failed its checks ({bad}): {verify['frames_out']} of "
                            f"{verify['frames_in']} frames, {verify['width']}x{verify['height']}, "
                            f"PSNR {verify['psnr_shrunk_vs_input_db']} dB")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except VideoE2EError as e:
        fail(str(e))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a library's own error (a full disk, FFmpeg): one line, the class named
        from rt4ksr.core.errors import UserError

        if isinstance(e, UserError | OSError) or type(e).__module__.startswith("av."):
            fail(" ".join(str(e).split()) or type(e).__name__)
        raise


if __name__ == "__main__":
    sys.exit(main())
