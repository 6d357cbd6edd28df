"""Optional dependencies (video, ONNX) and the one-line message that names their install."""

from __future__ import annotations

import importlib
from typing import Any

from rt4ksr.core.errors import UserError


class MissingExtraError(UserError, ImportError):
    """An optional dependency is not installed; the message names the pip command that installs it."""


def require(module: str, extra: str, purpose: str) -> Any:
    """Import ``module``, or fail with one line naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = (e.name or module).split(".")[0]
        if missing != module.split(".")[0]:  # installed, but one of its own dependencies is not
            raise MissingExtraError(f"{purpose}: '{module}' is installed but cannot import '{missing}', which it "
                                    f"needs: pip install {missing}") from None
        raise MissingExtraError(f"{purpose} needs the '{module}' package: pip install 'rt4ksr[{extra}]'") from None
