"""rt4ksr: real-time 4K image super-resolution (RT4KSR) with PyTorch Lightning and Hydra."""

import sys as _sys

from rt4ksr.core.threads import prepare_process as _prepare_process

__version__ = "0.1.0"

if _sys.argv[:1] == ["-m"]:  # ``python -m rt4ksr.<command>``: size the thread pools before torch is imported
    _prepare_process()
