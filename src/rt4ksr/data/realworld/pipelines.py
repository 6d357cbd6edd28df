"""The degradation pipelines, ``nn.Module``s that take ``MatlabBicubic``'s place in ``data/degradation``: they
degrade the whole batch, on its device, in ``SRDataModule.on_after_batch_transfer``."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rt4ksr.data.degradation import MatlabBicubic, mod_crop
from rt4ksr.data.realworld.blur import mixed_kernels, sinc_kernels
from rt4ksr.data.realworld.draws import Draws
from rt4ksr.data.realworld.ops import (
    add_noise,
    filter_batch,
    on_rows,
    quantize,
    random_jpeg,
    random_resize,
    resize_batch,
)
from rt4ksr.data.realworld.options import (
    BICUBIC_JPEG,
    FIRST,
    HIGH_ORDER,
    KEY,
    RESIZE_MODES,
    SECOND,
    Final,
    NoiseJPEG,
    Options,
    Round,
    read_reference_scale,
    read_scale,
    read_seed,
)


class SeededDegradation(nn.Module):
    """A random degradation whose draws for a batch follow from one integer (``forward(hr, seed)``).

    ``batch_seed`` makes that integer from the training seed, the process rank, the step and the how-many-th
    batch of that step, so resuming at a step redraws what the first run drew there. A null ``seed`` picks one
    at random once per run; ``forward`` without a seed draws one from torch's global generator.
    """

    def __init__(self, scale: int, seed: int | None) -> None:
        super().__init__()
        self.scale, self.seed = read_scale(scale), read_seed(seed)
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
    scale, so the blur has the same width in LR pixels at x2, x3 and x4; null uses them as written. ``first``,
    ``second`` and ``final`` override the defaults of ``options.FIRST``, ``SECOND`` and ``FINAL`` key by key.
    """

    def __init__(self, scale: int, seed: int | None = None, clean_prob: float = HIGH_ORDER["clean_prob"],
                 reference_scale: int | None = HIGH_ORDER["reference_scale"], first: Mapping[str, Any] | None = None,
                 second: Mapping[str, Any] | None = None, final: Mapping[str, Any] | None = None) -> None:
        super().__init__(scale, seed)
        self.clean_prob = Options(KEY, {"clean_prob": clean_prob}, HIGH_ORDER).prob("clean_prob")
        reference_scale = read_reference_scale(reference_scale)
        self.factor = scale / reference_scale if reference_scale else 1.0
        self.first = Round.read(f"{KEY}.first", first, FIRST)
        self.second = Round.read(f"{KEY}.second", second, SECOND)
        self.final = Final.read(f"{KEY}.final", final)

    def degrade(self, hr: Tensor, d: Draws) -> Tensor:
        n, _, h, w = hr.shape
        clean = d.flags(n, self.clean_prob)
        lr = torch.empty(n, hr.shape[1], h // self.scale, w // self.scale, dtype=hr.dtype, device=hr.device)
        lr = on_rows(lr, clean, lambda _, rows, host: self.bicubic(hr[rows]))
        return on_rows(lr, ~clean, lambda _, rows, host: self.high_order(hr[rows], d))

    def blur(self, x: Tensor, d: Draws, spec: Round) -> Tensor:
        kernels = mixed_kernels(d, x.shape[0], spec, self.factor)
        return on_rows(x, d.flags(x.shape[0], spec.blur_prob), lambda v, rows, host: filter_batch(v, kernels[rows]))

    def high_order(self, hr: Tensor, d: Draws) -> Tensor:
        h, w = hr.shape[-2] // self.scale, hr.shape[-1] // self.scale
        x = hr
        for spec, base in ((self.first, tuple(hr.shape[-2:])), (self.second, (h, w))):
            x = self.blur(x, d, spec)
            x = random_resize(x, d, spec, base)
            x = add_noise(x, d, spec.noise_prob, spec.gaussian_noise_prob, spec.noise_sigma, spec.poisson_scale,
                          spec.gray_noise_prob)
            if spec is self.first:
                x = random_jpeg(x, d, spec.jpeg_prob, spec.jpeg_quality)
        fin, n = self.final, x.shape[0]
        sizes = fin.kernel_size[0] + 2 * d.integers(n, 0, (fin.kernel_size[1] - fin.kernel_size[0]) // 2)
        sinc = sinc_kernels(d.uniform(n, *fin.sinc_cutoff) * math.pi, sizes, fin.kernel_size[1])
        use_sinc = d.flags(n, fin.sinc_prob)
        mode = RESIZE_MODES[d.host_choice(fin.resize_modes)]

        def to_lr(v: Tensor) -> Tensor:
            v = resize_batch(v, (h, w), mode)
            return on_rows(v, use_sinc, lambda u, rows, host: filter_batch(u, sinc[rows]))

        if d.host_uniform(0.0, 1.0) < fin.sinc_first_prob:
            x = random_jpeg(to_lr(x), d, self.second.jpeg_prob, self.second.jpeg_quality)
        else:
            x = to_lr(random_jpeg(x, d, self.second.jpeg_prob, self.second.jpeg_quality))
        return quantize(x)


class BicubicJPEG(SeededDegradation):
    """The simple preset: exact MATLAB bicubic, Gaussian noise (``noise_prob`` of the samples, sigma in 1/255),
    8-bit rounding, then JPEG (``jpeg_prob`` of the samples) at a random quality: the order in which a camera's
    noise meets a codec, and the one the degraded benchmark sets use."""

    def __init__(self, scale: int, seed: int | None = None, jpeg_prob: float = BICUBIC_JPEG["jpeg_prob"],
                 jpeg_quality: Sequence[float] = BICUBIC_JPEG["jpeg_quality"],
                 noise_prob: float = BICUBIC_JPEG["noise_prob"],
                 noise_sigma: Sequence[float] = BICUBIC_JPEG["noise_sigma"],
                 gray_noise_prob: float = BICUBIC_JPEG["gray_noise_prob"]) -> None:
        super().__init__(scale, seed)
        o = NoiseJPEG.read(KEY, {"jpeg_prob": jpeg_prob, "jpeg_quality": jpeg_quality, "noise_prob": noise_prob,
                                 "noise_sigma": noise_sigma, "gray_noise_prob": gray_noise_prob})
        self.jpeg_prob, self.jpeg_quality, self.noise_prob = o.jpeg_prob, o.jpeg_quality, o.noise_prob
        self.noise_sigma, self.gray_noise_prob = o.noise_sigma, o.gray_noise_prob

    def degrade(self, hr: Tensor, d: Draws) -> Tensor:
        lr = self.bicubic(hr)
        lr = quantize(add_noise(lr, d, self.noise_prob, 1.0, self.noise_sigma, (0.0, 0.0), self.gray_noise_prob))
        return quantize(random_jpeg(lr, d, self.jpeg_prob, self.jpeg_quality))
