"""The sweep report: one table and one figure for a multirun (an ablation, a block sweep, an Optuna search).

Each run's final state (``metrics.json``) gives the quality; the speed is measured again here, for every run's
deploy weights in one process, interleaved (A B C, B C A, ...: ``rt4ksr.core.stats.interleaved``), so that the
machine's drift and noise fall on all of them alike. A design whose median time is within the interquartile
range of the fastest design of its group shares that design's rank (see ``rank_with_ties``). Points are
labelled by the override values that differ between runs only, and the quality-speed Pareto front is drawn.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from rt4ksr.core.config import resolve_device, wandb_offline
from rt4ksr.core.errors import ConfigValueError, InputNotFoundError
from rt4ksr.core.extras import require
from rt4ksr.core.files import write_bytes, write_text
from rt4ksr.core.scenario import timing_size, uhd_input
from rt4ksr.core.stats import Stats, interleaved
from rt4ksr.inference.loading import load_file
from rt4ksr.inference.timing import deployment_setting, measure_for, timed_copy, timing_batch
from rt4ksr.models.profile import count_macs, count_params, count_traffic

log = logging.getLogger(__name__)

@dataclass
class Run:
    """One finished run of a multirun."""

    name: str
    overrides: dict[str, str]
    metrics: dict[str, Any]
    deploy_path: Path
    label: str = ""
    timing: dict[str, Any] = field(default_factory=dict)  # Stats.to_row() of its re-timing, height and width
    rank: str = ""
    seeds: list[Run] = field(default_factory=list)  # the runs of each seed, when this row is their mean
    compiled: dict[str, Any] = field(default_factory=dict)  # Stats.to_row() of the torch.compile re-timing

    @property
    def psnr(self) -> float | None:
        return self.metrics.get("val_psnr")


def collect(multirun_dir: Path) -> list[Run]:
    """Every run below ``multirun_dir`` that wrote ``metrics.json``, in job order."""
    runs = []
    for metrics_file in sorted(multirun_dir.rglob("metrics.json"), key=lambda p: _job_key(p.parent.name)):
        job = metrics_file.parent
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        pairs = dict(o.lstrip("+~").split("=", 1) if "=" in o else (o, "") for o in overrides or [])
        runs.append(Run(job.name, pairs, json.loads(metrics_file.read_text()), job / "deploy_final.pth"))
    for run, label in zip(runs, differing_labels([r.overrides for r in runs]), strict=True):
        run.label = label or run.name
    return runs


def group_seeds(runs: list[Run]) -> list[Run]:
    """One row per configuration when the runs differ by ``seed``: each set's PSNR and SSIM are the means over
    its seeds (``seeds`` keeps the runs; ``psnr_range`` their spread), and its deploy model is the first seed's
    (the seeds share the architecture, so one timing serves them all). Without seeds, the runs as they are."""
    if len({r.overrides.get("seed") for r in runs}) < 2:
        return runs
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault(tuple(sorted((k, v) for k, v in r.overrides.items() if k != "seed")), []).append(r)
    rows = []
    for members in groups.values():
        first = members[0]
        sets = sorted({s for m in members for s in m.metrics.get("test_sets", {})})
        test_sets = {}
        for name in sets:
            per = [m.metrics["test_sets"][name] for m in members if name in m.metrics.get("test_sets", {})]
            test_sets[name] = {k: sum(b[k] for b in per) / len(per) for k in ("psnr_y", "ssim_y")}
            test_sets[name]["psnr_range"] = [min(b["psnr_y"] for b in per), max(b["psnr_y"] for b in per)]
        psnrs = [m.psnr for m in members if m.psnr is not None]
        metrics = {**first.metrics, "test_sets": test_sets,
                   "val_psnr": sum(psnrs) / len(psnrs) if psnrs else None,
                   "psnr_range": [min(psnrs), max(psnrs)] if psnrs else None,
                   "global_step": sum(m.metrics.get("global_step") or 0 for m in members) / len(members)}
        overrides = {k: v for k, v in first.overrides.items() if k != "seed"}
        rows.append(Run(",".join(m.name for m in members), overrides, metrics, first.deploy_path, seeds=members))
    for row, label in zip(rows, differing_labels([r.overrides for r in rows]), strict=True):
        row.label = label or row.name
    return rows


def _job_key(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (10**9, name)


def differing_labels(overrides: list[dict[str, str]]) -> list[str]:
    """For each run, the values of the overrides that differ between runs (shared ones say nothing)."""
    keys = sorted({k for o in overrides for k in o})
    differing = [k for k in keys if len({o.get(k) for o in overrides}) > 1]
    return [" ".join(_short(o.get(k, "-")) for k in differing) for o in overrides]


def _short(value: str) -> str:
    """A config path or class as its last part (``rt4ksr.models.NAFBlock`` -> ``NAFBlock``)."""
    return value.rsplit("/", 1)[-1].rsplit(".", 1)[-1] if not _is_number(value) else value


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def retime_size(model: nn.Module, device: torch.device, size: tuple[int, int] | None = None) -> tuple[int, int]:
    """The LR (H, W) ``retime`` times ``model`` at: the 4K scenario on CUDA, ``size`` or the CPU stand-in else."""
    return timing_size(model.scale, device.type, None if device.type == "cuda" else size)


@torch.no_grad()
def retime(models: dict[str, nn.Module], device: torch.device, size: tuple[int, int] | None = None,
           rounds: int = 20, warmup: int = 2, compile: bool = False) -> dict[str, Stats]:  # noqa: A002
    """Every model's ms per frame over ``rounds`` interleaved rounds: each round times each model once, in a
    rotating order, so that slow phases of a shared machine hit every model alike. On CUDA: fp16,
    channels_last, 4K output; on the CPU: fp32 at ``retime_size``. ``compile``: each model through
    ``torch.compile`` instead (compiled in the warm-up), so that no design is judged on eager overheads alone.
    A model that fails is left out, logged."""
    if rounds < 1:
        raise ConfigValueError(f"rounds must be at least 1 (each round times every model once), got {rounds}")
    dtype, channels_last = deployment_setting(device)
    runs = {}
    for name, model in models.items():
        m = timed_copy(model, device, dtype, channels_last)
        x = timing_batch(1, retime_size(m, device, size), device, dtype, channels_last)
        runs[name] = functools.partial(torch.compile(m, dynamic=False) if compile else m, x)
    stats, failed = interleaved(runs, rounds, warmup, measure_for(device))
    for name, reason in failed.items():
        log.warning("sweep report: %s not timed (%s)", name, reason)
    return stats


def rank_with_ties(timings: Mapping[str, Stats]) -> dict[str, str]:
    """Speed ranks, fastest first. A model whose median exceeds that of the fastest model of the current tie group
    by at most the larger of their two inter-quartile ranges shares its rank (written ``2=``): the measurement
    cannot order them. Each model is compared with the group's first, so ties do not chain: A ~ B and B ~ C
    leave C on its own rank when C is clearly slower than A."""
    order = sorted(timings, key=lambda n: timings[n].median)
    ranks: dict[str, str] = {}
    first = ""  # the fastest model of the current tie group
    for i, name in enumerate(order):
        t, f = timings[name], timings.get(first)
        if f is not None and t.median - f.median <= max(t.iqr, f.iqr):
            ranks[first] = ranks[name] = ranks[first].rstrip("=") + "="
        else:
            first, ranks[name] = name, str(i + 1)
    return ranks


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points that no other point beats in both coordinates (higher is better in both)."""
    return [i for i, (x, y) in enumerate(points)
            if not any(x2 >= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in points)]


