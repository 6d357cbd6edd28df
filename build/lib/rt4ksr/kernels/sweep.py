"""Tune the fused Triton kernels for one card: every (fuse, block_p, row_stores) is checked against the eager
deploy form and timed at batch 1 in a CUDA graph, on the 4K scenario's input; the fastest correct one is
written to JSON.

    python -m rt4ksr.kernels.sweep --ckpt ../shared/checkpoints/official/rt4ksr_x2.pth \
        --fuse 1 2 3 5 --block-p 64 128 --row-stores 1 0 --json sweep_x2.json

Then: ``python -m rt4ksr.benchmark kernel_options.fuse=F kernel_options.block_p=B ...``. Without a GPU it runs on
Triton's interpreter (``TRITON_INTERPRET=1``) at ``--size``, which checks the sweep itself, not speed.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rt4ksr.deploy.inference import cuda_graphed
from rt4ksr.deploy.timing import measure_ms, uhd_input
from rt4ksr.kernels import TritonRTSRN, supports
from rt4ksr.models import RTSRN, load_official, reparameterize


@torch.no_grad()
def sweep(deploy: nn.Module, size: tuple[int, int], fuses: list[int], block_ps: list[int],
          region: tuple[int, int] = (32, 32), repeats: int = 50, tol: float = 2e-2,
          row_stores: tuple[bool, ...] = (True,)) -> list[dict[str, Any]]:
    """One row per option set: max abs difference from eager (fp16 on CUDA, fp32 elsewhere), ms, FPS."""
    cuda = next(deploy.parameters()).is_cuda
    dtype = torch.float16 if cuda else torch.float32
    m = deploy.eval().to(dtype)
    device = next(m.parameters()).device
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    ref = m(x).float()
    rows = []
    for fuse, block_p, runs in itertools.product(fuses, block_ps, row_stores):
        row: dict[str, Any] = {"fuse": fuse, "block_p": block_p, "row_stores": runs, "region": list(region)}
        try:
            fused = TritonRTSRN(m, dtype=dtype, block_p=block_p, fuse=fuse, region=region, row_stores=runs)
            row["max_abs_diff"] = (fused(x).float() - ref).abs().max().item()
            run = cuda_graphed(fused, x)
            times = measure_ms(functools.partial(run, x), device, 3 if cuda else 0, repeats if cuda else 1)
            row.update(ms=statistics.median(times), spread_ms=max(times) - min(times))
            row["fps"] = 1000.0 / row["ms"]
            row["ok"] = row["max_abs_diff"] <= tol
        except (ValueError, RuntimeError) as e:  # an option set the card cannot compile (shared memory, ...)
            row.update(ok=False, error=str(e).splitlines()[0])
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", help="official-format weights; none: a random released-design network")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--global-skip", default="none", help="for the random network: none | nearest | bicubic")
    ap.add_argument("--fuse", type=int, nargs="+", default=[1, 2, 3, 5])
    ap.add_argument("--block-p", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--region", type=int, nargs=2, default=[32, 32])
    ap.add_argument("--row-stores", type=int, nargs="+", default=[1], help="1: output in row runs, 0: scattered")
    ap.add_argument("--size", type=int, nargs=2, help="LR (H, W); default: the 4K scenario on CUDA, 12 x 18 else")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("no GPU here: set TRITON_INTERPRET=1 to check the sweep on Triton's interpreter")
    if args.ckpt:
        model = load_official(args.ckpt)
    else:
        model = RTSRN(scale=args.scale, global_skip=args.global_skip)
    deploy = reparameterize(model).to(device)
    if (reason := supports(deploy)) is not None:
        raise SystemExit(f"the kernels cannot run this model: {reason}")
    size = tuple(args.size) if args.size else (uhd_input(deploy.scale) if device.type == "cuda" else (12, 18))
    rows = sweep(deploy, size, args.fuse, args.block_p, tuple(args.region), args.repeats,
                 row_stores=tuple(bool(r) for r in args.row_stores))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (Triton interpreter)"
    print(f"x{deploy.scale}, input {size[1]}x{size[0]}, batch 1, {name}")
    print(f"{'fuse':>4} {'block_p':>7} {'rows':>4} {'max|diff|':>10} {'ms':>8} {'FPS':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['fuse']:>4} {r['block_p']:>7} {r['row_stores']:>4}  failed: {r['error']}")
        else:
            flag = "" if r["ok"] else "  (too far from eager)"
            print(f"{r['fuse']:>4} {r['block_p']:>7} {r['row_stores']:>4} {r['max_abs_diff']:>10.3g} {r['ms']:>8.3f} "
                  f"{r['fps']:>8.0f}{flag}")
    good = [r for r in rows if r["ok"]]
    best = min(good, key=lambda r: r["ms"]) if good else None
    if best:
        print(f"fastest: fuse={best['fuse']} block_p={best['block_p']} row_stores={best['row_stores']} "
              f"({best['fps']:.0f} FPS)")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "scale": deploy.scale, "size": list(size), "rows": rows,
                                         "best": best}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
