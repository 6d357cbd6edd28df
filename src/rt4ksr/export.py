"""``python -m rt4ksr.export ckpt_path=... format=onnx|torchscript|safetensors``: the deploy-form model as a file."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, ListConfig, OmegaConf

from rt4ksr.config import CONFIG_DIR
from rt4ksr.deploy.exporters import FORMATS, export, static_shape
from rt4ksr.deploy.inference import build_model
from rt4ksr.errors import ConfigValueError, user_command


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
@user_command
def main(cfg: DictConfig) -> None:
    if cfg.format not in FORMATS:
        raise ConfigValueError(f"format must be one of {', '.join(FORMATS)}, got {cfg.format!r}")
    value = cfg.input_size
    size = static_shape(cfg.format, OmegaConf.to_container(value) if isinstance(value, ListConfig) else value,
                        cfg.batch_size)
    model = build_model(cfg.model, cfg.ckpt_path)
    static = f"_{size[0]}x{size[1]}" if size else ""
    out = cfg.output or Path(to_absolute_path(cfg.ckpt_path)).with_suffix("").as_posix() + static + (
        "_fp16" if cfg.fp16 else "") + FORMATS[cfg.format]
    path = export(model, cfg.format, Path(to_absolute_path(out)), cfg.fp16, input_size=size,
                  batch_size=cfg.batch_size)
    shape = f", static input {cfg.batch_size}x3x{size[0]}x{size[1]}" if size else ""
    print(f"exported {cfg.format}{' fp16' if cfg.fp16 else ''}{shape}: {path}")


if __name__ == "__main__":
    main()
