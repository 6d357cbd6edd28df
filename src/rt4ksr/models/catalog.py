"""Every architecture rt4ksr builds, and which one a state dict holds.

The weights files a user hands over say what they are only through their keys (published ``.pth`` files) or the
config they carry (``_target_``, ours). This module answers both questions for the loaders, so that another
design's weights are refused with the ``model=`` that fits them, and a carried config can only build one of
these classes (a file never names arbitrary code to run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import get_class
from torch import Tensor, nn

from rt4ksr.core.errors import UserError
from rt4ksr.models.asconvsr import AsConvSR
from rt4ksr.models.bicubic_pp import BicubicPP
from rt4ksr.models.compact import SRVGGNetCompact
from rt4ksr.models.espcn import ESPCN
from rt4ksr.models.fsrcnn import FSRCNN
from rt4ksr.models.imdn import IMDN
from rt4ksr.models.rtsrn import RTSRN
from rt4ksr.models.span import SPAN


class CheckpointMismatchError(UserError, ValueError):
    """The checkpoint's keys or shapes do not fit the configured model."""


# each design's ``matches`` is unique among these (tests/test_arena.py checks every pair)
DESIGNS: tuple[type[nn.Module], ...] = (RTSRN, SPAN, SRVGGNetCompact, IMDN, FSRCNN, ESPCN, AsConvSR, BicubicPP)


def identify(state: Mapping[str, Tensor]) -> type[nn.Module] | None:
    """The design whose keys a state dict (wrapper prefixes stripped) holds, or None."""
    for cls in DESIGNS:
        if cls.matches(state):  # type: ignore[attr-defined]
            return cls
    return None


def class_of(target: str) -> type[nn.Module]:
    """The design class a carried config's ``_target_`` names; anything else is refused."""
    for cls in DESIGNS:
        if target in (f"{cls.__module__}.{cls.__qualname__}", f"rt4ksr.models.{cls.__qualname__}"):
            return cls
    raise CheckpointMismatchError(f"the weights name an architecture rt4ksr does not build ({target}); "
                                  f"it builds {', '.join(c.design for c in DESIGNS)}")  # type: ignore[attr-defined]


def class_of_config(config: Mapping[str, Any], trusted: bool = False) -> type[nn.Module]:
    """The class a model config builds: its ``_target_``; RTSRN for configs without one (the files rt4ksr wrote
    before there were other designs). A ``trusted`` config (the user's composed ``model``, not a file's) may
    name any class, such as a library user's own design."""
    target = config.get("_target_")
    if target is None:
        return RTSRN
    if trusted and not any(str(target) in (f"{c.__module__}.{c.__qualname__}", f"rt4ksr.models.{c.__qualname__}")
                           for c in DESIGNS):
        return get_class(str(target))
    return class_of(str(target))


def model_option(cls: type[nn.Module], scale: int | None = None) -> str:
    """The command-line options that build ``cls`` at ``scale`` (``model=span model.scale=4``)."""
    if cls is RTSRN:
        return f"model=rt4ksr_x{scale}" if scale in (2, 3, 4) else "model=rt4ksr_x2" + (
            f" model.scale={scale}" if scale else "")
    preset = f"model={cls.preset}"  # type: ignore[attr-defined]
    return preset if scale in (None, 2) else f"{preset} model.scale={scale}"


def other_design(held: type[nn.Module], wanted: type[nn.Module], state: Mapping[str, Tensor]) -> str:
    """The one-line reason and fix when ``state`` holds ``held``'s weights but ``wanted`` was configured."""
    try:
        scale = held.config_of_state(held.adapt_state(state)).get("scale")  # type: ignore[attr-defined]
    except Exception:  # a partial or odd state dict: name the design without its scale
        scale = None
    return (f"holds {held.design} weights, not {wanted.design} ones: "  # type: ignore[attr-defined]
            f"use {model_option(held, scale)}")
