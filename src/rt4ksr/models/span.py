"""SPAN, the Swift Parameter-free Attention Network (Wan et al., CVPRW 2024, arXiv 2311.12770), winner of the
NTIRE 2024 efficient super-resolution challenge.

Six parameter-free attention blocks (SPAB) of three re-parameterizable 3x3 convolutions (``Conv3XC``); each block's
attention is ``sigmoid(h) - 0.5`` of its own last convolution, so it has no weights of its own. Parameter names
follow the released code (hongyuanyu/SPAN ``basicsr/archs/span_arch.py``), so its files load strictly after
``SPAN.adapt_state``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rt4ksr.models import fusion
from rt4ksr.models.blocks import conv_from, conv_params
from rt4ksr.models.design import Design
from rt4ksr.models.reparam import deploy_

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K's mean, fixed in the released code (not stored in its files)
NUM_BLOCKS = 6  # fixed in the released code: block_1 ... block_6
# The NTIRE 2024 ESR entry (Amazingren/NTIRE2024_ESR, test_demo.py model 38: SPAN30(3, 3, upscale=4,
# feature_channels=28), model_zoo/team38_span_ch28_slim.pth); the challenge counts the fused (deploy) form.
PUBLISHED = {(4, 28, 3): (150_688, "the NTIRE 2024 ESR entry's fused x4 checkpoint (Amazingren/NTIRE2024_ESR, "
                                   "model_zoo/team38_span_ch28_slim.pth), as the challenge counts it")}


class Conv3XC(nn.Module):
    """A 3x3 convolution trained as a 1x1 skip (``sk``) plus 1x1 expand -> 3x3 -> 1x1 reduce (``conv``), summed.

    As released, the input is zero-padded *before* the expand 1x1 and the 3x3 runs unpadded, so the 3x3 sees the
    expand bias on the border: exactly the condition under which ``fusion.fuse_1x1_kxk`` is exact, so the fused
    3x3 (zero-padded, as the released ``eval_conv``) equals this form on every pixel, borders included. The
    released module also keeps that fused kernel as ``eval_conv`` (recomputed at every eval forward); here it
    exists only in the deploy form, and ``SPAN.adapt_state`` drops it from released files.
    """

    def __init__(self, c_in: int, c_out: int, gain: int = 2) -> None:
        super().__init__()
        self.sk = nn.Conv2d(c_in, c_out, 1)
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, c_in * gain, 1),
            nn.Conv2d(c_in * gain, c_out * gain, 3),  # unpadded: its input was padded before the expand 1x1
            nn.Conv2d(c_out * gain, c_out, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)

    def to_deploy(self) -> nn.Conv2d:
        """One zero-padded 3x3 convolution with the fused weights (new tensors; this module is untouched)."""
        branch = fusion.fuse_sequence(*(conv_params(c) for c in self.conv))
        return conv_from(*fusion.fuse_parallel(branch, conv_params(self.sk)))


class SPAB(nn.Module):
    """Three Conv3XC (SiLU between), then the parameter-free attention: ``(h + x) * (sigmoid(h) - 0.5)``.

    Returns the block output and its first convolution's output *after* the SiLU (SPAN concatenates block 6's
    into its tail): the released SPAB applies ``SiLU(inplace=True)`` to that output before returning it, so the
    released weights were trained with the activated tensor, whatever its ``forward`` appears to return.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.c1_r = Conv3XC(channels, channels)
        self.c2_r = Conv3XC(channels, channels)
        self.c3_r = Conv3XC(channels, channels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        act1 = F.silu(self.c1_r(x))
        h = self.c3_r(F.silu(self.c2_r(act1)))
        return (h + x) * (torch.sigmoid(h) - 0.5), act1


class SPAN(Design):
    """Mean shift and x ``img_range`` -> Conv3XC -> 6 SPAB -> Conv3XC; 1x1 over [head, tail, block 1, SiLU of
    block 6's first conv] -> 3x3 + PixelShuffle.

    As released, the input is shifted by the DIV2K mean and scaled by ``img_range`` but the output is neither
    scaled back nor shifted: the network learns outputs in the input's [0, 1] range. ``norm=False`` drops the
    shift and scale (spandrel's option for files that carry a ``no_norm`` buffer, kept so those load strictly).
    Fully convolutional, so any H x W is accepted without padding.
    """

    design: ClassVar[str] = "SPAN"
    preset: ClassVar[str] = "span"
    source: ClassVar[str] = ("Wan et al., Swift Parameter-free Attention Network for Efficient Super-Resolution, "
                             "CVPRW 2024, arXiv 2311.12770; released code hongyuanyu/SPAN (basicsr/archs/span_arch.py)"
                             "; defaults: its NTIRE 2024 ESR entry (Amazingren/NTIRE2024_ESR, team 38)")
    local: ClassVar[bool] = True
    multiple: int = 1
    train_keys: ClassVar[str] = r"\.(sk|conv\.\d)\."  # the Conv3XC branches: only the training form has them

    def __init__(
        self,
        scale: int = 4,
        feature_channels: int = 28,
        norm: bool = True,
        img_range: float = 255.0,
        num_channels: int = 3,
        is_train: bool = True,
    ) -> None:
        super().__init__()
        self._record(locals())
        if scale < 1 or feature_channels < 1:
            raise ValueError(f"scale and feature_channels must be >= 1, got {scale} and {feature_channels}")
        if norm and num_channels != len(RGB_MEAN):
            raise ValueError(f"norm subtracts an RGB mean: it needs num_channels=3, got {num_channels}")
        c = feature_channels
        self.norm, self.img_range = norm, float(img_range)
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, -1, 1, 1), persistent=False)
        if not norm:  # spandrel's marker of a file trained without the mean shift
            self.register_buffer("no_norm", torch.zeros(1))
        self.conv_1 = Conv3XC(num_channels, c)
        for i in range(1, NUM_BLOCKS + 1):
            self.add_module(f"block_{i}", SPAB(c))
        self.conv_cat = nn.Conv2d(4 * c, c, 1)
        self.conv_2 = Conv3XC(c, c)
        self.upsampler = nn.Sequential(nn.Conv2d(c, num_channels * scale**2, 3, padding=1), nn.PixelShuffle(scale))
        if not is_train:
            deploy_(self)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if self.norm:
            x = (x - self.mean.to(x.dtype)) * self.img_range
        head = self.conv_1(x)
        first, _ = self.block_1(head)
        out = first
        for i in range(2, NUM_BLOCKS + 1):
            out, act1 = getattr(self, f"block_{i}")(out)  # act1: the last block's first convolution, activated
        tail = self.conv_2(out)
        return self.upsampler(self.conv_cat(torch.cat([head, tail, first, act1], dim=1)))

    def published_params(self) -> tuple[int, str] | None:
        """The challenge's count is of the fused form (one 3x3 per Conv3XC), whichever form this instance is in."""
        cfg = self.config
        if not cfg["norm"]:
            return None
        return PUBLISHED.get((cfg["scale"], cfg["feature_channels"], cfg["num_channels"]))

    @classmethod
    def matches(cls, state: Mapping[str, Tensor]) -> bool:
        """SPAN's own names: ``conv_cat`` and the blocks' ``block_1.c1_r`` (any form), with ``upsampler.0``."""
        return ("conv_cat.weight" in state and "upsampler.0.weight" in state
                and any(k.startswith("block_1.c1_r.") for k in state))

    @classmethod
    def adapt_state(cls, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Training files (with ``sk``/``conv`` branches): the cached ``eval_conv`` is dropped. Fused-only files
        (the NTIRE 2024 entry keeps nothing but ``eval_conv``): ``X.eval_conv.*`` becomes the deploy form's
        ``X.*``, to load into ``SPAN(is_train=False)``."""
        trained = any(".sk." in k for k in state)
        out: dict[str, Tensor] = {}
        for k, v in state.items():
            if ".eval_conv." not in k:
                out[k] = v
            elif not trained:
                out[k.replace(".eval_conv.", ".")] = v
        return out

    @classmethod
    def config_of_state(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        state = cls.adapt_state(state)
        trained = "conv_1.sk.weight" in state
        head = state["conv_1.sk.weight" if trained else "conv_1.weight"]
        c, num_channels = head.shape[:2]
        scale = math.isqrt(state["upsampler.0.weight"].shape[0] // num_channels)
        return {"scale": scale, "feature_channels": int(c), "norm": "no_norm" not in state,
                "num_channels": int(num_channels), "is_train": trained}
