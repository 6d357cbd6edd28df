"""Add a model to the zoo (src/rt4ksr/models/pretrained): its deploy-form safetensors and its card.

    python scripts/zoo_entry.py official ../shared/checkpoints/official/rt4ksr_x2.pth --name official-x2
    python scripts/zoo_entry.py run logs/zoo/zoo_x2 --name rt4ksr-x2

``official`` converts a published RT4KSR checkpoint; ``run`` takes a training run's folder (its final state,
``deploy_final.pth``, with the command, steps and minutes from its ``.hydra/overrides.yaml`` and
``metrics.json``). Either way the figures on the card come from ``rt4ksr eval`` of the written file on the four
benchmark sets (plus the degraded sets a real-world entry is trained for), run here, and the card records the
file's SHA-256. The hardware a run trained on is this machine unless ``--hardware`` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from rt4ksr.core.files import write_text
from rt4ksr.inference.loading import load_file
from rt4ksr.models.pretrained import DEGRADED_SETS, SETS, ZOO_DIR, file_sha256
from rt4ksr.zoo import markdown

# every entry is also scored on degraded inputs (noise + JPEG, blur + noise): how it copes with real content
OFFICIAL = {
    "source": "RT4KSR authors (Zamfir, Conde, Timofte), github.com/eduardzamfir/RT4KSR, code/checkpoints/"
              "rt4ksr_x{scale}.pth",
    "license": "Apache-2.0 (official-rt4ksr.LICENSE beside this card)",
    "paper": "Towards Real-Time 4K Image Super-Resolution, CVPR Workshops 2023 (NTIRE Real-Time 4K SR challenge)",
}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def this_machine() -> str:
    return f"{os.cpu_count()}-core {cpu_name()} CPU"


def evaluate(path: Path, name: str, sets: list[str]) -> tuple[dict, str]:
    """``rt4ksr eval`` of ``path`` on ``sets``: {set: {psnr_y, ssim_y}} and the command a user runs for it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "metrics.json"
        cmd = [sys.executable, "-m", "rt4ksr.eval", f"ckpt_path={path}", f"data.test_sets=[{','.join(sets)}]",
               f"metrics_file={out}", "progress=false", "hydra.run.dir=" + tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"rt4ksr eval failed:\n{proc.stderr[-3000:]}")
        results = json.loads(out.read_text())
    missing = [s for s in sets if s not in results]
    if missing:
        raise SystemExit(f"rt4ksr eval gave no figures for {missing}: is the data folder there?")
    figures = {s: {"psnr_y": round(results[s]["psnr_y"], 4), "ssim_y": round(results[s]["ssim_y"], 4)} for s in sets}
    shown = "" if sets == list(SETS) else f" data.test_sets=[{','.join(sets)}]"  # the four sets are eval's default
    return figures, f"rt4ksr eval weights={name}{shown}"


def export(ckpt: str | Path, name: str, *model: str) -> tuple[torch.nn.Module, str]:
    """``rt4ksr export`` of ``ckpt`` into the zoo as ``<name>.safetensors``: the model and the command (as a user
    runs it from the checkpoint's folder)."""
    weights = ZOO_DIR / f"{name}.safetensors"
    args = [f"ckpt_path={ckpt}", *model, "format=safetensors"]
    proc = subprocess.run([sys.executable, "-m", "rt4ksr.export", *args, f"output={weights}"], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"rt4ksr export failed:\n{proc.stderr[-3000:]}")
    shown = " ".join(["rt4ksr export", *args]).replace(f"ckpt_path={ckpt}", f"ckpt_path={Path(ckpt).name}")
    return load_file(weights).model, shown


def write_card(name: str, model: torch.nn.Module, card: dict, sets: list[str]) -> Path:
    """The card, with the figures of ``rt4ksr eval`` and the file's hash; written after the weights, so a card
    means a whole entry."""
    weights = ZOO_DIR / f"{name}.safetensors"
    figures, command = evaluate(weights, name, sets)
    today = datetime.date.today().isoformat()
    card.update({
        "file": weights.name,
        "sha256": file_sha256(weights),
        "params": sum(p.numel() for p in model.parameters()),
        "metrics": {"command": command, "date": today, "machine": this_machine(),
                    "software": f"torch {torch.__version__}", "convention": "Y channel (BT.601), border crop = scale",
                    "sets": figures},
    })
    path = ZOO_DIR / f"{name}.yaml"
    write_text(path, "# Zoo card: written by scripts/zoo_entry.py; tests/test_zoo.py checks its figures.\n"
               + yaml.safe_dump(card, sort_keys=False, width=110, allow_unicode=True))
    return path


