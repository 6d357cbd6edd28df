"""Real-world degradations on the device: Real-ESRGAN's high-order model, and bicubic + JPEG (+ noise).

A network trained on clean bicubic inputs sharpens whatever it is given, JPEG blocks and sensor noise included.
These pipelines take ``MatlabBicubic``'s place in ``data/degradation``: they degrade the whole batch, on its
device, in ``SRDataModule.on_after_batch_transfer``. kornia does the Gaussian kernels, the filtering and the
colour conversions; this module builds only what kornia lacks (anisotropic, generalised, plateau and sinc
kernels, Poisson noise), and ``rt4ksr.data.jpeg`` a JPEG codec that quantises as hard as real encoders (kornia's
is differentiable, and milder than its quality says).

Every random value comes from two generators seeded by the training seed, the process rank and the step
(``SeededDegradation.batch_seed``): per-sample values are drawn on the batch's device, and the choices that
shape the work (which samples take a branch, resize factors, the final order) on the host, so that choosing
costs no device synchronisation. The same seed and step give the same batch on every run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rt4ksr.data.degradation import MatlabBicubic, imresize, mod_crop
from rt4ksr.data.jpeg import jpeg_codec
from rt4ksr.errors import ConfigValueError

KEY = "data.degradation"
KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic", "matlab")  # matlab: antialiased, as MatlabBicubic
RESIZE_KINDS = ("up", "down", "keep")
MIN_SIDE = 4  # no intermediate image gets smaller than this, whatever the resize draws

# Real-ESRGAN's high-order model (Wang et al. 2021, options/train_realesrgan_x4plus.yml). Blur sizes and sigmas
# are in HR pixels of its x4 setting and are rescaled to the configured scale (``reference_scale``).
FIRST = {
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
SECOND = {**FIRST, "blur_prob": 0.8, "sigma": (0.2, 1.5), "resize_probs": {"up": 0.3, "down": 0.4, "keep": 0.3},
          "resize_range": (0.3, 1.2), "noise_sigma": (1.0, 25.0), "poisson_scale": (0.05, 2.5)}
FINAL = {"resize_modes": {"area": 1.0, "bilinear": 1.0, "bicubic": 1.0, "matlab": 0.0}, "sinc_prob": 0.8,
         "kernel_size": (7, 21), "sinc_cutoff": (1 / 3, 1.0), "sinc_first_prob": 0.5}
LARGE_SINC = 13  # kernels of at least this many taps (before rescaling) draw their cutoff from sinc_cutoff_large


# --- options, checked when the pipeline is built -----------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


class Options:
    """One mapping of options over its defaults; each getter checks its value, and a value out of its range
    raises ``ConfigValueError`` naming the full key, so a mistake stops the run before it starts."""

    def __init__(self, prefix: str, values: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> None:
        values = dict(values or {})
        unknown = sorted(set(values) - set(defaults))
        if unknown:
            raise ConfigValueError(f"{prefix}.{unknown[0]}: unknown option; {prefix} takes {', '.join(defaults)}")
        self.prefix, self.values = prefix, {**defaults, **values}

    def _fail(self, key: str, rule: str) -> ConfigValueError:
        return ConfigValueError(f"{self.prefix}.{key}={_show(self.values[key])}: {rule}")

    def prob(self, key: str) -> float:
        v = self.values[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
            raise self._fail(key, "a probability must lie in [0, 1]")
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
            raise self._fail(key, f"{rule}, as [min, max] with min <= max")
        return float(v[0]), float(v[1])

    def kernel_sizes(self, key: str) -> tuple[int, int]:
        a, b = self.span(key, "kernel sizes must be odd integers >= 3", lo=3, integer=True)
        if a % 2 == 0 or b % 2 == 0:
            raise self._fail(key, "kernel sizes must be odd integers >= 3, as [min, max] with min <= max")
        return int(a), int(b)

    def weights(self, key: str, names: Sequence[str]) -> tuple[float, ...]:
        """Relative weights of named choices (missing names weigh 0); they need not sum to 1."""
        v = self.values[key]
        if not isinstance(v, Mapping) or not set(v) <= set(names):
            raise self._fail(key, f"expected weights of {', '.join(names)}")
        w = tuple(v.get(n, 0.0) for n in names)
        if any(isinstance(x, bool) or not isinstance(x, int | float) or not x >= 0 for x in w) or sum(w) <= 0:
            raise self._fail(key, "weights must be >= 0 and not all 0")
        return tuple(float(x) for x in w)


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
            sinc_cutoff=o.span("sinc_cutoff", "cutoffs are in units of pi, within (0, 1]", above=0.0, hi=1.0),
            sinc_cutoff_large=o.span("sinc_cutoff_large", "cutoffs are in units of pi, within (0, 1]", above=0.0,
                                     hi=1.0),
            resize_probs=o.weights("resize_probs", RESIZE_KINDS),
            resize_range=o.span("resize_range", "resize factors must satisfy 0 < min <= 1 <= max", above=0.0),
            resize_modes=o.weights("resize_modes", RESIZE_MODES),
            noise_prob=o.prob("noise_prob"),
            gaussian_noise_prob=o.prob("gaussian_noise_prob"),
            noise_sigma=o.span("noise_sigma", "noise sigmas (in 1/255) must be >= 0", lo=0.0),
            poisson_scale=o.span("poisson_scale", "Poisson noise scales must be >= 0", lo=0.0),
            gray_noise_prob=o.prob("gray_noise_prob"),
            jpeg_prob=o.prob("jpeg_prob"),
            jpeg_quality=o.span("jpeg_quality", "JPEG qualities must lie in 1..100", lo=1.0, hi=100.0),
        )
        if not r.resize_range[0] <= 1.0 <= r.resize_range[1]:
            raise o._fail("resize_range", "resize factors must satisfy 0 < min <= 1 <= max")
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
                   kernel_size=o.kernel_sizes("kernel_size"),
                   sinc_cutoff=o.span("sinc_cutoff", "cutoffs are in units of pi, within (0, 1]", above=0.0, hi=1.0),
                   sinc_first_prob=o.prob("sinc_first_prob"))


# --- the random source of one batch ------------------------------------------------------------------------------


class Draws:
    """Per-sample values on the batch's device (``uniform``, ``integers``, ``choice``) and work-shaping choices on
    the host (``flags``, ``host_*``), from two generators seeded from one integer."""

    def __init__(self, seed: int, device: torch.device) -> None:
        device_seed, host_seed = np.random.SeedSequence(seed % 2**64).generate_state(2, np.uint64)
        self.device = device
        self.gen = torch.Generator(device=device).manual_seed(int(device_seed))
        self.host = torch.Generator().manual_seed(int(host_seed))

    def uniform(self, n: int, lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=self.gen, device=self.device)

    def integers(self, n: int, lo: int, hi: int) -> Tensor:
        """Integers in [lo, hi], inclusive."""
        return torch.randint(lo, hi + 1, (n,), generator=self.gen, device=self.device)

    def choice(self, n: int, weights: Sequence[float]) -> Tensor:
        w = torch.tensor(weights, dtype=torch.float32).to(self.device)
        return torch.multinomial(w, n, replacement=True, generator=self.gen)

    def randn(self, shape: Sequence[int]) -> Tensor:
        return torch.randn(*shape, generator=self.gen, device=self.device)

    def flags(self, n: int, p: float) -> Tensor:
        """n booleans on the host, each true with probability p."""
        return torch.rand(n, generator=self.host) < p

    def host_uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.host))

    def host_choice(self, weights: Sequence[float]) -> int:
        return int(torch.multinomial(torch.tensor(weights, dtype=torch.float64), 1, generator=self.host))


def _on_rows(x: Tensor, mask: Tensor, fn: Any) -> Tensor:
    """``fn(subset, rows, host_rows)`` on the samples a host mask selects, no work spent on the others, which pass
    unchanged; ``rows`` index per-sample tensors on the device, ``host_rows`` the host masks."""
    if bool(mask.all()):
        return fn(x, slice(None), slice(None))
    host = mask.nonzero().flatten()
    if not len(host):
        return x
    rows = host.to(x.device, non_blocking=True)
    return x.index_copy(0, rows, fn(x.index_select(0, rows), rows, host))


def quantize(x: Tensor) -> Tensor:
    """Clamp to [0, 1] and round to 8-bit levels, as every LR image the network will meet is."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


