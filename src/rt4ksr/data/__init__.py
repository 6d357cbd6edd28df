"""Datasets, degradation and image I/O."""

from rt4ksr.data.crops import HRCrops, PackedImages
from rt4ksr.data.datamodule import SRDataModule, random_dihedral
from rt4ksr.data.degradation import KorniaBicubic, MatlabBicubic, imresize, mod_crop
from rt4ksr.data.io import ImageReadError, list_images, read_image, write_image
from rt4ksr.data.jpeg import jpeg_codec
from rt4ksr.data.realworld import BicubicJPEG, RealESRGANDegradation, SeededDegradation
from rt4ksr.data.testsets import MissingLRError, TestSet

__all__ = [
    "TestSet", "MissingLRError", "SRDataModule", "random_dihedral", "MatlabBicubic", "KorniaBicubic",
    "RealESRGANDegradation", "BicubicJPEG", "SeededDegradation", "jpeg_codec",
    "imresize", "mod_crop", "ImageReadError", "list_images", "read_image", "write_image", "HRCrops", "PackedImages",
]
