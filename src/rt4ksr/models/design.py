"""What every architecture offers the commands: its config, its deploy form, its published size, and how its
released weights are recognised and read.

An architecture is one ``nn.Module`` subclass of ``Design`` in its own module under ``rt4ksr.models``. Its
constructor takes plain values (``scale``, widths, ``num_channels``, ``is_train``) and calls ``self._record``
first, so that ``config`` rebuilds it: the config travels inside every saved file (``CONFIG_KEY``), and
``rt4ksr.inference.loading.model_from_config`` instantiates it through its ``_target_``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rt4ksr.models.reparam import deploy_


class Design(nn.Module):
    """Base of the arena's architectures (RTSRN predates it and offers the same attributes itself).

    Class attributes a design sets:

    - ``design``: its name as papers print it (``"SPAN"``), used in messages;
    - ``preset``: its ``model=`` config name (``configs/model/<preset>.yaml``);
    - ``source``: where its description comes from (paper, released code), for the docs and ``summary``;
    - ``local``: False when an output pixel depends on the whole image (global pooling, input-dependent
      kernels): tiles then change the output;
    - ``multiple``: the input grid it pads to (its unshuffle factor), 1 when none.
    """

    design: ClassVar[str] = ""
    preset: ClassVar[str] = ""
    source: ClassVar[str] = ""
    local: ClassVar[bool] = True
    multiple: int = 1
    scale: int

    def _record(self, args: Mapping[str, Any]) -> None:
        """Keep the constructor's arguments (``locals()``) as the config that rebuilds this model."""
        cls = type(self)
        self.config = {"_target_": f"{cls.__module__}.{cls.__qualname__}",
                       **{k: v for k, v in args.items() if k not in ("self", "__class__")}}
        self.scale = int(args["scale"])

    def _check_input(self, x: Tensor) -> None:
        """A wrong tensor is one ``ValueError`` naming the expected layout."""
        c = self.config["num_channels"]
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"expected an (N, {c}, H, W) tensor, got shape {tuple(x.shape)}")

    def _pad_to_grid(self, x: Tensor) -> Tensor:
        """``x`` checked and padded (replicate) to a multiple of ``multiple``; the caller crops its output back to
        ``scale`` x the input's size. Traced graphs (ONNX, TorchScript) pad for every input size."""
        self._check_input(x)
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw or torch.jit.is_tracing():
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    @property
    def is_deploy(self) -> bool:
        return not self.config.get("is_train", True)

    def to_deploy(self) -> Design:
        """A copy in deploy form: every re-parameterizable part fused (the copy only; weights stay)."""
        new = copy.deepcopy(self)
        deploy_(new)
        new.config["is_train"] = False
        return new

    def published_params(self) -> tuple[int, str] | None:
        """The parameter count the design's authors publish for this configuration, and where, or None when
        this configuration is not a published one."""
        return None

    @classmethod
    def matches(cls, state: Mapping[str, Tensor]) -> bool:
        """Whether a state dict (prefixes stripped) holds this design's weights, in released or our names."""
        return False

    @classmethod
    def adapt_state(cls, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A released state dict in this module's names (tensors that only the released code keeps, such as a
        cached fused kernel, are dropped); our own state dicts pass unchanged."""
        return dict(state)

    @classmethod
    def config_of_state(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        """The constructor arguments (scale, widths, depth) that fit a released state dict, read off its shapes."""
        raise NotImplementedError(f"{cls.design} cannot read its configuration off a state dict")
