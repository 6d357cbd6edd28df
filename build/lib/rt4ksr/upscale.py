"""``python -m rt4ksr.upscale ckpt_path=... input=PATH output=PATH``: upscale an image, a folder or a video."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from rt4ksr.cli import user_errors
from rt4ksr.config import CONFIG_DIR, resolve_device
from rt4ksr.deploy.inference import Upscaler, build_model
from rt4ksr.deploy.upscaling import upscale_path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="upscale")
def main(cfg: DictConfig) -> None:
    device = resolve_device(cfg.device)
    model = build_model(cfg.model, cfg.ckpt_path)
    up = Upscaler(model, device, half=cfg.half, compile=cfg.compile, tile=cfg.tile, overlap=cfg.tile_overlap,
                  kernels=cfg.kernels, kernel_options=OmegaConf.to_container(cfg.kernel_options))
    with user_errors():
        errors = upscale_path(up, Path(to_absolute_path(cfg.input)), Path(to_absolute_path(cfg.output)),
                              cfg.overwrite, cfg.batch_size, cfg.progress)
    if errors:
        print(f"{len(errors)} file(s) could not be read:\n" + "\n".join(errors))


if __name__ == "__main__":
    main()
