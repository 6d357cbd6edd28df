"""``rt4ksr sweep-report MULTIRUN_DIR``: the table and figure of a multirun, with every design re-timed fairly.

Experiments such as ``experiment=ablation_x2`` write it themselves when their last run ends; this command
writes it again, for example on another machine or after a search was stopped.
"""

from __future__ import annotations

import argparse
import logging

from rt4ksr.errors import user_command
from rt4ksr.training.report import write_report


@user_command
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rt4ksr sweep-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun_dir", help="a multirun folder (logs/train/multiruns/<time>)")
    parser.add_argument("--out", default=None, help="where report.md/.png/.json go (default: the multirun folder)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N: where the speed is timed")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved timing rounds per model")
    parser.add_argument("--wandb-group", default=None, help="also log the report to this wandb group")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    md, png = write_report(args.multirun_dir, args.out, args.device, args.rounds, args.wandb_group)
    print(f"sweep report: {md}, {png}")


if __name__ == "__main__":
    main()
