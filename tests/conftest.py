"""Fixtures. Helpers live in ``helpers.py``.

Triton kernels run in Triton's CPU interpreter in the tests; TRITON_INTERPRET must be set before the first import
of torch (which imports triton). On a GPU machine, TRITON_INTERPRET=0 runs them compiled.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from helpers import DATA_DIR  # noqa: E402


@pytest.fixture
def testsets_dir() -> Path:
    d = DATA_DIR / "testsets"
    if not (d / "set5" / "test" / "HR").is_dir():
        pytest.skip(f"benchmark data not found at {d} (set RT4KSR_DATA_DIR to the shared data folder)")
    return d