def markdown(runs: list[Run], device: str) -> str:
    sets = sorted({s for r in runs for s in r.metrics.get("test_sets", {})})
    seeded = any(r.seeds for r in runs)
    compiled = any(r.compiled for r in runs)
    head = ["run", "label", "params (deploy)", "GMACs (4K out)", "traffic GB (4K out, fp16)",
            *[f"{s} PSNR / SSIM" for s in sets],
            "mean PSNR" + (" (seed range)" if seeded else ""), "ms (median, IQR)",
            *(["ms compiled (median, IQR)"] if compiled else []), "FPS", "speed rank", "steps", "health"]
    lines = [f"Speed: every deploy model re-timed in one process, interleaved, {device}; `=` marks a design whose "
             "median exceeds that of the fastest design sharing its rank by at most the larger of their two "
             "interquartile ranges.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        m, t = r.metrics, r.timing
        cells = [r.name, r.label, _fmt(m.get("params_deploy"), ","), _fmt(m.get("macs_deploy", 0) / 1e9, ".2f"),
                 _fmt(m.get("traffic_bytes", 0) / 1e9, ".2f")]
        for s in sets:
            b = m.get("test_sets", {}).get(s, {})
            cells.append(f"{_fmt(b.get('psnr_y'), '.3f')} / {_fmt(b.get('ssim_y'), '.4f')}")
        spread = m.get("psnr_range")
        cells.append(_fmt(r.psnr, ".3f") + (f" ({spread[0]:.3f}-{spread[1]:.3f}, {len(r.seeds)} seeds)"
                                           if r.seeds and spread else ""))
        cells.append(_ms(t))
        if compiled:
            cells.append(_ms(r.compiled))
        cells += [_fmt(t.get("fps"), ".1f"), r.rank or "-", _fmt(m.get("global_step"), ",.0f"),
                  _health(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ms(t: Mapping[str, Any]) -> str:
    return f"{_fmt(t.get('ms'), '.2f')} ({_fmt(t.get('p25_ms'), '.2f')}-{_fmt(t.get('p75_ms'), '.2f')})" if t else "-"


def _health(r: Run) -> str:
    """The run's health verdict; for a row of seeds, each seed's that is not ok."""
    if not r.seeds:
        return (r.metrics.get("health") or {}).get("status", "-")
    states = [(m.metrics.get("health") or {}).get("status", "-") for m in r.seeds]
    bad = [f"{m.name}: {st}" for m, st in zip(r.seeds, states, strict=True) if st != "ok"]
    return "ok" if not bad else "; ".join(bad)


def _fmt(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, int | float) and v == v else "-"


def plot(runs: list[Run], path: Path, device: str, title: str) -> None:
    """Mean Y-PSNR against FPS, labelled points, the Pareto front, IQR bars; written atomically as PNG."""
    import io

    matplotlib = require("matplotlib", "sweep", "the sweep report's figure")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in runs if r.psnr is not None and r.timing]
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=130)
    if pts:
        best = [_fastest(r) for r in pts]  # eager or compiled, whichever this design runs faster with
        xs, ys = [t["fps"] for t in best], [r.psnr for r in pts]
        lo = [t["fps"] - 1000.0 / t["p75_ms"] for t in best]  # FPS range from the time quartiles
        hi = [1000.0 / t["p25_ms"] - t["fps"] for t in best]
        spread = [r.metrics.get("psnr_range") or [y, y] for r, y in zip(pts, ys, strict=True)]
        ylo = [y - s[0] for y, s in zip(ys, spread, strict=True)]
        yhi = [s[1] - y for y, s in zip(ys, spread, strict=True)]
        seeded = any(r.seeds for r in pts)
        ax.errorbar(xs, ys, xerr=[lo, hi], yerr=[ylo, yhi] if seeded else None, fmt="o", ms=6, capsize=3,
                    color="tab:blue", ecolor="0.6",
                    label="design (bars: FPS interquartile range" + (", PSNR over seeds)" if seeded else ")"))
        if any(r.compiled for r in pts):
            ax.set_xscale("log")
        front = sorted(pareto_front(list(zip(xs, ys, strict=True))), key=lambda i: xs[i])
        if len(front) > 1:
            ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", color="tab:orange", lw=1.5,
                    label="Pareto front (faster and better)")
        for r, x, y in zip(pts, xs, ys, strict=True):
            ax.annotate(r.label, (x, y), fontsize=8, xytext=(5, 5), textcoords="offset points")
        ax.margins(x=0.15, y=0.15)
        ax.legend(loc="best", fontsize=8)
    t = pts[0].timing if pts else {}
    where = f"{t.get('width')}x{t.get('height')} LR input, batch 1, {device}" if t else device
    if any(r.compiled for r in pts):
        where += ", eager or torch.compile, the faster"
    ax.set_xlabel(f"frames per second ({where})")
    ax.set_ylabel("mean Y-PSNR of the final state over the validation sets (dB)")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def _fastest(r: Run) -> dict[str, Any]:
    return min((t for t in (r.timing, r.compiled) if t), key=lambda t: t["ms"])


