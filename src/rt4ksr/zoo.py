"""``rt4ksr zoo [name=NAME] [format=text|markdown|json]``: the bundled models, their training and their ``rt4ksr eval``
figures."""

from __future__ import annotations

import json

import yaml
from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.core.config import choice_option
from rt4ksr.models.pretrained import DEGRADED_SETS, SETS, Entry, entries, entry, is_default

FORMATS = ("text", "markdown", "json")


def _training(e: Entry) -> str:
    """One line: who trained it, on what, how long, where and when."""
    t = e.card["training"]
    steps = f"{t['steps']:,} steps" if t.get("steps") else None
    minutes = f"{t['minutes']:g} min" if t.get("minutes") else None
    by = t.get("by") or e.card.get("source", "")
    parts = [p for p in (t.get("data"), steps, minutes, t.get("hardware"), str(t.get("date", ""))) if p]
    return f"{by}: {', '.join(parts)}; {e.card['license'].split(' ')[0]}"


def table() -> str:
    """The zoo as a table: one row of figures per entry and, under it, how the entry was trained."""
    head = f"{'name':<22} {'scale':>5} {'params':>7}  {'task':<9}" + "".join(f" {s:>14}" for s in SETS)
    lines = ["Y-PSNR (dB) / Y-SSIM from each card ('rt4ksr eval weights=<name>' recomputes them); "
             "* the scale's default.", "", head]
    for e in entries():
        cells = "".join(f" {_cell(e, s):>14}" for s in SETS)
        name = e.name + (" *" if is_default(e) else "")
        lines.append(f"{name:<22} {'x' + str(e.scale):>5} {e.params:>7,}  {e.task:<9}{cells}")
        lines.append(f"  {_training(e)}")
    lines += ["", "weights=<name> picks an entry in upscale, eval, export, benchmark and summary; "
              "'rt4ksr zoo name=<name>' shows its card."]
    return "\n".join(lines)


def markdown() -> str:
    """The zoo as a Markdown table (the docs' zoo page holds this text; a test keeps the two equal): figures on the
    four sets and the two degraded ones, then one line per entry on how it was trained."""
    sets = list(SETS) + list(DEGRADED_SETS)
    lines = ["| name | scale | params | task | " + " | ".join(sets) + " |", "|---" * (4 + len(sets)) + "|"]
    for e in entries():
        name = f"`{e.name}`" + (" \\*" if is_default(e) else "")
        cells = " | ".join(_cell(e, s) for s in sets)
        lines.append(f"| {name} | x{e.scale} | {e.params:,} | {e.task} | {cells} |")
    lines += ["", "How each entry was trained (its card has the whole command, seed and software):", ""]
    lines += [f"- `{e.name}`: {_training(e)}" for e in entries()]
    return "\n".join(lines)


def _cell(e: Entry, name: str) -> str:
    f = e.figures(name)
    return f"{f['psnr_y']:.2f}/{f['ssim_y']:.4f}" if f else "-"


def card(e: Entry) -> str:
    """An entry's card as YAML, with where its weights file is."""
    return yaml.safe_dump(e.card, sort_keys=False, width=110, allow_unicode=True) + f"path: {e.path}\n"


@hydra_command("zoo", say_threads=False)
def main(cfg: DictConfig) -> None:
    choice_option("format", cfg.format, FORMATS)
    chosen = [entry(str(cfg.name))] if cfg.name is not None else list(entries())
    if cfg.format == "json":
        print(json.dumps([{**e.card, "path": str(e.path), "default": is_default(e)} for e in chosen], indent=2))
    elif cfg.name is not None:
        print(card(chosen[0]), end="")
    elif cfg.format == "markdown":
        print(markdown())
    else:
        print(table())


if __name__ == "__main__":
    main()