# --- kernels -----------------------------------------------------------------------------------------------------


def _grid(k: int, device: torch.device) -> tuple[Tensor, Tensor]:
    ax = torch.arange(k, dtype=torch.float32, device=device) - (k - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _support(kernels: Tensor, sizes: Tensor) -> Tensor:
    """Each (K, K) kernel cut to its own odd size (zero outside, centred) and normalised to sum 1: the padded
    kernels of Real-ESRGAN, all of one size so that one ``filter2d`` call filters the batch."""
    xx, yy = _grid(kernels.shape[-1], kernels.device)
    r = ((sizes.to(kernels.dtype) - 1) / 2)[:, None, None]
    kernels = kernels * ((xx.abs() <= r) & (yy.abs() <= r))
    return kernels / kernels.sum(dim=(-2, -1), keepdim=True)


def sinc_kernels(cutoff: Tensor, sizes: Tensor, k: int) -> Tensor:
    """Circular low-pass kernels: the 2-D sinc ``w J1(w r) / (2 pi r)`` of cutoff w (radians per pixel, one per
    sample), each cut to its odd size and padded to k x k. Ringing and overshoot, as upscalers and sharpening leave."""
    xx, yy = _grid(k, cutoff.device)
    r = torch.sqrt(xx * xx + yy * yy)[None]
    w = cutoff[:, None, None]
    kern = w * torch.special.bessel_j1(w * r) / (2 * math.pi * r.clamp_min(1e-6))
    kern = torch.where(r == 0, w * w / (4 * math.pi), kern)
    return _support(kern, sizes)


def quadratic_form(sx: Tensor, sy: Tensor, theta: Tensor, k: int) -> Tensor:
    """(n, k, k) values of p^T S^-1 p on a centred grid, for the covariances S = R diag(sx^2, sy^2) R^T rotated by
    theta (radians, counter-clockwise from the x axis): the exponent of every kernel family below."""
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    ix, iy = 1 / sx[:, None, None] ** 2, 1 / sy[:, None, None] ** 2
    xx, yy = _grid(k, sx.device)
    return (c * c * ix + s * s * iy) * xx * xx + 2 * c * s * (ix - iy) * xx * yy + (s * s * ix + c * c * iy) * yy * yy


def mixed_kernels(d: Draws, n: int, spec: Round, factor: float = 1.0) -> Tensor:
    """n blur kernels, one per sample, as Real-ESRGAN draws them: isotropic or anisotropic Gaussian, generalised
    Gaussian, plateau, or (``sinc_prob``) a sinc. ``factor`` (scale / reference_scale) widens or narrows sizes
    and sigmas, and raises cutoffs in proportion, so that the blur is as wide in LR pixels at every scale."""
    lo, hi = spec.kernel_size
    drawn = lo + 2 * d.integers(n, 0, (hi - lo) // 2)
    sizes = (2 * torch.round((drawn * factor - 1) / 2) + 1).clamp_min(3)
    k = max(3, 2 * round((hi * factor - 1) / 2) + 1)
    kind = d.choice(n, spec.kernel_probs)
    iso = kind % 2 == 0  # KERNELS alternates isotropic and anisotropic
    sx = d.uniform(n, *spec.sigma) * factor
    sy = torch.where(iso, sx, d.uniform(n, *spec.sigma) * factor)
    theta = torch.where(iso, torch.zeros_like(sx), d.uniform(n, *spec.rotation) * (math.pi / 180))
    q = quadratic_form(sx, sy, theta, k)
    b_lo, b_hi = spec.beta_generalized  # half the draws below 1 (heavier tails), half above (flatter tops)
    below = d.uniform(n, b_lo, min(1.0, b_hi))
    above = d.uniform(n, max(1.0, b_lo), b_hi)
    beta_g = torch.where(d.uniform(n, 0.0, 1.0) < 0.5, below, above)[:, None, None]
    beta_p = d.uniform(n, *spec.beta_plateau)[:, None, None]
    gauss_iso = kornia.filters.get_gaussian_kernel2d((k, k), torch.stack([sx, sx], dim=-1))
    gauss = torch.exp(-0.5 * q)
    generalized = torch.exp(-0.5 * q.pow(beta_g))
    plateau = 1 / (q.pow(beta_p) + 1)
    kern = torch.stack([gauss_iso, gauss, generalized, generalized, plateau, plateau], dim=1)
    kern = kern[torch.arange(n, device=kern.device), kind]
    if spec.sinc_prob > 0:
        small = d.uniform(n, *spec.sinc_cutoff)
        large = d.uniform(n, *spec.sinc_cutoff_large)
        cutoff = (torch.where(drawn < LARGE_SINC, small, large) / factor).clamp(max=1.0) * math.pi
        sinc = sinc_kernels(cutoff, sizes, k)
        use = (d.uniform(n, 0.0, 1.0) < spec.sinc_prob)[:, None, None]
        return torch.where(use, sinc, _support(kern, sizes))
    return _support(kern, sizes)


def filter2d(x: Tensor, kernels: Tensor) -> Tensor:
    """kornia's per-sample filtering, mirrored at the border as Real-ESRGAN's, replicated on images too small to
    mirror."""
    half = kernels.shape[-1] // 2
    border = "reflect" if min(x.shape[-2:]) > half else "replicate"
    return kornia.filters.filter2d(x, kernels, border_type=border)


# --- the operations of a round -----------------------------------------------------------------------------------


def resize(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """torch's resizes (no antialiasing, as Real-ESRGAN's: aliasing is one of the degradations), or ``matlab``:
    the antialiased bicubic of ``MatlabBicubic``, as the scalers of players and editors filter."""
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "matlab":
        return imresize(x, size=size)
    corners = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=size, mode=mode, **corners)


def random_resize(x: Tensor, d: Draws, spec: Round, base: tuple[int, int]) -> Tensor:
    """Up, down or keep (one draw per batch: a batch is one tensor), by a factor of ``base``, with a random mode."""
    kind = RESIZE_KINDS[d.host_choice(spec.resize_probs)]
    lo, hi = spec.resize_range
    f = d.host_uniform(1.0, hi) if kind == "up" else d.host_uniform(lo, 1.0) if kind == "down" else 1.0
    mode = RESIZE_MODES[d.host_choice(spec.resize_modes)]
    return resize(x, (max(MIN_SIDE, int(base[0] * f)), max(MIN_SIDE, int(base[1] * f))), mode)


def poisson_noise(x: Tensor, d: Draws, gray: Tensor) -> Tensor:
    """Shot noise of 8-bit images, colour or (host mask ``gray``) the same in every channel from the luma.

    Real-ESRGAN counts each image's distinct levels to set the photon scale; a natural 8-bit crop has 129 to 256,
    which its rule rounds to 256, so 256 it is here, without the count's device synchronisation."""
    levels = 256.0
    img = quantize(x)

    def shot(v: Tensor) -> Tensor:
        return torch.poisson(v * levels, generator=d.gen) / levels - v

    def luma_shot(v: Tensor) -> Tensor:
        g = quantize(kornia.color.rgb_to_grayscale(v))
        return shot(g).expand(-1, 3, -1, -1)

    color = torch.zeros_like(img)
    color = _on_rows(color, ~gray, lambda _, rows, host: shot(img[rows]))
    return _on_rows(color, gray, lambda _, rows, host: luma_shot(img[rows]))


def add_noise(x: Tensor, d: Draws, noise_prob: float, gaussian_prob: float, sigma: tuple[float, float],
              poisson_scale: tuple[float, float], gray_prob: float) -> Tensor:
    """Gaussian (sigma in 1/255) or Poisson noise, per sample, colour or grey, clipped to [0, 1]."""
    n = x.shape[0]
    noisy, gaussian, gray = d.flags(n, noise_prob), d.flags(n, gaussian_prob), d.flags(n, gray_prob)
    sigmas = d.uniform(n, *sigma) / 255.0
    scales = d.uniform(n, *poisson_scale)

    def gaussian_noise(v: Tensor, rows: Any, host: Any) -> Tensor:
        z = d.randn(v.shape)
        z = torch.where(gray[host].to(v.device)[:, None, None, None], z[:, :1].expand_as(z), z)
        return (v + z * sigmas[rows][:, None, None, None]).clamp(0.0, 1.0)

    def shot_noise(v: Tensor, rows: Any, host: Any) -> Tensor:
        return (v + poisson_noise(v, d, gray[host]) * scales[rows][:, None, None, None]).clamp(0.0, 1.0)

    x = _on_rows(x, noisy & gaussian, gaussian_noise)
    return _on_rows(x, noisy & ~gaussian, shot_noise)


def jpeg(x: Tensor, d: Draws, prob: float, quality: tuple[float, float]) -> Tensor:
    """A libjpeg-strength JPEG round trip (``rt4ksr.data.jpeg``: 4:2:0, the IJG tables) at a quality per sample,
    drawn uniformly among the integers of the range, on the device."""
    n = x.shape[0]
    lo, hi = math.ceil(quality[0]), math.floor(quality[1])
    if lo > hi:  # a range between two integers: its nearest one
        lo = hi = round(sum(quality) / 2)
    apply, q = d.flags(n, prob), d.integers(n, lo, hi)
    return _on_rows(x, apply, lambda v, rows, host: jpeg_codec(v, q[rows]))


# --- the pipelines -----------------------------------------------------------------------------------------------


class SeededDegradation(nn.Module):
    """A random degradation whose draws for a batch follow from one integer (``forward(hr, seed)``).

    ``batch_seed`` makes that integer from the training seed, the process rank, the step and the how-many-th
    batch of that step, so resuming at a step redraws what the first run drew there. A null ``seed`` picks one
    at random once per run; ``forward`` without a seed draws one from torch's global generator.
    """

    def __init__(self, scale: int, seed: int | None) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ConfigValueError(f"{KEY}.scale={scale}: the degradations support integer scales 2, 3 and 4")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigValueError(f"{KEY}.seed={seed}: expected an integer or null")
        self.scale, self.seed = scale, seed
        self.bicubic = MatlabBicubic(scale)

    def batch_seed(self, rank: int, step: int, draw: int = 0) -> int:
        if self.seed is None:
            self.seed = random.SystemRandom().getrandbits(63)
        state = np.random.SeedSequence([self.seed % 2**64, rank, step, draw]).generate_state(1, np.uint64)
        return int(state[0])

    def forward(self, hr: Tensor, seed: int | None = None) -> Tensor:
        """HR batch (N, 3, H, W) in [0, 1] -> LR batch (N, 3, H / scale, W / scale) on 8-bit levels."""
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()))
        return self.degrade(mod_crop(hr, self.scale), Draws(seed, hr.device))

    def degrade(self, hr: Tensor, d: Draws) -> Tensor:
        raise NotImplementedError


