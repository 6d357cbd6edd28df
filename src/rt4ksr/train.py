"""``python -m rt4ksr.train model=rt4ksr_x2 [experiment=...] [overrides]``: train, fuse, validate, time, save."""

from __future__ import annotations

from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.inference.cpu_memory import keep_freed_memory
from rt4ksr.training.run import train


@hydra_command("train")  # during the run itself, train() handles SIGTERM and Ctrl-C (StopOnSignal)
def main(cfg: DictConfig) -> float | None:
    keep_freed_memory()  # validation and timing on the CPU: reuse freed tensors
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
