"""Summarise a multirun: ``python scripts/sweep_report.py MULTIRUN_DIR [--out DIR]``.

Reads every job's ``metrics.json`` and resolved ``config.yaml`` under MULTIRUN_DIR and writes
``sweep_report.md`` (one row per run) and ``sweep_report.png`` (PSNR against FPS, marker size = deploy
parameters) next to them, or into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from rt4ksr.extras import require


def collect(multirun_dir: Path) -> list[dict]:
    rows = []
    for metrics_file in sorted(multirun_dir.rglob("metrics.json")):
        job = metrics_file.parent
        m = json.loads(metrics_file.read_text())
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        cfg_file = job / "config.yaml"
        model = (yaml.safe_load(cfg_file.read_text()) or {}).get("model", {}) if cfg_file.is_file() else {}
        block = str((model.get("baseblock") or {}).get("_target_", "?")).rsplit(".", 1)[-1]
        timing = m.get("timing") or {}
        rows.append({
            "run": job.name, "overrides": " ".join(overrides), "block": block,
            "psnr": m.get("val_psnr"), "benchmarks": m.get("benchmarks", {}),
            "fps": timing.get("fps"), "ms": timing.get("ms"), "timing_input": f"{timing.get('width')}x"
            f"{timing.get('height')} {timing.get('dtype', '')} {timing.get('device', '')}".strip(),
            "params": m.get("params_deploy"), "train_seconds": m.get("train_seconds"),
        })
    return rows


def markdown(rows: list[dict]) -> str:
    sets = sorted({s for r in rows for s in r["benchmarks"]})
    head = ["run", "overrides", "block", "params (deploy)", *[f"{s} PSNR-Y" for s in sets], "mean PSNR-Y",
            "ms", "FPS", "timed on", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(v, fmt):
        return format(v, fmt) if isinstance(v, int | float) else "-"

    for r in sorted(rows, key=lambda r: -(r["psnr"] or 0)):
        cells = [r["run"], r["overrides"] or "-", r["block"], f(r["params"], ",")]
        cells += [f(r["benchmarks"].get(s, {}).get("psnr_y"), ".3f") for s in sets]
        cells += [f(r["psnr"], ".3f"), f(r["ms"], ".3f"), f(r["fps"], ".1f"), r["timing_input"],
                  f(r["train_seconds"], ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    matplotlib = require("matplotlib", "sweep", "the sweep plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r["psnr"] is not None and r["fps"] is not None]
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    if pts:
        sizes = [max(20.0, (r["params"] or 0) / 300.0) for r in pts]
        ax.scatter([r["fps"] for r in pts], [r["psnr"] for r in pts], s=sizes, alpha=0.6)
        for r in pts:
            ax.annotate(r["overrides"] or r["run"], (r["fps"], r["psnr"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    ax.set_xlabel(f"FPS ({pts[0]['timing_input']})" if pts else "FPS")
    ax.set_ylabel("mean Y-PSNR over validation sets (dB)")
    ax.set_title("PSNR vs speed (marker size: deploy-form parameters)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("multirun_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = collect(args.multirun_dir)
    if not rows:
        raise SystemExit(f"no metrics.json under {args.multirun_dir}")
    out = args.out or args.multirun_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep_report.md").write_text(markdown(rows))
    plot(rows, out / "sweep_report.png")
    print(f"{len(rows)} runs: {out / 'sweep_report.md'}, {out / 'sweep_report.png'}")


if __name__ == "__main__":
    main()
