"""``rt4ksr upscale input=PATH output=PATH [weights=NAME | ckpt_path=FILE]``: upscale an image, a folder or a video.

With no weights given, the zoo's default model for the scale does it (x2; ``-s 3`` or ``model=rt4ksr_x3``: x3).
Real-ESRGAN's flags (``-i``, ``-o``, ``-n``, ``-s``, ``-t``, ``--tile_pad``, ``--fp32``, ``--suffix``, ``--ext``,
``--model_path``, ``--alpha_upsampler``, ``-g``) are accepted beside the Hydra overrides.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.core.config import named_on_command_line
from rt4ksr.core.errors import PartialFailure
from rt4ksr.inference.loading import load_model
from rt4ksr.inference.upscaling import VIDEO_EXTENSIONS, UpscaleOptions, build_upscaler, check_paths, upscale_path
from rt4ksr.models.pretrained import scale_for

log = logging.getLogger(__name__)

# Real-ESRGAN's inference_realesrgan.py flags -> this command's options
FLAGS = {"-i": "input", "--input": "input", "-o": "output", "--output": "output", "-s": "outscale",
         "--outscale": "outscale", "-t": "tile", "--tile": "tile", "--tile_pad": "tile_pad", "--suffix": "suffix",
         "--ext": "ext", "--model_path": "ckpt_path", "-n": "weights", "--model_name": "weights", "-g": "device",
         "--gpu-id": "device", "--alpha_upsampler": "alpha"}
SWITCHES = {"--fp32": "half=false", "--half": "half=true"}
# Real-ESRGAN's flags that have no counterpart here, and what to do instead
UNSUPPORTED = {
    "--face_enhance": "face enhancement (GFPGAN) is not part of rt4ksr: run GFPGAN on the output separately",
    "-dn": "rt4ksr has no denoise strength: train or pick weights for the degradation you need",
    "--denoise_strength": "rt4ksr has no denoise strength: train or pick weights for the degradation you need",
    "--pre_pad": "rt4ksr pads inside the model and tiles with tile_pad: drop --pre_pad",
}


def translate_flags(argv: list[str]) -> list[str]:
    """Real-ESRGAN-style flags as Hydra overrides; Hydra's own arguments pass through unchanged."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, value = arg.partition("=") if arg.startswith("-") else (arg, "", "")
        if flag in SWITCHES:
            out.append(SWITCHES[flag])
        elif flag in FLAGS:
            if not eq:
                if i + 1 >= len(argv):
                    raise SystemExit(f"error: {flag} needs a value")
                i += 1
                value = argv[i]
            key = FLAGS[flag]
            if key == "device":
                value = f"cuda:{value}"
            elif key == "alpha":
                value = {"realesrgan": "model"}.get(value, value)
            out.append(f"{key}={_quote(value)}")
        elif flag in UNSUPPORTED:
            raise SystemExit(f"error: {flag} is a Real-ESRGAN option rt4ksr does not have: {UNSUPPORTED[flag]}")
        else:
            out.append(arg)
        i += 1
    return out


def _quote(value: str) -> str:
    """A value as a Hydra override: quoted when it holds characters the override grammar would parse. Inside
    quotes, backslashes are literal except before a quote or at the end, where they are doubled (a Windows
    folder ``C:\\out\\``)."""
    if all(c.isalnum() or c in "/._-:~+" for c in value):
        return value
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body) + "'"


def default_scale(cfg: DictConfig, outscale: float | None) -> int:
    """The zoo scale to use when no weights are given: the model the command line named (``model=rt4ksr_x3``),
    else the one that serves ``outscale`` (``-s 3``: x3; ``-s 3.5``: x4, resized down), else x2."""
    if named_on_command_line("model") or outscale is None:
        return int(cfg.model.scale)
    return scale_for(outscale)


@hydra_command("upscale", flags=[*FLAGS, *SWITCHES])
def run(cfg: DictConfig) -> None:
    options = UpscaleOptions.from_config(cfg)  # every option checked before the model loads
    src, dst = Path(to_absolute_path(str(cfg.input))), Path(to_absolute_path(str(cfg.output)))
    check_paths(src, dst, options.output)
    loaded = load_model(cfg, default_scale=default_scale(cfg, options.output.outscale))
    up = build_upscaler(loaded, options, frames=src.suffix.lower() in VIDEO_EXTENSIONS)
    report = upscale_path(up, src, dst, options.output, options.batch_size, options.progress)
    print(report.summary())
    if report.failed:
        raise PartialFailure("file(s)", report.failed, written=len(report.written))


def main() -> None:
    sys.argv = [sys.argv[0], *translate_flags(sys.argv[1:])]
    run()


if __name__ == "__main__":
    main()
