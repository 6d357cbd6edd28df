"""The options of the real-world pipelines: their default values (the one place they are written) and their checks.

The config entries ``data/degradation=realesrgan`` and ``bicubic_jpeg`` restate these values, and
docs/degradations.md tabulates them; tests/test_realworld_defaults.py keeps the three in agreement. Every check
runs when a pipeline is built, and a value out of its range raises ``ConfigValueError`` naming the full key, so a
mistake stops the run before it starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rt4ksr.core.errors import ConfigValueError

KEY = "data.degradation"
KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic", "matlab")  # matlab: antialiased, as MatlabBicubic
RESIZE_KINDS = ("up", "down", "keep")
SCALES = (2, 3, 4)

# --- default values ----------------------------------------------------------------------------------------------

# Real-ESRGAN's high-order model (Wang et al. 2021, options/train_realesrgan_x4plus.yml). Blur sizes and sigmas
# are in HR pixels of its x4 setting and are rescaled to the configured scale (``reference_scale``).
HIGH_ORDER: dict[str, Any] = {"clean_prob": 0.0, "reference_scale": 4}
FIRST: dict[str, Any] = {
    "blur_prob": 1.0,
    "kernel_size": (7, 21),
    "kernel_probs": {"iso": 0.45, "aniso": 0.25, "generalized_iso": 0.12, "generalized_aniso": 0.03,
                     "plateau_iso": 0.12, "plateau_aniso": 0.03},
    "sigma": (0.2, 3.0),
    "rotation": (-180.0, 180.0),
    "beta_generalized": (0.5, 4.0),
    "beta_plateau": (1.0, 2.0),
    "sinc_prob": 0.1,
    "sinc_cutoff": (1 / 3, 1.0),
    "sinc_cutoff_large": (0.2, 1.0),
    "resize_probs": {"up": 0.2, "down": 0.7, "keep": 0.1},
    "resize_range": (0.15, 1.5),
    "resize_modes": {"area": 1.0, "bilinear": 1.0, "bicubic": 1.0, "matlab": 0.0},
    "noise_prob": 1.0,
    "gaussian_noise_prob": 0.5,
    "noise_sigma": (1.0, 30.0),
    "poisson_scale": (0.05, 3.0),
    "gray_noise_prob": 0.4,
    "jpeg_prob": 1.0,
    "jpeg_quality": (30.0, 95.0),
}
SECOND: dict[str, Any] = {
    **FIRST, "blur_prob": 0.8, "sigma": (0.2, 1.5), "resize_probs": {"up": 0.3, "down": 0.4, "keep": 0.3},
    "resize_range": (0.3, 1.2), "noise_sigma": (1.0, 25.0), "poisson_scale": (0.05, 2.5),
}
FINAL: dict[str, Any] = {"resize_modes": {"area": 1.0, "bilinear": 1.0, "bicubic": 1.0, "matlab": 0.0},
                         "sinc_prob": 0.8, "kernel_size": (7, 21), "sinc_cutoff": (1 / 3, 1.0), "sinc_first_prob": 0.5}

# The simple preset: exact bicubic, then JPEG on every sample; noise only where asked for.
BICUBIC_JPEG: dict[str, Any] = {"jpeg_prob": 1.0, "jpeg_quality": (50.0, 95.0), "noise_prob": 0.0,
                                "noise_sigma": (1.0, 10.0), "gray_noise_prob": 0.0}


# --- checks ------------------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


class Options:
    """One mapping of options over its defaults; each getter checks its value, and a value out of its range
    raises ``ConfigValueError`` naming the full key."""

    def __init__(self, prefix: str, values: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> None:
        values = dict(values or {})
        unknown = sorted(set(values) - set(defaults))
        if unknown:
            raise ConfigValueError(f"{prefix}.{unknown[0]}: unknown option; {prefix} takes {', '.join(defaults)}")
        self.prefix, self.values = prefix, {**defaults, **values}

    def fail(self, key: str, rule: str) -> ConfigValueError:
        return ConfigValueError(f"{self.prefix}.{key}={_show(self.values[key])}: {rule}")

    def prob(self, key: str) -> float:
        v = self.values[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
            raise self.fail(key, "a probability must lie in [0, 1]")
        return float(v)

    def span(self, key: str, rule: str, lo: float | None = None, hi: float | None = None,
             above: float | None = None, integer: bool = False) -> tuple[float, float]:
        """A [min, max] pair with min <= max, within [lo, hi] and strictly above ``above``."""
        v = self.values[key]
        ok = (isinstance(v, Sequence) and not isinstance(v, str) and len(v) == 2
              and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in v))
        if ok:
            a, b = float(v[0]), float(v[1])
            ok = (a <= b and (lo is None or a >= lo) and (hi is None or b <= hi) and (above is None or a > above)
                  and (not integer or (a.is_integer() and b.is_integer())))
        if not ok:
            raise self.fail(key, f"{rule}, as [min, max] with min <= max")
        return float(v[0]), float(v[1])

    def kernel_sizes(self, key: str) -> tuple[int, int]:
        a, b = self.span(key, "kernel sizes must be odd integers >= 3", lo=3, integer=True)
        if a % 2 == 0 or b % 2 == 0:
            raise self.fail(key, "kernel sizes must be odd integers >= 3, as [min, max] with min <= max")
        return int(a), int(b)

    def weights(self, key: str, names: Sequence[str]) -> tuple[float, ...]:
        """Relative weights of named choices (missing names weigh 0); they need not sum to 1."""
        v = self.values[key]
        if not isinstance(v, Mapping) or not set(v) <= set(names):
            raise self.fail(key, f"expected weights of {', '.join(names)}")
        w = tuple(v.get(n, 0.0) for n in names)
        if any(isinstance(x, bool) or not isinstance(x, int | float) or not x >= 0 for x in w) or sum(w) <= 0:
            raise self.fail(key, "weights must be >= 0 and not all 0")
        return tuple(float(x) for x in w)

    def cutoffs(self, key: str) -> tuple[float, float]:
        return self.span(key, "cutoffs are in units of pi, within (0, 1]", above=0.0, hi=1.0)

    def jpeg_qualities(self, key: str) -> tuple[float, float]:
        return self.span(key, "JPEG qualities must lie in 1..100", lo=1.0, hi=100.0)

    def noise_sigmas(self, key: str) -> tuple[float, float]:
        return self.span(key, "noise sigmas (in 1/255) must be >= 0", lo=0.0)


def read_scale(scale: int) -> int:
    if scale not in SCALES:
        raise ConfigValueError(f"{KEY}.scale={scale}: the degradations support integer scales 2, 3 and 4")
    return scale


def read_seed(seed: int | None) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigValueError(f"{KEY}.seed={seed}: expected an integer or null")
    return seed


def read_reference_scale(reference_scale: int | None) -> int | None:
    if reference_scale is not None and (isinstance(reference_scale, bool) or not isinstance(reference_scale, int)
                                        or reference_scale < 1):
        raise ConfigValueError(f"{KEY}.reference_scale={reference_scale}: expected a positive integer or null")
    return reference_scale


@dataclass(frozen=True)
class Round:
    """One round of the high-order model: blur, resize, noise, JPEG. Blur sizes and sigmas in HR pixels of
    ``reference_scale``; cutoffs in units of pi (radians per pixel); noise sigma in 1/255."""

    blur_prob: float
    kernel_size: tuple[int, int]
    kernel_probs: tuple[float, ...]
    sigma: tuple[float, float]
    rotation: tuple[float, float]
    beta_generalized: tuple[float, float]
    beta_plateau: tuple[float, float]
    sinc_prob: float
    sinc_cutoff: tuple[float, float]
    sinc_cutoff_large: tuple[float, float]
    resize_probs: tuple[float, ...]
    resize_range: tuple[float, float]
    resize_modes: tuple[float, ...]
    noise_prob: float
    gaussian_noise_prob: float
    noise_sigma: tuple[float, float]
    poisson_scale: tuple[float, float]
    gray_noise_prob: float
    jpeg_prob: float
    jpeg_quality: tuple[float, float]

    @classmethod
    def read(cls, prefix: str, values: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> Round:
        o = Options(prefix, values, defaults)
        r = cls(
            blur_prob=o.prob("blur_prob"),
            kernel_size=o.kernel_sizes("kernel_size"),
            kernel_probs=o.weights("kernel_probs", KERNELS),
            sigma=o.span("sigma", "blur sigmas must be > 0", above=0.0),
            rotation=o.span("rotation", "rotations are in degrees"),
            beta_generalized=o.span("beta_generalized", "shape exponents must be > 0", above=0.0),
            beta_plateau=o.span("beta_plateau", "shape exponents must be > 0", above=0.0),
            sinc_prob=o.prob("sinc_prob"),
            sinc_cutoff=o.cutoffs("sinc_cutoff"),
            sinc_cutoff_large=o.cutoffs("sinc_cutoff_large"),
            resize_probs=o.weights("resize_probs", RESIZE_KINDS),
            resize_range=o.span("resize_range", "resize factors must satisfy 0 < min <= 1 <= max", above=0.0),
            resize_modes=o.weights("resize_modes", RESIZE_MODES),
            noise_prob=o.prob("noise_prob"),
            gaussian_noise_prob=o.prob("gaussian_noise_prob"),
            noise_sigma=o.noise_sigmas("noise_sigma"),
            poisson_scale=o.span("poisson_scale", "Poisson noise scales must be >= 0", lo=0.0),
            gray_noise_prob=o.prob("gray_noise_prob"),
            jpeg_prob=o.prob("jpeg_prob"),
            jpeg_quality=o.jpeg_qualities("jpeg_quality"),
        )
        if not r.resize_range[0] <= 1.0 <= r.resize_range[1]:
            raise o.fail("resize_range", "resize factors must satisfy 0 < min <= 1 <= max")
        return r


@dataclass(frozen=True)
class Final:
    """The last stage: resize to the LR size, sinc filter (at the LR size, never rescaled) and the second round's
    JPEG, sinc first with probability ``sinc_first_prob``."""

    resize_modes: tuple[float, ...]
    sinc_prob: float
    kernel_size: tuple[int, int]
    sinc_cutoff: tuple[float, float]
    sinc_first_prob: float

    @classmethod
    def read(cls, prefix: str, values: Mapping[str, Any] | None) -> Final:
        o = Options(prefix, values, FINAL)
        return cls(resize_modes=o.weights("resize_modes", RESIZE_MODES), sinc_prob=o.prob("sinc_prob"),
                   kernel_size=o.kernel_sizes("kernel_size"), sinc_cutoff=o.cutoffs("sinc_cutoff"),
                   sinc_first_prob=o.prob("sinc_first_prob"))


@dataclass(frozen=True)
class NoiseJPEG:
    """``BicubicJPEG``'s options: Gaussian noise on ``noise_prob`` of the samples, then JPEG on ``jpeg_prob``."""

    jpeg_prob: float
    jpeg_quality: tuple[float, float]
    noise_prob: float
    noise_sigma: tuple[float, float]
    gray_noise_prob: float

    @classmethod
    def read(cls, prefix: str, values: Mapping[str, Any] | None) -> NoiseJPEG:
        o = Options(prefix, values, BICUBIC_JPEG)
        return cls(jpeg_prob=o.prob("jpeg_prob"), noise_prob=o.prob("noise_prob"),
                   gray_noise_prob=o.prob("gray_noise_prob"), jpeg_quality=o.jpeg_qualities("jpeg_quality"),
                   noise_sigma=o.noise_sigmas("noise_sigma"))
