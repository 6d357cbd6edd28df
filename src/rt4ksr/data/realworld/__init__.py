"""Real-world degradations on the device: Real-ESRGAN's high-order model, and bicubic + JPEG (+ noise).

A network trained on clean bicubic inputs sharpens whatever it is given, JPEG blocks and sensor noise included.
kornia does the Gaussian kernels, the filtering and the colour conversions; this package builds only what kornia
lacks, and ``rt4ksr.data.jpeg`` a JPEG codec that quantises as hard as real encoders. One module per concern,
each importing only those before it:

- ``options``: the default values (their one home) and the checks of every option;
- ``draws``: ``Draws``, the seeded random source of one batch;
- ``blur``: the blur and sinc kernels, drawn per sample;
- ``ops``: filtering, resizing, noise, JPEG and 8-bit rounding of a batch;
- ``pipelines``: ``SeededDegradation``, ``RealESRGANDegradation`` and ``BicubicJPEG``.

Every random value comes from two generators seeded by the training seed, the process rank and the step
(``SeededDegradation.batch_seed``), so the same seed and step give the same batch on every run.
"""

from rt4ksr.data.realworld.draws import Draws
from rt4ksr.data.realworld.pipelines import BicubicJPEG, RealESRGANDegradation, SeededDegradation

__all__ = ["BicubicJPEG", "Draws", "RealESRGANDegradation", "SeededDegradation"]
