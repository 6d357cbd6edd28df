"""Tuning the fused Triton kernels for one card: every option set of kernels v1 (one program per ``block_p``
pixels, ``fuse`` layers per launch) and v2 (persistent programs over 2-D tiles) is checked against the eager
deploy form and timed at batch 1 in a CUDA graph, in one process; ``rt4ksr kernel-sweep``
(``rt4ksr.kernel_sweep``) runs it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rt4ksr.inference.timing import measure_ms, summarize_ms, timing_input
from rt4ksr.inference.upscaler import cuda_graphed
from rt4ksr.kernels.network import TritonRTSRN, describe


def overrides(options: dict[str, Any]) -> str:
    """The option set as command-line overrides of ``rt4ksr benchmark`` and ``rt4ksr upscale kernels=true``."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if v is None:
            return "null"
        if isinstance(v, tuple | list):
            return "[" + ",".join(map(str, v)) + "]"
        return str(v)

    return " ".join(f"kernel_options.{k}={value(v)}" for k, v in options.items())


@torch.no_grad()
def sweep(deploy: nn.Module, size: tuple[int, int], options: list[dict[str, Any]], repeats: int = 50,
          tol: float = 2e-2, on_row: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """One row per option set: max abs difference from eager (fp16 on CUDA, fp32 elsewhere), ms, FPS.
    ``on_row`` gets the rows so far after each one (a sweep cut short by a time limit keeps what it measured)."""
    cuda = next(deploy.parameters()).is_cuda
    dtype = torch.float16 if cuda else torch.float32
    m = deploy.eval().to(dtype)
    device = next(m.parameters()).device
    x = timing_input(1, size, device, dtype)
    ref = m(x).float()
    rows = []
    for opts in options:
        row: dict[str, Any] = {"kernels": "v2" if opts.get("persistent") else "v1", "name": describe(opts),
                               "options": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()},
                               "overrides": overrides(opts)}
        try:
            fused = TritonRTSRN(m, dtype=dtype, **opts)
            row["max_abs_diff"] = (fused(x).float() - ref).abs().max().item()
            run = cuda_graphed(fused, x)
            times = measure_ms(functools.partial(run, x), device, 3 if cuda else 0, repeats if cuda else 1)
            row.update(summarize_ms(times))
            row["ok"] = row["max_abs_diff"] <= tol
        except (ValueError, RuntimeError) as e:  # an option set the card cannot compile (shared memory, ...)
            row.update(ok=False, error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        rows.append(row)
        if on_row is not None:
            on_row(rows)
    return rows


def format_sweep(rows: list[dict[str, Any]]) -> str:
    width = max([len(r["name"]) for r in rows] + [7])
    lines = [f"{'options':<{width}} {'max|diff|':>10} {'ms':>8} {'FPS':>8}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['name']:<{width}}  failed: {r['error']}")
        else:
            flag = "" if r["ok"] else "  (too far from eager)"
            lines.append(f"{r['name']:<{width}} {r['max_abs_diff']:>10.3g} {r['ms']:>8.3f} {r['fps']:>8.0f}{flag}")
    return "\n".join(lines)


def fastest(rows: list[dict[str, Any]], family: str | None = None) -> dict[str, Any] | None:
    """The fastest option set (of ``family``, v1 or v2, when given) whose output is close enough to eager."""
    good = [r for r in rows if r.get("ok") and family in (None, r["kernels"])]
    return min(good, key=lambda r: r["ms"]) if good else None
