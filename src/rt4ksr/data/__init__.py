"""Datasets, degradation and image I/O.

The names below are re-exported lazily (PEP 562): importing one submodule, say ``rt4ksr.data.io`` for the
upscaler, must not import the training data module (and Lightning) with it. Code inside the package imports from
the defining submodule.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> defining submodule
_EXPORTS = {
    "HRCrops": "crops", "PackedImages": "crops",
    "SRDataModule": "datamodule", "random_dihedral": "datamodule",
    "KorniaBicubic": "degradation", "MatlabBicubic": "degradation", "imresize": "degradation",
    "mod_crop": "degradation",
    "ImageReadError": "io", "list_images": "io", "read_image": "io", "write_image": "io",
    "jpeg_codec": "jpeg",
    "BicubicJPEG": "realworld", "RealESRGANDegradation": "realworld", "SeededDegradation": "realworld",
    "MissingLRError": "testsets", "TestSet": "testsets",
}

__all__ = [
    "TestSet", "MissingLRError", "SRDataModule", "random_dihedral", "MatlabBicubic", "KorniaBicubic",
    "RealESRGANDegradation", "BicubicJPEG", "SeededDegradation", "jpeg_codec",
    "imresize", "mod_crop", "ImageReadError", "list_images", "read_image", "write_image", "HRCrops", "PackedImages",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
