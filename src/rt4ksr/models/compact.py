"""SRVGGNetCompact, the compact network of Real-ESRGAN (Wang et al., arXiv 2107.10833; released code
xinntao/Real-ESRGAN ``realesrgan/archs/srvgg_arch.py``), as in its ``realesr-animevideov3`` and
``realesr-general-x4v3`` models.

A plain stack of 3x3 convolutions and activations at the input resolution; the last one makes
``num_channels * scale**2`` channels for a PixelShuffle, and the nearest-upsampled input is added, so the network
learns a residual. Parameter names follow the released ``body.<index>`` list, so its files load strictly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from rt4ksr.models.design import Design

ACTIVATIONS = ("relu", "prelu", "leakyrelu")
_KEY = re.compile(r"body\.(\d+)\.(weight|bias)")
# (scale, num_feat, num_conv, act_type, num_channels) -> count. Real-ESRGAN prints no parameter count: these are
# counted from the released configs (realesrgan/archs/srvgg_arch.py with the arguments of inference_realesrgan.py).
PUBLISHED = {
    (4, 64, 16, "prelu", 3): (621_424, "counted from Real-ESRGAN's realesr-animevideov3 config (num_feat=64, "
                                       "num_conv=16, prelu, x4); the authors publish no count"),
    (4, 64, 32, "prelu", 3): (1_213_296, "counted from Real-ESRGAN's realesr-general-x4v3 config (num_feat=64, "
                                         "num_conv=32, prelu, x4); the authors publish no count"),
}


def _activation(act_type: str, channels: int) -> nn.Module:
    if act_type == "relu":
        return nn.ReLU()
    if act_type == "prelu":
        return nn.PReLU(num_parameters=channels)
    return nn.LeakyReLU(negative_slope=0.1)


class SRVGGNetCompact(Design):
    """conv -> act -> (conv -> act) x ``num_conv`` -> conv -> PixelShuffle, plus the nearest-upsampled input.

    Nothing to re-parameterize (``is_train`` is accepted and ignored); fully convolutional, so any H x W works.
    """

    design: ClassVar[str] = "SRVGGNetCompact"
    preset: ClassVar[str] = "compact"
    source: ClassVar[str] = ("Real-ESRGAN's compact model (Wang et al., arXiv 2107.10833); released code "
                             "xinntao/Real-ESRGAN realesrgan/archs/srvgg_arch.py; defaults: realesr-animevideov3")
    local: ClassVar[bool] = True
    multiple: int = 1

    def __init__(
        self,
        scale: int = 4,
        num_feat: int = 64,
        num_conv: int = 16,
        act_type: str = "prelu",
        num_channels: int = 3,
        is_train: bool = True,
    ) -> None:
        super().__init__()
        self._record(locals())
        if act_type not in ACTIVATIONS:
            raise ValueError(f"act_type must be one of {ACTIVATIONS}, got {act_type!r}")
        if scale < 1 or num_feat < 1 or num_conv < 0:
            raise ValueError(f"need scale >= 1, num_feat >= 1, num_conv >= 0; got {scale}, {num_feat}, {num_conv}")
        layers: list[nn.Module] = [nn.Conv2d(num_channels, num_feat, 3, padding=1), _activation(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1), _activation(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_channels * scale**2, 3, padding=1))
        self.body = nn.ModuleList(layers)  # a list, as released: its indices are the state dict's names
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.scale, mode="nearest")

    def published_params(self) -> tuple[int, str] | None:
        cfg = self.config
        return PUBLISHED.get((cfg["scale"], cfg["num_feat"], cfg["num_conv"], cfg["act_type"], cfg["num_channels"]))

    @classmethod
    def matches(cls, state: Mapping[str, Tensor]) -> bool:
        """Only ``body.<i>.weight|bias`` keys, a conv at ``body.0`` and ``body.2`` (RTSRN's ``body.<i>`` are blocks
        with sub-modules, and it has ``head``/``upsample``), a PReLU or nothing at ``body.1``."""
        if not state or not all(_KEY.fullmatch(k) for k in state):
            return False
        w0, w2, w1 = state.get("body.0.weight"), state.get("body.2.weight"), state.get("body.1.weight")
        return (w0 is not None and w0.ndim == 4 and w2 is not None and w2.ndim == 4
                and (w1 is None or (w1.ndim == 1 and w1.shape[0] == w0.shape[0])))

    @classmethod
    def config_of_state(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        """ReLU and LeakyReLU leave no weights: a file without ``body.1.weight`` reads as ``relu`` (every released
        model uses PReLU)."""
        last = max(int(m.group(1)) for k in state if (m := _KEY.fullmatch(k)))
        num_feat, num_channels = state["body.0.weight"].shape[:2]
        scale = math.isqrt(state[f"body.{last}.weight"].shape[0] // num_channels)
        return {"scale": scale, "num_feat": int(num_feat), "num_conv": (last - 2) // 2,
                "act_type": "prelu" if "body.1.weight" in state else "relu", "num_channels": int(num_channels),
                "is_train": True}
