"""What a configured model costs: parameters, deploy-form MACs at the 4K scenario, and its fusion error."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rt4ksr.deploy.timing import uhd_input
from rt4ksr.models import reparameterize


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass (convolutions and matmuls), counted on the meta device."""
    meta = _to_meta(model)
    x = torch.empty(1, 3, *size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(x)
    return counter.get_total_flops() // 2


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
