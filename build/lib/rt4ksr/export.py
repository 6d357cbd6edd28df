"""``python -m rt4ksr.export ckpt_path=... format=onnx|torchscript|safetensors``: the deploy-form model as a file."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from rt4ksr.cli import user_errors
from rt4ksr.config import CONFIG_DIR
from rt4ksr.deploy.exporters import FORMATS, export
from rt4ksr.deploy.inference import build_model


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    model = build_model(cfg.model, cfg.ckpt_path)
    out = cfg.output or Path(to_absolute_path(cfg.ckpt_path)).with_suffix("").as_posix() + (
        "_fp16" if cfg.fp16 else "") + FORMATS[cfg.format]
    with user_errors():
        path = export(model, cfg.format, Path(to_absolute_path(out)), cfg.fp16)
    print(f"exported {cfg.format}{' fp16' if cfg.fp16 else ''}: {path}")


if __name__ == "__main__":
    main()