class RealESRGANDegradation(SeededDegradation):
    """Real-ESRGAN's high-order degradation model, batched on the device.

    Two rounds of [blur, random resize, noise, JPEG], the second round's blur with probability ``blur_prob``,
    then the resize to the LR size with a sinc filter, and the second round's JPEG, in a random order. Round 1
    resizes relative to the HR size and round 2 relative to the LR size, as Real-ESRGAN does. ``clean_prob`` of
    the samples skip it all and get the exact MATLAB bicubic LR instead, so that clean inputs stay in the training
    distribution. Blur sizes and sigmas are given for ``reference_scale`` (Real-ESRGAN's 4) and rescaled to the
    scale, so the blur has the same width in LR pixels at x2, x3 and x4; null uses them as written.
    """

    def __init__(self, scale: int, seed: int | None = None, clean_prob: float = 0.0, reference_scale: int | None = 4,
                 first: Mapping[str, Any] | None = None, second: Mapping[str, Any] | None = None,
                 final: Mapping[str, Any] | None = None) -> None:
        super().__init__(scale, seed)
        self.clean_prob = Options(KEY, {"clean_prob": clean_prob}, {"clean_prob": 0.0}).prob("clean_prob")
        if reference_scale is not None and (isinstance(reference_scale, bool) or not isinstance(reference_scale, int)
                                            or reference_scale < 1):
            raise ConfigValueError(f"{KEY}.reference_scale={reference_scale}: expected a positive integer or null")
        self.factor = scale / reference_scale if reference_scale else 1.0
        self.first = Round.read(f"{KEY}.first", first, FIRST)
        self.second = Round.read(f"{KEY}.second", second, SECOND)
        self.final = Final.read(f"{KEY}.final", final)

    def degrade(self, hr: Tensor, d: Draws) -> Tensor:
        n, _, h, w = hr.shape
        clean = d.flags(n, self.clean_prob)
        lr = torch.empty(n, hr.shape[1], h // self.scale, w // self.scale, dtype=hr.dtype, device=hr.device)
        lr = _on_rows(lr, clean, lambda _, rows, host: self.bicubic(hr[rows]))
        return _on_rows(lr, ~clean, lambda _, rows, host: self.high_order(hr[rows], d))

    def blur(self, x: Tensor, d: Draws, spec: Round) -> Tensor:
        kernels = mixed_kernels(d, x.shape[0], spec, self.factor)
        return _on_rows(x, d.flags(x.shape[0], spec.blur_prob), lambda v, rows, host: filter2d(v, kernels[rows]))

    def high_order(self, hr: Tensor, d: Draws) -> Tensor:
        h, w = hr.shape[-2] // self.scale, hr.shape[-1] // self.scale
        x = hr
        for spec, base in ((self.first, tuple(hr.shape[-2:])), (self.second, (h, w))):
            x = self.blur(x, d, spec)
            x = random_resize(x, d, spec, base)
            x = add_noise(x, d, spec.noise_prob, spec.gaussian_noise_prob, spec.noise_sigma, spec.poisson_scale,
                          spec.gray_noise_prob)
            if spec is self.first:
                x = jpeg(x, d, spec.jpeg_prob, spec.jpeg_quality)
        fin, n = self.final, x.shape[0]
        sizes = fin.kernel_size[0] + 2 * d.integers(n, 0, (fin.kernel_size[1] - fin.kernel_size[0]) // 2)
        sinc = sinc_kernels(d.uniform(n, *fin.sinc_cutoff) * math.pi, sizes, fin.kernel_size[1])
        use_sinc = d.flags(n, fin.sinc_prob)
        mode = RESIZE_MODES[d.host_choice(fin.resize_modes)]

        def to_lr(v: Tensor) -> Tensor:
            v = resize(v, (h, w), mode)
            return _on_rows(v, use_sinc, lambda u, rows, host: filter2d(u, sinc[rows]))

        if d.host_uniform(0.0, 1.0) < fin.sinc_first_prob:
            x = jpeg(to_lr(x), d, self.second.jpeg_prob, self.second.jpeg_quality)
        else:
            x = to_lr(jpeg(x, d, self.second.jpeg_prob, self.second.jpeg_quality))
        return quantize(x)


class BicubicJPEG(SeededDegradation):
    """The simple preset: exact MATLAB bicubic, Gaussian noise (``noise_prob`` of the samples, sigma in 1/255),
    8-bit rounding, then JPEG (``jpeg_prob`` of the samples) at a random quality: the order in which a camera's
    noise meets a codec, and the one the degraded benchmark sets use."""

    def __init__(self, scale: int, seed: int | None = None, jpeg_prob: float = 1.0,
                 jpeg_quality: Sequence[float] = (50.0, 95.0), noise_prob: float = 0.0,
                 noise_sigma: Sequence[float] = (1.0, 10.0), gray_noise_prob: float = 0.0) -> None:
        super().__init__(scale, seed)
        o = Options(KEY, {"jpeg_prob": jpeg_prob, "jpeg_quality": jpeg_quality, "noise_prob": noise_prob,
                          "noise_sigma": noise_sigma, "gray_noise_prob": gray_noise_prob},
                    {"jpeg_prob": 1.0, "jpeg_quality": (50.0, 95.0), "noise_prob": 0.0, "noise_sigma": (1.0, 10.0),
                     "gray_noise_prob": 0.0})
        self.jpeg_prob, self.noise_prob, self.gray_noise_prob = (o.prob("jpeg_prob"), o.prob("noise_prob"),
                                                                 o.prob("gray_noise_prob"))
        self.jpeg_quality = o.span("jpeg_quality", "JPEG qualities must lie in 1..100", lo=1.0, hi=100.0)
        self.noise_sigma = o.span("noise_sigma", "noise sigmas (in 1/255) must be >= 0", lo=0.0)

    def degrade(self, hr: Tensor, d: Draws) -> Tensor:
        lr = self.bicubic(hr)
        lr = quantize(add_noise(lr, d, self.noise_prob, 1.0, self.noise_sigma, (0.0, 0.0), self.gray_noise_prob))
        return quantize(jpeg(lr, d, self.jpeg_prob, self.jpeg_quality))
