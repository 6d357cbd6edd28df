"""The model zoo: deploy-form weights that ship inside the package, each with a card that says where it comes from.

Every entry is ``<name>.safetensors`` (fused weights, the model config carried in the file) beside
``<name>.yaml`` (its card: what it was trained on, how, on what machine, and its ``rt4ksr eval`` figures). The
cards are the only source of the zoo's table, and a test recomputes their figures from the files.

Commands take an entry as ``weights=<name>``; given neither weights nor ``ckpt_path``, the commands that need
trained weights use the scale's default entry: the clean (bicubic) entry with the highest mean Y-PSNR over the
four benchmark sets on its card, so a better model becomes the default by its card alone.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from rt4ksr.core.errors import ConfigValueError

log = logging.getLogger(__name__)

ZOO_DIR = Path(__file__).resolve().parent
SETS = ("set5", "set14", "b100", "urban100")  # the sets every card reports, in this order
DEGRADED_SETS = ("set14_bicubic_n5_q75", "b100_b1_bicubic_n10")  # and the degraded sets, for real-world inputs
TASKS = ("bicubic", "realworld")  # what an entry is trained to undo: clean MATLAB bicubic, or real-world inputs


class UnknownWeightsError(ConfigValueError):
    """``weights=`` names no zoo entry."""


@dataclass(frozen=True)
class Entry:
    """One zoo entry: its card (a dict read from ``<name>.yaml``) and its weights file."""

    name: str
    card: dict[str, Any]

    @property
    def path(self) -> Path:
        return ZOO_DIR / self.card["file"]

    @property
    def scale(self) -> int:
        return int(self.card["scale"])

    @property
    def task(self) -> str:
        return str(self.card["task"])

    @property
    def params(self) -> int:
        return int(self.card["params"])

    def figures(self, name: str) -> dict[str, float] | None:
        """``{psnr_y, ssim_y}`` of one set on the card, or None when the card has no figure for it."""
        return self.card["metrics"]["sets"].get(name)

    def mean_psnr(self) -> float:
        """The mean Y-PSNR over the four benchmark sets: what ranks clean entries of one scale."""
        return sum(self.card["metrics"]["sets"][s]["psnr_y"] for s in SETS) / len(SETS)

    def sha256(self) -> str:
        return file_sha256(self.path)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@cache
def entries() -> tuple[Entry, ...]:
    """Every entry the package holds, by scale, then clean before real-world, then name."""
    found = [Entry(p.stem, yaml.safe_load(p.read_text())) for p in sorted(ZOO_DIR.glob("*.yaml"))]
    return tuple(sorted(found, key=lambda e: (e.scale, TASKS.index(e.task), e.name)))


def names() -> list[str]:
    return [e.name for e in entries()]


def entry(name: str) -> Entry:
    """The entry called ``name``; an unknown name is a one-line error with the closest name and the list."""
    for e in entries():
        if e.name == name:
            return e
    near = difflib.get_close_matches(str(name), names(), n=1, cutoff=0.5)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    as_path = "; a weights file is given with ckpt_path=PATH" if any(c in str(name) for c in "/\\.") else ""
    raise UnknownWeightsError(f"weights={name}: no such zoo entry{hint}; the zoo has: {', '.join(names())} "
                              f"('rt4ksr zoo' shows them){as_path}")


def default_entry(scale: int) -> Entry:
    """The scale's default: the clean entry with the highest mean Y-PSNR over the four sets on its card."""
    clean = [e for e in entries() if e.scale == scale and e.task == "bicubic"]
    if not clean:
        scales = sorted({e.scale for e in entries()})
        raise ConfigValueError(f"the zoo has no x{scale} weights (it has x{', x'.join(map(str, scales))}): give "
                               "ckpt_path=PATH, or pick a scale the zoo has")
    return max(clean, key=Entry.mean_psnr)


def is_default(e: Entry) -> bool:
    return e.task == "bicubic" and default_entry(e.scale).name == e.name


def weights_path(ckpt_path: str | Path | None, weights: str | None, scale: int | None = None) -> str | None:
    """The file a command loads: ``ckpt_path`` as given, the zoo entry ``weights``, or, given neither and a
    ``scale``, that scale's default entry (said in the log); None when there is nothing to load."""
    if ckpt_path is not None and weights is not None:
        raise ConfigValueError(f"give ckpt_path or weights, not both (ckpt_path={ckpt_path}, weights={weights})")
    if ckpt_path is not None:
        return str(ckpt_path)
    if weights is not None:
        return str(entry(str(weights)).path)
    if scale is None:
        return None
    e = default_entry(int(scale))
    log.info("weights: %s, the zoo's default at x%d ('rt4ksr zoo' lists the others; weights=<name> or "
             "ckpt_path=<file> picks one)", e.name, e.scale)
    return str(e.path)


def scale_for(outscale: float) -> int:
    """The zoo scale that serves an output scale: the smallest that reaches it (x4 for 3.5, then resized down),
    or the largest there is."""
    scales = sorted({e.scale for e in entries() if e.task == "bicubic"})
    return next((s for s in scales if s >= outscale - 1e-9), scales[-1])


__all__ = ["Entry", "SETS", "TASKS", "UnknownWeightsError", "ZOO_DIR", "default_entry", "entries", "entry",
           "file_sha256", "is_default", "names", "scale_for", "weights_path"]
