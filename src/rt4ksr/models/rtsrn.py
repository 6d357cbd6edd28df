"""RTSRN, the network of RT4KSR, with every option of the released command line."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rt4ksr.models.blocks import ExpandResConv, SimplifiedNAFBlock
from rt4ksr.models.layers import HighPass, LayerNorm2d, make_activation
from rt4ksr.models.reparam import deploy_
from rt4ksr.models.skip import skip_conv, skip_kernel

TYPES = ("base", "rep")
SKIPS = ("none", "nearest", "bicubic")


class RTSRN(nn.Module):
    """Unshuffle -> head -> body of blocks -> LayerNorm tail -> conv + PixelShuffle to ``scale`` x the input.

    Any H x W is accepted: the input is padded (replicate) to a multiple of ``downscaling`` and the output is
    cropped back to exactly (scale*H) x (scale*W). The high-frequency branch (``use_hfb``) reaches the output
    only through the ``forget`` gate, as in the released code; without the gate it is kept in the training
    form (so the official checkpoints load strictly) but neither computed nor kept in the deploy form.
    """

    # what the commands ask of every architecture (see rt4ksr.models.design.Design)
    design: ClassVar[str] = "RTSRN"
    preset: ClassVar[str] = "rt4ksr_x2"
    source: ClassVar[str] = ("Zamfir, Conde, Timofte, CVPRW 2023 (arXiv 2305.07218); the released code, "
                             "eduardzamfir/RT4KSR, whose checkpoints load strictly")
    # keys that only the training form has: the expand/fea/reduce branches, RepConv, the ungated branch
    train_keys: ClassVar[str] = r"(expand_conv|fea_conv|reduce_conv|conv1x1|seq_1x1|beta\.scale|^gamma$|^hfb\.)"

    def __init__(
        self,
        scale: int = 2,
        type: str = "rep",  # noqa: A002 - the released option's name
        num_blocks: int = 4,
        feature_channels: int = 24,
        act_type: str = "gelu",
        baseblock: Callable[..., nn.Module] = SimplifiedNAFBlock,
        downscaling: int = 2,
        unshuffle: bool = True,
        use_hfb: bool = True,
        use_gaussian: bool = True,
        forget: bool = False,
        layernorm: bool = True,
        residual: bool = False,
        squeeze: bool = False,
        eca_gamma: float = 0.0,
        global_skip: str = "none",
        is_train: bool = True,
        num_channels: int = 3,
    ) -> None:
        super().__init__()
        if type not in TYPES:
            raise ValueError(f"type must be one of {TYPES}, got {type!r}")
        if scale < 1 or downscaling < 1:
            raise ValueError(f"scale and downscaling must be >= 1, got {scale} and {downscaling}")
        if global_skip not in SKIPS:
            raise ValueError(f"global_skip must be one of {SKIPS}, got {global_skip!r}")
        if forget and not use_hfb:
            raise ValueError("forget gates the high-frequency branch: it needs use_hfb=true")
        make_activation(act_type)  # fail early on an unknown activation
        self.config = _config_of(locals())
        self.scale, self.multiple, self.forget, self.global_skip = scale, downscaling, forget, global_skip
        c = feature_channels
        d_in = downscaling if unshuffle else 1

        def conv3x3() -> nn.Module:
            return ExpandResConv(c) if type == "rep" else nn.Conv2d(c, c, 3, padding=1)

        self.down = nn.PixelUnshuffle(downscaling) if unshuffle and downscaling > 1 else nn.Identity()
        stride = 1 if unshuffle else downscaling
        self.head = nn.Sequential(nn.Conv2d(num_channels * d_in**2, c, 3, stride=stride, padding=1))
        if use_hfb:
            self.gamma = nn.Parameter(torch.zeros(1))
            self.highpass = HighPass() if use_gaussian else nn.Identity()
            self.hfb = nn.Sequential(conv3x3(), make_activation(act_type))
            if not forget:  # dead: no gradient ever reaches it; frozen so that optimizers and DDP skip it
                for p in (self.gamma, *self.hfb.parameters()):
                    p.requires_grad_(False)
        self.body = nn.Sequential(*(
            baseblock(channels=c, act_type=act_type, layernorm=layernorm, residual=residual,
                      squeeze=squeeze, eca_gamma=eca_gamma)
            for _ in range(num_blocks)
        ))
        self.tail = nn.Sequential(LayerNorm2d(c) if layernorm else nn.Identity(), conv3x3())
        up = scale * downscaling
        self.upsample = nn.Sequential(nn.Conv2d(c, num_channels * up**2, 3, padding=1), nn.PixelShuffle(up))
        if global_skip != "none":  # start exactly at the interpolated input; the network learns the residual
            nn.init.zeros_(self.upsample[0].weight)
            nn.init.zeros_(self.upsample[0].bias)
            # what exported graphs run for the skip (a constant, not part of the weights)
            self.register_buffer("skip_kernel", skip_kernel(global_skip, scale, downscaling, num_channels).float(),
                                 persistent=False)
        if not is_train:
            self._to_deploy_()

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.config["num_channels"]:
            raise ValueError(f"expected an (N, {self.config['num_channels']}, H, W) tensor, "
                             f"got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw or torch.jit.is_tracing():  # traced graphs (ONNX, TorchScript) pad for every input size
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        feats = self.body(self.head(self.down(x)))
        if self.forget:
            hf = self.hfb(self.head(self.down(self.highpass(x))))
            feats = self.gamma * feats + hf
        out = self.upsample(self.tail(feats))
        if self.global_skip != "none" and torch.jit.is_tracing():  # exported graphs: the skip as a convolution
            out = out + skip_conv(x, self.skip_kernel, self.scale, self.multiple)
        elif self.global_skip != "none":  # the network learns a residual over an interpolated input
            out = out + F.interpolate(x, scale_factor=self.scale, mode=self.global_skip,
                                      **({"align_corners": False} if self.global_skip == "bicubic" else {}))
        return out[..., : h * self.scale, : w * self.scale]

    def to_deploy(self) -> RTSRN:
        """A fused copy (see ``rt4ksr.models.reparameterize``)."""
        new = copy.deepcopy(self)
        new._to_deploy_()
        return new

    def _to_deploy_(self) -> None:
        deploy_(self)
        self.config["is_train"] = False
        if hasattr(self, "hfb") and not self.forget:
            del self.gamma, self.highpass, self.hfb  # cannot reach the output

    @property
    def is_deploy(self) -> bool:
        return not self.config["is_train"]

    def published_params(self) -> tuple[int, str] | None:
        """The released x2 design (24 channels, 4 blocks, no skip), as the NTIRE 2023 Real-Time SR report counts
        it: 0.0445 M, the RTSRN baseline of its table 1. That is the fused network with its ungated
        high-frequency branch kept (one 3x3 convolution and gamma: 5,209); rt4ksr's deploy form drops that
        branch, since it cannot reach the output, and has 5,209 fewer."""
        c = self.config
        released = (c["feature_channels"], c["num_blocks"], c["downscaling"], c["unshuffle"], c["use_hfb"],
                    c["forget"], c["global_skip"]) == (24, 4, 2, True, True, False, "none")
        if released and self.scale == 2:
            return 44_521, "NTIRE 2023 Real-Time SR report, table 1: 0.0445 M (fused, dead branch kept)"
        return None

    @classmethod
    def matches(cls, state: Mapping[str, Tensor]) -> bool:
        """RTSRN's head and pixel-shuffle convolutions, and blocks under ``body.<i>.<part>``."""
        return "head.0.weight" in state and "upsample.0.weight" in state

    @classmethod
    def adapt_state(cls, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return dict(state)

    @classmethod
    def config_of_state(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        """The released architecture's hyper-parameters, read off an official state dict's shapes."""
        c = state["head.0.weight"].shape[0]
        up = int(round((state["upsample.0.weight"].shape[0] / 3) ** 0.5))
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
        return dict(scale=up // 2, feature_channels=c, num_blocks=len(blocks))


def _config_of(args: dict[str, Any]) -> dict[str, Any]:
    """The constructor's arguments as plain values, with the block as a Hydra partial, for export and reload."""
    cfg = {k: v for k, v in args.items() if k not in ("self", "__class__")}
    block = cfg["baseblock"]
    fn, kwargs = (block.func, dict(block.keywords)) if isinstance(block, functools.partial) else (block, {})
    cfg["baseblock"] = {"_target_": f"{fn.__module__}.{fn.__qualname__}", "_partial_": True, **kwargs}
    return cfg
