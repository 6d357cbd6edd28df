"""``rt4ksr kernel-sweep``: find the fastest options of the fused Triton kernels for this GPU.

    rt4ksr kernel-sweep weights=official-x2 fuse=[1,2,3,5] block_p=[64,128] row_stores=[true,false] json=sweep.json

Then ``rt4ksr benchmark kernel_options.fuse=F kernel_options.block_p=B ...`` uses them.
"""

from __future__ import annotations

import copy
import os

import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.core.config import int_list
from rt4ksr.core.errors import ConfigValueError
from rt4ksr.core.files import write_json
from rt4ksr.core.scenario import uhd_input
from rt4ksr.inference.loading import load_model
from rt4ksr.kernels.network import supports
from rt4ksr.measure.kernel_sweep import fastest, format_sweep, sweep

INTERPRETER_SIZE = (12, 18)  # Triton's interpreter runs Python: a small input checks the sweep itself


@hydra_command("kernel_sweep")
def main(cfg: DictConfig) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ConfigValueError("no GPU here: set TRITON_INTERPRET=1 to check the sweep on Triton's interpreter")
    deploy = copy.deepcopy(load_model(cfg).model).to(device)
    if (reason := supports(deploy)) is not None:
        raise ConfigValueError(f"the kernels cannot run this model: {reason}")
    size = tuple(int_list("size", cfg.size, 2)) if cfg.size is not None else (
        uhd_input(deploy.scale) if device.type == "cuda" else INTERPRETER_SIZE)
    rows = sweep(deploy, size, int_list("fuse", cfg.fuse), int_list("block_p", cfg.block_p),
                 tuple(int_list("region", cfg.region, 2)), cfg.repeats,
                 row_stores=tuple(bool(r) for r in cfg.row_stores))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (Triton interpreter)"
    print(f"x{deploy.scale}, input {size[1]}x{size[0]}, batch 1, {name}")
    print(format_sweep(rows))
    best = fastest(rows)
    if best:
        print(f"fastest: fuse={best['fuse']} block_p={best['block_p']} row_stores={best['row_stores']} "
              f"({best['fps']:.0f} FPS)")
    if cfg.json:
        write_json(to_absolute_path(cfg.json), {"device": name, "scale": deploy.scale, "size": list(size),
                                                "rows": rows, "best": best})


if __name__ == "__main__":
    main()
