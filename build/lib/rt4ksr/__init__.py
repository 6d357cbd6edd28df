"""rt4ksr: real-time 4K image super-resolution (RT4KSR) with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
