"""The one measurement core: a ``Stats`` record and an interleaved timer that every speed figure goes through.

Timings taken one after the other drift with clocks, other tenants and the allocator's state by more than the
gaps they are meant to show. So candidates are timed in rounds: each round runs every candidate once, in an
order that rotates from round to round, and each is reported as the median and inter-quartile range of its
rounds. "Spread" is always the inter-quartile range (p75 - p25, inclusive quantiles), never max - min.

It lives in ``core`` so that every layer can report through it (the training callback as well as the commands
and scripts), and imports no torch: the busy-machine benchmark times whole processes with it. The CUDA-event
measure plugs in from ``rt4ksr.inference.timing`` (``cuda_ms``, ``measure_for``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Stats:
    """Median, quartiles, extremes and every value of one candidate's rounds, in ``unit``."""

    median: float
    p25: float
    p75: float
    min: float
    max: float
    n: int
    values: tuple[float, ...]
    unit: str = "ms"

    @property
    def iqr(self) -> float:
        """The spread: p75 - p25."""
        return self.p75 - self.p25

    @classmethod
    def of(cls, values: Sequence[float], unit: str = "ms") -> Stats:
        """The record of ``values`` (at least one)."""
        if not values:
            raise ValueError("no values to summarize")
        vals = tuple(float(v) for v in values)
        med = statistics.median(vals)
        p25, _, p75 = statistics.quantiles(vals, n=4, method="inclusive") if len(vals) > 1 else (med, med, med)
        return cls(med, p25, p75, min(vals), max(vals), len(vals), vals, unit)

    def per_second(self, items: float = 1.0) -> float:
        """``items`` per second at the median (a time in ms or s)."""
        seconds = self.median / 1000.0 if self.unit == "ms" else self.median
        return items / seconds if seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """Every field, the values as a list, and ``iqr``."""
        d = asdict(self)
        d["values"] = list(self.values)
        d["iqr"] = self.iqr
        return d

    def to_row(self, items: float = 1.0) -> dict[str, Any]:
        """The keys every speed report (JSON and tables) uses: ``ms``, ``p25_ms``, ``p75_ms``, ``iqr_ms`` (named
        after ``unit``), ``fps`` (``items`` per second at the median: the batch size for frames), ``rounds`` and
        the raw ``values``."""
        u = self.unit
        return {u: self.median, f"p25_{u}": self.p25, f"p75_{u}": self.p75, f"iqr_{u}": self.iqr,
                "fps": self.per_second(items), "rounds": self.n, "values": list(self.values)}


def round_order(names: Sequence[str], r: int, rotate: bool = True) -> list[str]:
    """Round ``r``'s order: rotated by ``r``, so that no candidate always follows the same one (a heavy
    predecessor heats the chip or leaves the caches cold for the next)."""
    names = list(names)
    if not rotate or not names:
        return names
    k = r % len(names)
    return names[k:] + names[:k]


def one_line(e: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:200]}" if msg else type(e).__name__


def wall_ms(fn: Callable[[], object], iters: int = 1) -> float:
    """Wall time per call of ``iters`` back-to-back calls of ``fn``, in ms (the CPU, where calls are synchronous;
    ``functools.partial(wall_ms, iters=10)`` is a measure that averages ten calls per round)."""
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) * 1e3 / iters


Measure = Callable[[Callable[[], object]], float]


def interleaved(runs: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1,
                measure: Measure = wall_ms, rotate: bool = True, unit: str = "ms",
                on_round: Callable[[int, dict[str, list[float]]], None] | None = None,
                *, catch: bool = True) -> tuple[dict[str, Stats], dict[str, str]]:
    """Time every candidate once per round for ``rounds`` rounds, after ``warmup`` untimed round-robin calls.

    ``measure(fn)`` returns one figure for one call (default: wall ms; CUDA events, a batch of calls, or a
    figure the callable reports itself plug in here). Returns each candidate's ``Stats`` and the candidates that
    failed on the way, with the reason: a broken candidate leaves the rounds, the others go on. ``on_round`` sees
    the values so far after each round (to write partial results). ``catch=False``: a failure propagates as it
    is (a single candidate has no others to go on with).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    values: dict[str, list[float]] = {n: [] for n in runs}
    failed: dict[str, str] = {}
    for _ in range(warmup):
        for name in [n for n in runs if n not in failed]:
            try:
                runs[name]()
            except Exception as e:  # noqa: BLE001 - reported as the candidate's row
                if not catch:
                    raise
                failed[name] = f"failed in warm-up: {one_line(e)}"
    for r in range(rounds):
        for name in round_order([n for n in runs if n not in failed], r, rotate):
            try:
                values[name].append(measure(runs[name]))
            except Exception as e:  # noqa: BLE001
                if not catch:
                    raise
                failed[name] = f"failed in round {r + 1}: {one_line(e)}"
        if on_round is not None:
            on_round(r, {n: v for n, v in values.items() if n not in failed})
    return {n: Stats.of(v, unit) for n, v in values.items() if n not in failed and v}, failed


def timed(fn: Callable[[], object], rounds: int, warmup: int = 1, measure: Measure = wall_ms,
          unit: str = "ms") -> Stats:
    """One candidate: ``interleaved`` with a single entry, its failure raised as it is."""
    return interleaved({"": fn}, rounds, warmup, measure, unit=unit, catch=False)[0][""]
