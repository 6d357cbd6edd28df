"""The product's inference scenario: LR sizes whose output is 4K UHD, and the smaller CPU stand-in for them.

Every timing (the training callback, ``rt4ksr benchmark``, the kernel sweep and report, the model summary) takes
its input size from here, so one change moves them all.
"""

from __future__ import annotations

# LR sizes (H, W) whose output is 4K UHD (2160 x 3840): 1080p at x2, 720p at x3, 540p at x4
UHD_INPUT = {2: (1080, 1920), 3: (720, 1280), 4: (540, 960)}
CPU_DIVISOR = 8  # on the CPU the scenario is timed at 1/8 of its size per side: a 4K frame takes seconds there


def uhd_input(scale: int) -> tuple[int, int]:
    """The LR (H, W) whose output at ``scale`` is 4K UHD."""
    return UHD_INPUT.get(scale, (2160 // scale, 3840 // scale))


def cpu_input(scale: int) -> tuple[int, int]:
    """The CPU's stand-in for ``uhd_input``: 1/8 of it per side (135x240 at x2, 90x160 at x3, 68x120 at x4)."""
    h, w = uhd_input(scale)
    return -(-h // CPU_DIVISOR), -(-w // CPU_DIVISOR)


def timing_size(scale: int, device_type: str, size: tuple[int, int] | list[int] | None = None) -> tuple[int, int]:
    """The LR (H, W) to time at: ``size`` when given, else the 4K scenario on CUDA and its stand-in elsewhere
    (``rt4ksr.inference.timing.timing_batch`` draws the input of that size)."""
    if size is not None:
        h, w = size
        return int(h), int(w)
    return uhd_input(scale) if device_type == "cuda" else cpu_input(scale)