def write_report(multirun_dir: str | Path, out: str | Path | None = None, device: str = "auto",
                 rounds: int = 20, wandb_group: str | None = None, compile: bool = False  # noqa: A002
                 ) -> tuple[Path, Path]:
    """Collect the runs (one row per configuration, averaged over its seeds), re-time their deploy models (also
    through ``torch.compile`` with ``compile``), write ``report.md`` and ``report.png`` (and ``report.json``)
    into ``out`` (default: the multirun folder), and log them to the sweep's wandb group when it has one."""
    multirun_dir = Path(multirun_dir)
    runs = group_seeds([r for r in collect(multirun_dir) if r.deploy_path.is_file()])
    if not runs:
        raise InputNotFoundError(f"no finished run (metrics.json and deploy_final.pth) under {multirun_dir}")
    dev = resolve_device(device)
    models = {r.name: load_file(r.deploy_path).model for r in runs}
    for r in runs:
        size = uhd_input(models[r.name].scale)
        r.metrics.setdefault("macs_deploy", count_macs(models[r.name], size))
        r.metrics.setdefault("params_deploy", count_params(models[r.name]))
        r.metrics["traffic_bytes"] = count_traffic(models[r.name], size)
    timings = retime(models, dev, rounds=rounds)
    compiled = retime(models, dev, rounds=rounds, compile=True) if compile else {}
    ranks = rank_with_ties({n: min(t, compiled.get(n, t), key=lambda s: s.median) for n, t in timings.items()})
    for r in runs:
        if r.name in timings:
            h, w = retime_size(models[r.name], dev)
            r.timing, r.rank = {**timings[r.name].to_row(), "height": h, "width": w}, ranks[r.name]
        if r.name in compiled:
            r.compiled = {**compiled[r.name].to_row(), "height": h, "width": w}
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU fp32, {torch.get_num_threads()} threads"
    out = Path(out) if out else multirun_dir
    md, png = out / "report.md", out / "report.png"
    write_text(md, f"# {multirun_dir.name}\n\n" + markdown(runs, name))
    plot(runs, png, name, f"{multirun_dir.name}: quality against speed ({len(runs)} runs)")
    write_text(out / "report.json", json.dumps([{"run": r.name, "label": r.label, "overrides": r.overrides,
                                                 "timing": r.timing, "compiled": r.compiled, "rank": r.rank,
                                                 "metrics": r.metrics,
                                                 "seeds": [{"run": m.name, "seed": m.overrides.get("seed"),
                                                            "metrics": m.metrics} for m in r.seeds]}
                                                for r in runs], indent=2) + "\n")
    if wandb_group:
        _log_wandb(runs, png, wandb_group, out)
    return md, png


