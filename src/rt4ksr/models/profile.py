"""What a model costs and how far it sees: parameters, deploy-form MACs at the 4K scenario, its fusion error, and
whether (and with how much context) it can run in tiles."""

from __future__ import annotations

import torch
from torch import nn

from rt4ksr.core.scenario import uhd_input
from rt4ksr.models.layers import ECA, SimplifiedChannelAttention
from rt4ksr.models.reparam import reparameterize


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass (convolutions and matmuls), counted on the meta device."""
    # imported here: torch.utils.flop_counter imports triton, a tenth of a second the inference commands skip
    from torch.utils.flop_counter import FlopCounterMode

    meta = _to_meta(model)
    x = torch.empty(1, 3, *size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(x)
    return counter.get_total_flops() // 2


def count_traffic(model: nn.Module, size: tuple[int, int], bytes_per_value: int = 2) -> int:
    """An estimate of the memory traffic of one forward pass, in bytes: every leaf module reads its inputs and
    weights once and writes its output once (as an unfused runtime does; a fusing compiler moves less), in
    fp16 by default. Counted on the meta device."""
    meta = _to_meta(model)
    total = 0

    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        nonlocal total
        tensors = [t for t in (*inputs, output) if isinstance(t, torch.Tensor)]
        weights = sum(p.numel() for p in module.parameters(recurse=False))
        total += (sum(t.numel() for t in tensors) + weights) * bytes_per_value

    handles = [m.register_forward_hook(hook) for m in meta.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            meta(torch.empty(1, 3, *size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total


def _to_meta(model: nn.Module) -> nn.Module:
    import copy

    m = copy.deepcopy(model)
    return m.to_empty(device="meta")


@torch.no_grad()
def fusion_error(model: nn.Module, deploy: nn.Module, size: tuple[int, int] = (67, 93), seed: int = 0) -> float:
    """Max abs difference between training and deploy outputs on a random input (odd size: borders count)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, *size, generator=g)
    return (model.eval()(x) - deploy(x)).abs().max().item()


def summarize_deploy(deploy: nn.Module) -> dict:
    """What a deploy-form model costs; its fusion error is unknown (None) without the training form."""
    scale = deploy.scale
    return {"scale": scale, "input": list(uhd_input(scale)), "params_train": None,
            "params_deploy": count_params(deploy), "macs_deploy": count_macs(deploy, uhd_input(scale)),
            "fusion_max_abs_diff": None}


def summarize(model: nn.Module, seed: int = 0) -> dict:
    deploy = reparameterize(model)
    scale = model.scale
    return {
        "scale": scale,
        "input": list(uhd_input(scale)),
        "params_train": count_params(model),
        "params_deploy": count_params(deploy),
        "macs_deploy": count_macs(deploy, uhd_input(scale)),
        "fusion_max_abs_diff": fusion_error(model, deploy, seed=seed),
    }
def is_local(model: nn.Module) -> bool:
    """No global operation (ECA, NAFNet's channel attention, a design that says it is not ``local``): each
    output pixel depends on a bounded window, so tiles with enough context give the untiled output."""
    return getattr(model, "local", True) and not any(
        isinstance(m, ECA | SimplifiedChannelAttention) for m in model.modules())


def receptive_radius(model: nn.Module) -> int:
    """An upper bound on how many LR pixels around a pixel its output depends on: every spatial convolution's
    half-width at the feature resolution (``downscaling`` LR pixels per feature pixel), plus the bicubic skip's.
    A design that knows its own radius better (a transposed convolution's) says it (``receptive_radius()``)."""
    if callable(getattr(model, "receptive_radius", None)):
        return int(model.receptive_radius())
    multiple = getattr(model, "multiple", 1)
    convs = sum((m.kernel_size[0] - 1) // 2 * m.dilation[0] + (m.kernel_size[0] - 1) % 2
                for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d))
    return convs * multiple + (2 if getattr(model, "global_skip", "none") == "bicubic" else 0)
