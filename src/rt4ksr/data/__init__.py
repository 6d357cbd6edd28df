"""Datasets and image I/O."""

from rt4ksr.data.benchmark import BenchmarkDataset, MissingLRError
from rt4ksr.data.io import ImageReadError, list_images, read_image, write_image

__all__ = ["BenchmarkDataset", "MissingLRError", "ImageReadError", "list_images", "read_image", "write_image"]
