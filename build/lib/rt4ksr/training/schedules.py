"""Learning-rate schedules beyond torch's: warm-up then cosine decay over a run's budget of steps or time."""

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


def warmup_cosine(step: int, fraction: float, warmup_steps: int, min_factor: float) -> float:
    """The learning-rate factor after ``step`` optimizer steps, ``fraction`` of the way through the budget.

    A linear ramp over the first ``warmup_steps`` steps times a cosine from 1 to ``min_factor``. The warm-up
    counts steps, not a share of the budget: it exists for Adam's first updates (about lr for every weight,
    while its second-moment estimate is young), which last the same number of steps whatever the budget.
    """
    ramp = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    fraction = min(max(fraction, 0.0), 1.0)
    return ramp * (min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * fraction)))


class CosineBudget(LRScheduler):
    """Warm-up, then cosine decay to ``min_factor`` x the base lr as the run's budget runs out.

    Stepped per batch (its config says ``interval: step``). With a step budget (``max_steps > 0``, from
    ``trainer.max_steps``) the schedule follows the step count, so a run is reproducible; otherwise it follows
    the wall clock (``max_time``, from ``trainer.max_time``), so that wherever a time budget ends the learning rate
    has decayed, at the price of reproducibility: how many steps fit in the budget depends on the machine.
    """

    def __init__(self, optimizer: Optimizer, max_steps: int | None = None, max_time: str | float | None = None,
                 warmup_steps: int = 300, min_factor: float = 0.01, last_epoch: int = -1) -> None:
        self.total_steps = int(max_steps) if max_steps is not None and int(max_steps) > 0 else None
        self.budget_s = parse_duration(max_time) if max_time is not None and self.total_steps is None else None
        if self.total_steps is None and self.budget_s is None:
            raise ValueError("CosineBudget needs a budget: trainer.max_steps (reproducible) or trainer.max_time")
        self.warmup_steps, self.min_factor = warmup_steps, min_factor
        self.start: float | None = None
        super().__init__(optimizer, last_epoch)

    @property
    def follows_steps(self) -> bool:
        return self.total_steps is not None

    def fraction(self) -> float:
        """How much of the budget is spent: steps taken over the step budget, or time elapsed over the time one."""
        if self.total_steps is not None:
            return self.last_epoch / self.total_steps
        now = time.monotonic()
        if self.start is None:
            self.start = now
        return (now - self.start) / self.budget_s

    def get_lr(self) -> list[float]:
        f = warmup_cosine(self.last_epoch, self.fraction(), self.warmup_steps, self.min_factor)
        return [base * f for base in self.base_lrs]

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["elapsed"] = None if self.start is None else time.monotonic() - self.start
        state.pop("start", None)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        elapsed = state_dict.pop("elapsed", None)
        super().load_state_dict(state_dict)
        self.start = None if elapsed is None else time.monotonic() - elapsed
