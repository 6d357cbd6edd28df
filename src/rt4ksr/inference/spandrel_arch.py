"""RT4KSR as a spandrel architecture, so that chaiNNer, ComfyUI and other spandrel users load rt4ksr weights.

spandrel picks an architecture by looking at a file's keys and shapes. After ``install()``, it recognises the
official RT4KSR checkpoints, Lightning checkpoints, ``deploy_*.pth`` files and safetensors exports, and hands
back the fused (deploy-form) network, which is what inference should run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rt4ksr.core.extras import require
from rt4ksr.inference.loading import load_state
from rt4ksr.models import pretrained
from rt4ksr.models.checkpoint import (
    CONFIG_KEY,
    CheckpointMismatchError,
    is_deploy_state,
    network_state,
)
from rt4ksr.models.rtsrn import RTSRN

spandrel = require("spandrel", "spandrel", "spandrel support")

ARCH_ID = "RT4KSR"
# the top-level modules of RTSRN's state dict (``down`` and ``highpass`` hold no tensors)
_MODULES = {"head", "body", "tail", "upsample", "gamma", "hfb"}
_SOURCE = "spandrel state dict"


class RT4KSRArch(spandrel.Architecture[RTSRN]):
    """Detects RTSRN weights in training or fused form and loads them as the fused network."""

    def __init__(self) -> None:
        super().__init__(id=ARCH_ID, name="RT4KSR", detect=_detect)

    def load(self, state_dict: spandrel.StateDict) -> spandrel.ImageModelDescriptor[RTSRN]:
        net = build_network(state_dict)
        cfg = net.config
        block = str(cfg["baseblock"]["_target_"]).rsplit(".", 1)[-1]
        tags = [block, f"{cfg['feature_channels']}nf", f"{cfg['num_blocks']}nb", f"skip-{cfg['global_skip']}"]
        return spandrel.ImageModelDescriptor(
            net,
            net.state_dict(),
            architecture=self,
            purpose="SR" if net.scale > 1 else "Restoration",
            tags=tags,
            # fp16 is the project's own CUDA path (LayerNorm keeps fp32 statistics). bf16's 8-bit mantissa costs
            # 0.17 dB Y-PSNR with the official x2 weights on set5+set14 (fp16: 0.016 dB, both run on the CPU)
            supports_half=True,
            supports_bfloat16=False,
            scale=net.scale,
            input_channels=cfg["num_channels"],
            output_channels=cfg["num_channels"],
            # RTSRN pads any size to its unshuffle grid itself (replicate) and crops the output back, so spandrel
            # must not pad (its reflect padding would change the border pixels)
            size_requirements=spandrel.SizeRequirements(),
            tiling=spandrel.ModelTiling.SUPPORTED,  # a convolutional network with a small receptive field
        )


def build_network(state_dict: Mapping[str, Any]) -> RTSRN:
    """The fused RTSRN for a state dict as spandrel hands it over (wrapper prefixes and the config key may remain).

    A state without a carried config is the released design in training form (read off its shapes by
    ``official_config``); fused weights without a config cannot be rebuilt, since fusing erases the block design.
    """
    state, config = network_state(state_dict, _SOURCE)
    if config is None and is_deploy_state(state):
        raise CheckpointMismatchError(
            f"these RT4KSR weights carry no model config ('{CONFIG_KEY}') and are not in training form: fused "
            "(deploy-form) weights cannot be rebuilt from their tensors, since fusing erases the block design. Use "
            "a file that carries the config (deploy_best.pth, deploy_final.pth, an 'rt4ksr export' safetensors "
            "file, a zoo entry, a Lightning checkpoint) or the training-form checkpoint.")
    try:
        return load_state(state, config, None, _SOURCE).model  # rt4ksr's own loader: the same network
    except CheckpointMismatchError as e:
        if config is not None:
            raise
        raise CheckpointMismatchError(
            f"these RT4KSR weights carry no model config ('{CONFIG_KEY}'), so they were read as the released "
            f"design, which they do not fit. Use a file that carries the config.\n{e}") from None


def load_file(path: str | Path, device: str | torch.device | None = None) -> spandrel.ImageModelDescriptor[RTSRN]:
    """The spandrel descriptor of any rt4ksr weights file, read with ``torch.load(weights_only=True)``, or of a
    zoo entry given by name (``load_file("rt4ksr-x2")``; ``rt4ksr zoo`` lists them).

    spandrel's ``ModelLoader.load_from_file`` refuses ``.pth``/``.ckpt`` files that hold a
    ``collections.Counter`` (the MultiStepLR milestones in the official checkpoints and in Lightning
    checkpoints of runs with that scheduler); PyTorch's own safe loader accepts it.
    """
    if not Path(path).exists() and str(path) in pretrained.names():
        path = pretrained.entry(str(path)).path
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file as load_safetensors

        obj = load_safetensors(path)
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    registry = spandrel.ArchRegistry()  # RT4KSR alone: another file is an UnsupportedModelError, not a guess
    install(registry)
    return spandrel.ModelLoader(device, registry=registry).load_from_state_dict(obj)


def _detect(state_dict: Mapping[str, Any]) -> bool:
    """RTSRN's own keys after prefix/EMA stripping: head, upsample, tail and body convolutions and nothing else,
    with the head's width feeding the upsampler; or the config that rt4ksr writes beside the weights."""
    if not any(k.endswith("head.0.weight") for k in state_dict):  # cheap rejection of other architectures
        return False
    try:
        state, config = network_state(state_dict, _SOURCE)
    except (ValueError, TypeError, RuntimeError):  # not tensors, or an undecodable config: not ours
        return False
    head, up = state.get("head.0.weight"), state.get("upsample.0.weight")
    if not (isinstance(head, Tensor) and isinstance(up, Tensor) and head.ndim == 4 and up.ndim == 4):
        return False
    if up.shape[1] != head.shape[0]:  # the upsampler reads the network's feature channels
        return False
    if not {k.split(".", 1)[0] for k in state} <= _MODULES:
        return False
    if config is not None:
        return isinstance(config, dict) and {"scale", "feature_channels", "baseblock"} <= set(config)
    # without a config: the released layout, a body of blocks and a tail convolution
    return any(re.match(r"body\.0\.", k) for k in state) and any(k.startswith("tail.1.") for k in state)


def install(registry: spandrel.ArchRegistry | None = None,
            ignore_duplicates: bool = True) -> list[spandrel.ArchSupport]:
    """Add the RT4KSR architecture to ``registry`` (spandrel's ``MAIN_REGISTRY`` by default), as
    ``spandrel_extra_arches.install()`` does; installing again is a no-op. Returns what was added."""
    registry = spandrel.MAIN_REGISTRY if registry is None else registry
    return registry.add(spandrel.ArchSupport.from_architecture(RT4KSRArch()), ignore_duplicates=ignore_duplicates)


__all__ = ["ARCH_ID", "RT4KSRArch", "build_network", "install", "load_file"]
