"""``python -m rt4ksr.make_lr hr_dir=DIR out_dir=DIR scale=3``: MATLAB-identical LR images for an HR folder."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rt4ksr.config import CONFIG_DIR
from rt4ksr.data.lr_files import make_lr_folder
from rt4ksr.errors import PartialFailure, user_command


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="make_lr")
@user_command
def main(cfg: DictConfig) -> None:
    errors = make_lr_folder(cfg.hr_dir, cfg.out_dir, cfg.scale, cfg.workers, cfg.overwrite, cfg.progress)
    print(f"LR x{cfg.scale} images in {cfg.out_dir}")
    if errors:
        raise PartialFailure("image(s)", errors)


if __name__ == "__main__":
    main()
