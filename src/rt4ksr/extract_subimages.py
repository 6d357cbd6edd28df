"""``python -m rt4ksr.extract_subimages input_dir=DIR output_dir=DIR``: cut large HR images into sub-images."""

from __future__ import annotations

from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.core.errors import PartialFailure
from rt4ksr.data.subimages import extract_subimages


@hydra_command("extract_subimages")
def main(cfg: DictConfig) -> None:
    errors = extract_subimages(cfg.input_dir, cfg.output_dir, cfg.crop_size, cfg.step, cfg.thresh_size,
                               cfg.workers, progress=cfg.progress)
    print(f"sub-images in {cfg.output_dir}")
    if errors:
        raise PartialFailure("image(s)", errors)


if __name__ == "__main__":
    main()
