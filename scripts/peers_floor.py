"""The floor of the peer table (scripts/peer_table.py): the fastest a call can be on a card, from its data
sheet: its FLOPs at the dense fp16 tensor-core peak or its bytes at the memory bandwidth, whichever takes longer.
Not timed; the table divides every candidate's median by it."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Card:
    """A card's dense fp16 tensor-core peak (FLOP/s) and memory bandwidth (bytes/s), from its data sheet."""

    name: str
    fp16_flops: float
    bytes_per_s: float


def card_for(device_name: str) -> tuple[Card | None, str]:
    """The ``Card`` that ``torch.cuda.get_device_name`` names, or None and the reason.

    Matched by substring, most specific first. An A100 with no memory size in its name is taken as the 80GB
    card (2.0 TB/s): the higher bandwidth gives the lower, still valid, floor.
    """
    n = device_name.upper()
    if "H200" in n:
        return Card("H200", 989e12, 4.8e12), ""
    if "H100" in n:
        if "PCIE" in n:
            return Card("H100 PCIe", 756e12, 2.0e12), ""
        if "SXM" in n or "HBM3" in n:
            return Card("H100 SXM", 989e12, 3.35e12), ""
        return None, f"no peak figures for this H100 variant ({device_name!r})"
    if "A100" in n:
        if "40GB" in n:
            return Card("A100 40GB", 312e12, 1.555e12), ""
        return Card("A100 80GB", 312e12, 2.0e12), ""
    return None, f"no peak figures for {device_name!r} (known: H200, H100 SXM/PCIe, A100)"


def io_bytes(batch: int, size: tuple[int, int], scale: int, channels: int = 3, itemsize: int = 2) -> int:
    """Bytes that one call must read (the LR batch) and write (the SR batch), fp16 by default."""
    h, w = size
    return batch * channels * h * w * itemsize * (1 + scale * scale)


def floor_ms(flops: float, nbytes: float, card: Card) -> dict[str, Any]:
    """The fastest a call can be on ``card``: its FLOPs at the dense fp16 peak or its bytes at the memory
    bandwidth, whichever takes longer (no overlap can beat the slower of the two)."""
    compute_ms = flops / card.fp16_flops * 1e3
    memory_ms = nbytes / card.bytes_per_s * 1e3
    return {
        "ms": max(compute_ms, memory_ms),
        "compute_ms": compute_ms,
        "memory_ms": memory_ms,
        "bound": "compute" if compute_ms >= memory_ms else "memory",
        "card": card.name,
    }


def conv_macs(model: nn.Module, size: tuple[int, int], channels: int = 3) -> int:
    """Multiply-accumulates of ``model``'s convolutions for one (1, channels, *size) input, with their real
    (unpadded) channel counts: forward hooks on every ``nn.Conv2d`` of a copy on the meta device (no memory,
    no arithmetic). Layers that the forward skips (a dead branch) are not counted."""
    meta = copy.deepcopy(model).to_empty(device="meta")
    total = 0

    def hook(conv: nn.Module, _inputs: Any, out: Tensor) -> None:
        nonlocal total
        kh, kw = conv.kernel_size
        total += out.numel() * (conv.in_channels // conv.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            meta(torch.empty(1, channels, *size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total


def floor_estimate(
    macs_per_frame: int, batch: int, size: tuple[int, int], scale: int, device_name: str
) -> dict[str, Any]:
    """The ``floor`` row: ``floor_ms`` for a batch on the named card, with FPS; ``skipped`` for unknown cards."""
    card, reason = card_for(device_name)
    if card is None:
        return {"skipped": reason}
    flops, nbytes = 2.0 * macs_per_frame * batch, io_bytes(batch, size, scale)
    row = floor_ms(flops, nbytes, card)
    row.update(flops=flops, bytes=nbytes, fps=batch * 1000.0 / row["ms"])
    return row