DOCS = Path(__file__).resolve().parents[1] / "docs" / "zoo.md"
TABLE_START, TABLE_END = "<!-- zoo table:", "<!-- end of the zoo table -->"


def write_docs_table() -> None:
    """docs/zoo.md's table, rewritten from the cards between its two markers (tests/test_zoo.py compares them)."""
    text = DOCS.read_text()
    start = text.index("\n", text.index(TABLE_START)) + 1
    end = text.index(TABLE_END)
    write_text(DOCS, text[:start] + markdown() + "\n" + text[end:])


def official(args: argparse.Namespace) -> None:
    scale = int(Path(args.ckpt).stem.rsplit("x", 1)[-1])
    model, conversion = export(args.ckpt, args.name, f"model=rt4ksr_x{scale}")
    ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    card = {
        "name": args.name, "scale": scale, "task": "bicubic",
        "summary": f"The published RT4KSR x{scale} weights, fused into the deploy form.",
        **{k: v.format(scale=scale) for k, v in OFFICIAL.items()},
        "training": {
            "by": "the RT4KSR authors",
            "data": "DF2K (DIV2K + Flickr2K), MATLAB bicubic",
            "steps": int(ckpt.get("iteration", 0)) or None,
            "epochs": int(ckpt.get("epoch", 0)) or None,
            "recipe": "Adam, lr 5e-4, MultiStepLR milestones 20/40/60/80 (gamma 0.5), 100 epochs",
            "hardware": "GPU (not stated)",
            "date": "2023",
        },
        "conversion": f"{conversion} (the training form fused exactly; the unused high-frequency branch and "
                      "gamma dropped)",
    }
    print(write_card(args.name, model, card, list(SETS) + list(DEGRADED_SETS)))
    write_docs_table()


def run(args: argparse.Namespace) -> None:
    run_dir = Path(args.run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    kept = [o for o in overrides if not o.startswith(("trainer.enable_progress_bar", "hydra.", "ckpt_path="))]
    resumed = any(o.startswith("ckpt_path=") for o in overrides)
    model, conversion = export(run_dir / "deploy_final.pth", args.name)
    data = ", ".join(k for k, v in config["data"]["train_sets"].items() if v.get("enabled")).upper()
    degradation = config["data"]["degradation"]["_target_"].rsplit(".", 1)[-1]
    task = "realworld" if "realworld" in config.get("tags", []) else "bicubic"
    trainer = config["trainer"]
    card = {
        "name": args.name, "scale": model.scale, "task": task,
        "summary": args.summary,
        "source": "trained by rt4ksr",
        "license": "Apache-2.0",
        "training": {
            "command": "rt4ksr train " + " ".join(kept),
            "data": f"{data} ({degradation})",
            "steps": metrics["global_step"],
            "minutes": args.minutes or round(metrics["train_seconds"] / 60, 1),
            "batch": f"{config['data']['batch_size']} x {config['data']['lr_crop']}x{config['data']['lr_crop']} LR "
                     "crops",
            "seed": config.get("seed"),
            "state": "final (deploy_final.pth)",
            "hardware": args.hardware or this_machine(),
            "precision": trainer.get("precision"),
            "date": datetime.datetime.fromtimestamp((run_dir / "metrics.json").stat().st_mtime).date().isoformat(),
            "software": f"torch {torch.__version__}",
            "reproducible": bool(metrics.get("reproducible")) and not resumed,
            **({"resumed": "interrupted once and resumed from its last.ckpt (ckpt_path=)"} if resumed else {}),
        },
        "conversion": conversion,
    }
    print(write_card(args.name, model, card, list(SETS) + list(DEGRADED_SETS)))
    write_docs_table()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="kind", required=True)
    o = sub.add_parser("official", help="a published RT4KSR checkpoint")
    o.add_argument("ckpt")
    o.add_argument("--name", required=True)
    r = sub.add_parser("run", help="a training run's folder")
    r.add_argument("run_dir")
    r.add_argument("--name", required=True)
    r.add_argument("--summary", required=True, help="one sentence: what the model is")
    r.add_argument("--hardware", help="where it trained (default: this machine)")
    r.add_argument("--minutes", type=float, help="training minutes in all, when metrics.json lacks the part before "
                                                 "a resume (runs before train_seconds travelled in the checkpoint)")
    sub.add_parser("docs", help="only rewrite docs/zoo.md's table from the cards")
    args = p.parse_args()
    if args.kind == "docs":
        return write_docs_table()
    official(args) if args.kind == "official" else run(args)


if __name__ == "__main__":
    main()
