"""``rt4ksr sweep-report multirun_dir=...``: the table and figure of a multirun, with every design re-timed fairly.

Experiments such as ``experiment=ablation_x2`` write it themselves when their last run ends; this command
writes it again, for example on another machine or after a search was stopped.
"""

from __future__ import annotations

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.measure.multirun import write_report


@hydra_command("sweep_report")
def main(cfg: DictConfig) -> None:
    out = to_absolute_path(cfg.out) if cfg.out else None
    md, png = write_report(to_absolute_path(str(cfg.multirun_dir)), out, cfg.device, cfg.rounds, cfg.wandb_group,
                           cfg.compile)
    print(f"sweep report: {md}, {png}")


if __name__ == "__main__":
    main()
