"""Reading weights: the official RT4KSR checkpoints, Lightning checkpoints and plain state dicts."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from rt4ksr.models.rtsrn import RTSRN

# prefixes that wrappers add to the network's own keys: DataParallel/DDP, LightningModules, torch.compile
_PREFIXES = ("module.", "net.", "model.", "_orig_mod.")
_EMA = "ema.module."


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not fit the configured model."""


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The network weights in any supported file, with wrapper prefixes removed (the EMA weights when a
    Lightning checkpoint has them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # official (epoch, state_dict, optimizer, ...) and Lightning checkpoints
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointMismatchError(f"{path} holds no state dict of tensors")
    if any(k.startswith(_EMA) for k in obj):  # a run with an EMA validated (and keeps) the averaged weights
        return {_strip(k[len(_EMA):]): v for k, v in obj.items() if k.startswith(_EMA)}
    return {_strip(k): v for k, v in obj.items() if not k.startswith("ema.")}


def read_config(path: str | Path) -> dict | None:
    """The model config a file carries (``deploy_best.pth``, exports), or None."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta["rt4ksr_config"]) if "rt4ksr_config" in meta else None
    obj = torch.load(path, map_location="cpu", weights_only=True)
    cfg = obj.get("config") if isinstance(obj, Mapping) else None
    return dict(cfg) if isinstance(cfg, Mapping) else None


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def is_deploy_state(state: Mapping[str, Tensor]) -> bool:
    """A fused state dict has no branch of the training form (expand/fea/reduce convolutions or RepConv)."""
    return not any(re.search(r"(expand_conv|fea_conv|reduce_conv|conv1x1|seq_1x1|beta\.scale)", k) for k in state)


def load_into(model: nn.Module, state: Mapping[str, Tensor], source: str = "checkpoint") -> nn.Module:
    """Strict loading whose error names every missing, unexpected and mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        lines = [f"{source} does not fit the configured model (wrong scale or architecture?)"]
        for title, items in (("shape mismatches", shapes), ("missing keys", missing),
                             ("unexpected keys", unexpected)):
            if items:
                shown = items[:12] + ([f"... and {len(items) - 12} more"] if len(items) > 12 else [])
                lines.append(f"  {title} ({len(items)}): " + "; ".join(shown))
        raise CheckpointMismatchError("\n".join(lines))
    model.load_state_dict(state, strict=True)
    return model


def official_config(state: Mapping[str, Tensor]) -> dict:
    """The released architecture's hyper-parameters, read off an official state dict's shapes."""
    c = state["head.0.weight"].shape[0]
    up_channels = state["upsample.0.weight"].shape[0]
    up = int(round((up_channels / 3) ** 0.5))
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    return dict(scale=up // 2, feature_channels=c, num_blocks=len(blocks))


def load_official(path: str | Path) -> RTSRN:
    """The published RT4KSR network (x2 or x3, detected from the weights), strictly loaded in training form."""
    state = read_state_dict(path)
    if "upsample.0.weight" not in state or "head.0.weight" not in state:
        raise CheckpointMismatchError(f"{path} is not an RT4KSR checkpoint (no head/upsample weights)")
    model = RTSRN(**official_config(state))  # the defaults are the released design
    return load_into(model, state, str(path))
