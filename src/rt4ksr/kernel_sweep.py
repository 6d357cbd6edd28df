"""``rt4ksr kernel-sweep``: find the fastest options of the Triton kernels for this GPU, v1 and v2 in one process.

    rt4ksr kernel-sweep weights=official-x2 'kernels=[v1,v2]' 'tile=[[1,64],[8,16]]' 'stages=[1,2]' json=sweep.json

It prints the fastest option set as overrides: ``rt4ksr benchmark <overrides>`` and ``rt4ksr upscale
kernels=true <overrides>`` use them.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, ListConfig

from rt4ksr.command import hydra_command
from rt4ksr.core.config import bool_list, choice_list, int_list
from rt4ksr.core.errors import ConfigValueError
from rt4ksr.core.files import write_json
from rt4ksr.core.scenario import uhd_input
from rt4ksr.inference.loading import load_model
from rt4ksr.kernels.network import options_error, supports, variants
from rt4ksr.measure.kernel_sweep import fastest, format_sweep, sweep

INTERPRETER_SIZE = (12, 18)  # Triton's interpreter runs Python: a small input checks the sweep itself
FAMILIES = ("v1", "v2")


def _tiles(value: object) -> list[tuple[int, int]]:
    if not isinstance(value, list | ListConfig) or not value:
        raise ConfigValueError(f"tile must be a list of [rows, columns] pairs, e.g. tile=[[8,16],[1,64]], "
                               f"got {value!r}")
    return [tuple(int_list("tile", t, 2)) for t in value]  # type: ignore[misc]


def option_sets(cfg: DictConfig, programs_per_sm: list[int] | None = None) -> list[dict[str, Any]]:
    """The ``TritonRTSRN`` option sets a sweep or report config lists, each checked before anything loads."""
    families = choice_list("kernels", cfg.kernels, FAMILIES, "v1 and/or v2, e.g. kernels=[v1,v2]", single=True)
    num_warps = choice_list("num_warps", cfg.num_warps, (0, 1, 2, 4, 8, 16),
                            "0 (the kernels' choice), 1, 2, 4, 8 or 16")
    options = variants(families, int_list("fuse", cfg.fuse), int_list("block_p", cfg.block_p),
                       tuple(int_list("region", cfg.region, 2)), bool_list("row_stores", cfg.row_stores),
                       _tiles(cfg.tile), bool_list("keep_weights", cfg.keep_weights), int_list("stages", cfg.stages),
                       programs_per_sm or int_list("programs_per_sm", cfg.programs_per_sm), num_warps)
    for opts in options:
        if error := options_error(**opts):
            raise ConfigValueError(error)
    return options


@hydra_command("kernel_sweep")
def main(cfg: DictConfig) -> None:
    options = option_sets(cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ConfigValueError("no GPU here: set TRITON_INTERPRET=1 to check the sweep on Triton's interpreter")
    deploy = copy.deepcopy(load_model(cfg).model).to(device)
    if (reason := supports(deploy)) is not None:
        raise ConfigValueError(f"the kernels cannot run this model: {reason}")
    size = tuple(int_list("size", cfg.size, 2)) if cfg.size is not None else (
        uhd_input(deploy.scale) if device.type == "cuda" else INTERPRETER_SIZE)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (Triton interpreter)"
    print(f"x{deploy.scale}, input {size[1]}x{size[0]}, batch 1, {name}, {len(options)} option sets")
    head = {"device": name, "scale": deploy.scale, "size": list(size)}
    path = to_absolute_path(cfg.json) if cfg.json else None

    def partial(rows: list[dict[str, Any]]) -> None:
        if path:
            timed = max((r.get("rounds", 0) for r in rows), default=0)
            write_json(path, {**head, "rows": rows, "done": f"{len(rows)} of {len(options)} option sets checked, "
                                                             f"{timed} rounds timed"})

    rows = sweep(deploy, size, options, cfg.repeats, on_row=partial)
    print(format_sweep(rows))
    families = dict.fromkeys(r["kernels"] for r in rows)
    best = {f: fastest(rows, f) for f in families}
    for f, row in best.items():
        if row:
            print(f"fastest {f}: {row['name']} ({row['fps']:.0f} FPS): {row['overrides']}")
        else:
            print(f"fastest {f}: none of its option sets ran within tolerance")
    overall = fastest(rows)
    if path:
        write_json(path, {**head, "rows": rows, "best": overall, "best_per_family": best})


if __name__ == "__main__":
    main()