def _log_wandb(runs: list[Run], png: Path, group: str, folder: Path) -> None:
    """One 'report' run in the sweep's wandb group: the table (re-timed speed beside each run's figures) and the
    figure. Each training run's own summary already holds its final metrics."""
    import wandb

    columns = ["run", "label", "mean_psnr", "ms", "fps", "speed_rank", "params_deploy"]
    table = wandb.Table(columns=columns, data=[[r.name, r.label, r.psnr, r.timing.get("ms"), r.timing.get("fps"),
                                                r.rank, r.metrics.get("params_deploy")] for r in runs])
    run = wandb.init(project="rt4ksr", group=group, job_type="report", name=f"{group}-report", dir=str(folder),
                     mode="offline" if wandb_offline() else "online", reinit=True)
    run.log({"report/table": table, "report/figure": wandb.Image(str(png))})
    run.finish()


try:  # the callback that ends a multirun with the report (Hydra imports it only when configured)
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a core dependency
    _HydraCallback = object


class SweepReportCallback(_HydraCallback):
    """``hydra.callbacks``: after the last run of a multirun, write the sweep report into its folder."""

    def __init__(self, rounds: int = 20, device: str = "auto", compile: bool = False) -> None:  # noqa: A002
        self.rounds, self.device, self.compile = rounds, device, compile

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        uses_wandb = "wandb" in str(config.get("logger") or "")
        try:
            md, png = write_report(sweep_dir, device=self.device, rounds=self.rounds,
                                   wandb_group=sweep_dir.name if uses_wandb else None, compile=self.compile)
        except Exception as e:  # the runs are done and saved: a failing report must not hide that
            log.error("sweep report failed (%s); rerun it with: rt4ksr sweep-report multirun_dir=%s", e, sweep_dir)
            return
        print(f"sweep report: {md}, {png}")
