"""Tuning the fused Triton kernels for one card: every option set of kernels v1 (one program per ``block_p``
pixels, ``fuse`` layers per launch) and v2 (persistent programs over 2-D tiles) is checked against the eager
deploy form, then all are timed at batch 1 in CUDA graphs, in one process and the same interleaved rounds
(``rt4ksr.core.stats.interleaved``: the gaps between option sets are smaller than the card's drift between
separate timings); ``rt4ksr kernel-sweep`` (``rt4ksr.kernel_sweep``) runs it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rt4ksr.core.stats import Stats, interleaved
from rt4ksr.inference.timing import measure_for, timing_batch
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
    """One row per option set: max abs difference from eager (fp16 on CUDA, fp32 elsewhere), then the median,
    quartiles and FPS of ``repeats`` interleaved rounds (one on the CPU's interpreter). ``on_row`` gets the rows
    so far after each check and after each round (a sweep cut short by a time limit keeps what it measured)."""
    cuda = next(deploy.parameters()).is_cuda
    dtype = torch.float16 if cuda else torch.float32
    m = deploy.eval().to(dtype)
    device = next(m.parameters()).device
    x = timing_batch(1, size, device, dtype)
    ref = m(x).float()
    rows: list[dict[str, Any]] = []
    runs: dict[str, Callable[[], object]] = {}
    for i, opts in enumerate(options):
        row: dict[str, Any] = {"kernels": "v2" if opts.get("persistent") else "v1", "name": describe(opts),
                               "options": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()},
                               "overrides": overrides(opts)}
        try:
            fused = TritonRTSRN(m, dtype=dtype, **opts)
            row["max_abs_diff"] = (fused(x).float() - ref).abs().max().item()
            runs[str(i)] = functools.partial(cuda_graphed(fused, x), x)
            row["ok"] = row["max_abs_diff"] <= tol
        except (ValueError, RuntimeError) as e:  # an option set the card cannot compile (shared memory, ...)
            row.update(ok=False, error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        rows.append(row)
        if on_row is not None:
            on_row(rows)

    def timed_so_far(_round: int, values: dict[str, list[float]]) -> None:
        for key, v in values.items():
            rows[int(key)].update(Stats.of(v).to_row())
        if on_row is not None:
            on_row(rows)

    _, failed = interleaved(runs, repeats if cuda else 1, 3 if cuda else 0, measure_for(device),
                            on_round=timed_so_far)
    for key, reason in failed.items():
        rows[int(key)].update(ok=False, error=reason)
    return rows


def format_sweep(rows: list[dict[str, Any]]) -> str:
    """The rows as aligned text: the difference from eager, the median ms and its inter-quartile range, FPS."""
    width = max([len(r["name"]) for r in rows] + [7])
    lines = [f"{'options':<{width}} {'max|diff|':>10} {'ms':>8} {'IQR':>7} {'FPS':>8}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['name']:<{width}}  failed: {r['error']}")
        elif "ms" not in r:
            lines.append(f"{r['name']:<{width}} {r['max_abs_diff']:>10.3g}  not timed")
        else:
            flag = "" if r["ok"] else "  (too far from eager)"
            lines.append(f"{r['name']:<{width}} {r['max_abs_diff']:>10.3g} {r['ms']:>8.3f} {r['iqr_ms']:>7.3f} "
                         f"{r['fps']:>8.0f}{flag}")
    return "\n".join(lines)


def fastest(rows: list[dict[str, Any]], family: str | None = None) -> dict[str, Any] | None:
    """The fastest timed option set (of ``family``, v1 or v2, when given) whose output is close enough to eager."""
    good = [r for r in rows if r.get("ok") and "ms" in r and family in (None, r["kernels"])]
    return min(good, key=lambda r: r["ms"]) if good else None
