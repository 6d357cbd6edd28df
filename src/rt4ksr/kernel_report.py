"""``rt4ksr kernel-report``: compile the fused Triton kernels for a GPU this machine need not have, and report
each launch's registers, spills, shared memory and occupancy there.

    rt4ksr kernel-report weights=official-x2 'kernels=[v1,v2]' 'fuse=[1,2]' 'tile=[[8,16],[1,64]]' json=report.json
"""

from __future__ import annotations

import os

import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.core.config import choice_option
from rt4ksr.core.errors import ConfigValueError
from rt4ksr.core.extras import require
from rt4ksr.core.files import write_json
from rt4ksr.core.scenario import uhd_input
from rt4ksr.inference.loading import load_model
from rt4ksr.kernel_sweep import option_sets
from rt4ksr.kernels.aot import SM_LIMITS, format_report, report

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


@hydra_command("kernel_report")
def main(cfg: DictConfig) -> None:
    require("triton", "kernels", "the kernel report")
    choice_option("dtype", cfg.dtype, DTYPES)
    choice_option("arch (sm_XX)", cfg.arch, list(SM_LIMITS))
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise ConfigValueError("compiling for a GPU needs TRITON_INTERPRET unset (the interpreter replaces the JIT)")
    options = option_sets(cfg, programs_per_sm=[4])  # the grid size does not change the compiled code
    deploy = load_model(cfg).model.to(DTYPES[cfg.dtype])
    h, w = uhd_input(deploy.scale)
    print(f"x{deploy.scale}, input {w}x{h}, {cfg.dtype}, compiled for sm_{cfg.arch}")
    rows = report(deploy, options, cfg.arch)
    print(format_report(rows))
    if cfg.json:
        write_json(to_absolute_path(cfg.json), {"arch": cfg.arch, "scale": deploy.scale, "rows": rows})


if __name__ == "__main__":
    main()
