"""Learning-rate schedules beyond torch's: a cosine decay over a wall-clock budget."""

from __future__ import annotations

import math
import time

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def parse_duration(value: str | float | int) -> float:
    """Seconds from a number or Lightning's ``max_time`` string ("DD:HH:MM:SS")."""
    if isinstance(value, int | float):
        return float(value)
    parts = [float(p) for p in str(value).split(":")]
    if len(parts) != 4:
        raise ValueError(f"duration must be seconds or 'DD:HH:MM:SS', got {value!r}")
    d, h, m, s = parts
    return ((d * 24 + h) * 60 + m) * 60 + s


class CosineTimeBudget(LRScheduler):
    """Warm-up, then cosine decay to ``min_factor`` x the base lr as the time budget runs out.

    Stepped per batch (``scheduler_interval=step``). A time-budgeted run cannot know its step count in
    advance, so the schedule follows the clock: wherever the budget ends, the learning rate has decayed.
    """

    def __init__(self, optimizer: Optimizer, budget: str | float, warmup: float = 0.02, min_factor: float = 0.01,
                 last_epoch: int = -1) -> None:
        self.budget_s = parse_duration(budget)
        self.warmup, self.min_factor = warmup, min_factor
        self.start: float | None = None
        super().__init__(optimizer, last_epoch)

    def factor(self, fraction: float) -> float:
        fraction = min(max(fraction, 0.0), 1.0)
        if fraction < self.warmup:
            return self.min_factor + (1 - self.min_factor) * fraction / self.warmup
        t = (fraction - self.warmup) / max(1e-9, 1 - self.warmup)
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * t))

    def get_lr(self) -> list[float]:
        now = time.monotonic()
        if self.start is None:
            self.start = now
        f = self.factor((now - self.start) / self.budget_s)
        return [base * f for base in self.base_lrs]

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["elapsed"] = None if self.start is None else time.monotonic() - self.start
        state.pop("start", None)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        elapsed = state_dict.pop("elapsed", None)
        super().load_state_dict(state_dict)
        self.start = None if elapsed is None else time.monotonic() - elapsed
