"""What an upscale run does, writes and where: its options (how the model runs, ``UpscaleOptions``, and what is
written, ``OutputOptions``; both checked before a model loads), the output names, and the checks of the input and
output paths."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rt4ksr.core.config import bool_option, int_option, number_option, resolve_device
from rt4ksr.core.errors import ConfigValueError, InputNotFoundError, UnsupportedInputError
from rt4ksr.core.files import check_writable
from rt4ksr.data.io import IMAGE_EXTENSIONS
from rt4ksr.inference.upscaler import check_backend, check_tiling
from rt4ksr.kernels.network import kernel_options as checked_kernel_options

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts")


# output codec by container, best first; PyAV's bundled FFmpeg has all of these
VIDEO_CODECS = {".webm": ("libvpx-vp9",), ".avi": ("mpeg4",)}


DEFAULT_CODECS = ("libx264", "mpeg4")


# the crf each encoder takes: x264/x265 0-51, VP9 0-63; mpeg4 has no crf and gets the quantiser crf/6 (1-31)
CRF_MAX = {"libx264": 51, "libx265": 51, "libvpx-vp9": 63, "mpeg4": 63}


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
class UpscaleOptions:
    """Every option of an upscale run, checked (type and range) when made, before a model is loaded: how the model
    runs (``device``, ``half``, ``compile``, ``kernels`` and ``kernel_options``, ``backend``, ``tile`` and
    ``tile_pad``, see ``Upscaler``), ``batch_size`` (video frames per forward pass), ``progress`` and the
    ``output`` options. ``device`` becomes a ``torch.device`` (``auto``: CUDA when present); ``half=true`` on the
    CPU becomes false, with a warning, since the CPU runs fp32. ``from_config`` reads them from the command's
    config; ``rt4ksr.inference.upscaling.build_upscaler`` makes the ``Upscaler`` they describe."""

    output: OutputOptions = field(default_factory=OutputOptions)
    device: torch.device | str = "auto"
    half: bool | None = None
    compile: bool = False
    kernels: bool = False
    kernel_options: Mapping[str, Any] = field(default_factory=dict)
    backend: str = "auto"
    tile: int | None = None
    tile_pad: int = 16
    batch_size: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        self.tile, self.tile_pad = check_tiling(self.tile, self.tile_pad)
        self.batch_size = int_option("batch_size", self.batch_size, 1)
        self.half = bool_option("half", self.half, none=True)
        self.compile = bool_option("compile", self.compile)
        self.kernels = bool_option("kernels", self.kernels)
        self.progress = bool_option("progress", self.progress)
        self.backend = check_backend(self.backend)
        self.kernel_options = checked_kernel_options(self.kernel_options)
        self.device = resolve_device(str(self.device) if isinstance(self.device, torch.device) else self.device)
        if self.half and self.device.type == "cpu":
            log.warning("half=true applies on CUDA: the CPU runs fp32 (fp16 there is slower and less exact)")
            self.half = False

    @classmethod
    def from_config(cls, cfg: Any) -> UpscaleOptions:
        """The options of ``rt4ksr upscale``'s config (or any mapping with its keys), checked: the one place the
        command's run options are read."""
        output = OutputOptions(outscale=cfg["outscale"], suffix=cfg["suffix"], ext=cfg["ext"], alpha=cfg["alpha"],
                               overwrite=cfg["overwrite"], quality=cfg["quality"], crf=cfg["crf"])
        return cls(output=output, device=cfg["device"], half=cfg["half"], compile=cfg["compile"],
                   kernels=cfg["kernels"], kernel_options=cfg["kernel_options"], backend=cfg["backend"],
                   tile=cfg["tile"], tile_pad=cfg["tile_pad"], batch_size=cfg["batch_size"], progress=cfg["progress"])


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


def image_format(suffix: str) -> str:
    suffix = suffix.lower()
    return _SAME_FORMAT.get(suffix, suffix)


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (links and case-insensitive file systems included)."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


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
        if not is_video and wanted is not None and image_format(wanted) != image_format(target.suffix):
            raise ConfigValueError(f"ext={opts.ext} contradicts output {target.name}: the output's suffix picks the "
                                   f"format; drop ext, or name the output {target.stem}{wanted}")
    if is_video:
        opts.check_video(target.suffix)
    if same_file(target, src):
        raise ConfigValueError(f"the output {target} would overwrite the input: give another output or a suffix")
    return target
