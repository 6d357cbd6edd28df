"""``python -m rt4ksr.export [weights=NAME | ckpt_path=FILE] format=onnx|torchscript|safetensors``: the deploy-form
model as a file (the zoo's default for the scale when no weights are given)."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, ListConfig, OmegaConf

from rt4ksr.command import hydra_command
from rt4ksr.core.config import bool_option, choice_option
from rt4ksr.core.files import check_writable
from rt4ksr.inference.exporters import FORMATS, export, static_shape
from rt4ksr.inference.loading import load_model


@hydra_command("export")
def main(cfg: DictConfig) -> None:
    choice_option("format", cfg.format, FORMATS)
    value = cfg.input_size
    size = static_shape(cfg.format, OmegaConf.to_container(value) if isinstance(value, ListConfig) else value,
                        cfg.batch_size)
    fp16 = bool_option("fp16", cfg.fp16)
    loaded = load_model(cfg, default_scale=cfg.model.scale)
    static = f"_{size[0]}x{size[1]}" if size else ""
    name = f"{Path(str(loaded.source)).stem}{static}{'_fp16' if fp16 else ''}{FORMATS[cfg.format]}"
    out = Path(to_absolute_path(str(cfg.output))) if cfg.output else Path.cwd() / name
    if out.is_dir():
        out = out / name
    check_writable(out.parent)
    path = export(loaded.model, cfg.format, out, fp16, input_size=size, batch_size=cfg.batch_size)
    shape = f", static input {cfg.batch_size}x3x{size[0]}x{size[1]}" if size else ""
    print(f"exported {cfg.format}{' fp16' if fp16 else ''}{shape}: {path}")


if __name__ == "__main__":
    main()
