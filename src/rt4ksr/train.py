"""``python -m rt4ksr.train model=rt4ksr_x2 [experiment=...] [overrides]``: train, fuse, validate, time, save."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rt4ksr.config import CONFIG_DIR
from rt4ksr.training.run import train


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except ImportError:
        pass
    return metrics.get("val_psnr")


if __name__ == "__main__":
    main()
