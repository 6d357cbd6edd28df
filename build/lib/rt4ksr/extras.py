"""Optional dependencies (video, ONNX) and the one-line message that names their install."""

from __future__ import annotations

import importlib
from typing import Any


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the pip command that installs it."""


def require(module: str, extra: str, purpose: str) -> Any:
    """Import ``module``, or fail with one line naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{purpose} needs the '{module}' package: pip install 'rt4ksr[{extra}]'") from None
