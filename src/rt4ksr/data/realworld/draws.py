"""The random source of one batch: every draw of a pipeline comes from here, seeded from one integer.

Per-sample values are drawn on the batch's device, and the choices that shape the work (which samples take a
branch, resize factors, the final order) on the host, so that choosing costs no device synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


class Draws:
    """Per-sample values on the batch's device (``uniform``, ``integers``, ``choice``, ``randn``) and work-shaping
    choices on the host (``flags``, ``host_*``), from two generators seeded from one integer."""

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
