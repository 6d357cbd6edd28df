"""Blur kernels kornia lacks: anisotropic and generalised Gaussians, plateaus and sincs, drawn per sample.

kornia provides the isotropic Gaussian; every kernel here is cut to its own odd size inside one common square,
so that one ``filter_batch`` call filters the whole batch.
"""

from __future__ import annotations

import math

import kornia
import torch
from torch import Tensor

from rt4ksr.data.realworld.draws import Draws
from rt4ksr.data.realworld.options import Round

LARGE_SINC = 13  # kernels of at least this many taps (before rescaling) draw their cutoff from sinc_cutoff_large


def _grid(k: int, device: torch.device) -> tuple[Tensor, Tensor]:
    ax = torch.arange(k, dtype=torch.float32, device=device) - (k - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _support(kernels: Tensor, sizes: Tensor) -> Tensor:
    """Each (K, K) kernel cut to its own odd size (zero outside, centred) and normalised to sum 1: the padded
    kernels of Real-ESRGAN, all of one size."""
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
