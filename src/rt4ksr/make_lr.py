"""``python -m rt4ksr.make_lr hr_dir=DIR out_dir=DIR scale=3``: MATLAB-identical LR images for an HR folder."""

from __future__ import annotations

from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.core.errors import PartialFailure
from rt4ksr.data.lr_files import make_lr_folder


@hydra_command("make_lr")
def main(cfg: DictConfig) -> None:
    errors = make_lr_folder(cfg.hr_dir, cfg.out_dir, cfg.scale, cfg.workers, cfg.overwrite, cfg.progress)
    print(f"LR x{cfg.scale} images in {cfg.out_dir}")
    if errors:
        raise PartialFailure("image(s)", errors)


if __name__ == "__main__":
    main()
