"""Tuning the fused Triton kernels for one card: every (fuse, block_p, row_stores) is checked against the eager
deploy form and timed at batch 1 in a CUDA graph; ``rt4ksr kernel-sweep`` (``rt4ksr.kernel_sweep``) runs it."""

from __future__ import annotations

import functools
import itertools
from typing import Any

import torch
from torch import nn

from rt4ksr.inference.timing import measure_ms, summarize_ms, timing_input
from rt4ksr.inference.upscaler import cuda_graphed
from rt4ksr.kernels.network import TritonRTSRN


@torch.no_grad()
def sweep(deploy: nn.Module, size: tuple[int, int], fuses: list[int], block_ps: list[int],
          region: tuple[int, int] = (32, 32), repeats: int = 50, tol: float = 2e-2,
          row_stores: tuple[bool, ...] = (True,)) -> list[dict[str, Any]]:
    """One row per option set: max abs difference from eager (fp16 on CUDA, fp32 elsewhere), ms, FPS."""
    cuda = next(deploy.parameters()).is_cuda
    dtype = torch.float16 if cuda else torch.float32
    m = deploy.eval().to(dtype)
    device = next(m.parameters()).device
    x = timing_input(1, size, device, dtype)
    ref = m(x).float()
    rows = []
    for fuse, block_p, runs in itertools.product(fuses, block_ps, row_stores):
        row: dict[str, Any] = {"fuse": fuse, "block_p": block_p, "row_stores": runs, "region": list(region)}
        try:
            fused = TritonRTSRN(m, dtype=dtype, block_p=block_p, fuse=fuse, region=region, row_stores=runs)
            row["max_abs_diff"] = (fused(x).float() - ref).abs().max().item()
            run = cuda_graphed(fused, x)
            times = measure_ms(functools.partial(run, x), device, 3 if cuda else 0, repeats if cuda else 1)
            row.update(summarize_ms(times))
            row["ok"] = row["max_abs_diff"] <= tol
        except (ValueError, RuntimeError) as e:  # an option set the card cannot compile (shared memory, ...)
            row.update(ok=False, error=str(e).splitlines()[0])
        rows.append(row)
    return rows


def format_sweep(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'fuse':>4} {'block_p':>7} {'rows':>4} {'max|diff|':>10} {'ms':>8} {'FPS':>8}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['fuse']:>4} {r['block_p']:>7} {r['row_stores']:>4}  failed: {r['error']}")
        else:
            flag = "" if r["ok"] else "  (too far from eager)"
            lines.append(f"{r['fuse']:>4} {r['block_p']:>7} {r['row_stores']:>4} {r['max_abs_diff']:>10.3g} "
                         f"{r['ms']:>8.3f} {r['fps']:>8.0f}{flag}")
    return "\n".join(lines)


def fastest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fastest option set whose output is close enough to eager."""
    good = [r for r in rows if r.get("ok")]
    return min(good, key=lambda r: r["ms"]) if good else None
