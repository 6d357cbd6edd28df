"""Fused Triton inference for the deploy form of RTSRN (needs the ``triton`` package; GPU for speed).

``TritonRTSRN(deploy_model)`` runs the whole network as one fused launch per layer. It supports the
released design and its plain variants (simplified blocks without channel attention, any activation,
LayerNorm on or off, residual on or off, no gate, no global skip); ``supports(model)`` says why not.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rt4ksr.models.blocks import SimplifiedNAFBlock
from rt4ksr.models.layers import LayerNorm2d
from rt4ksr.models.rtsrn import RTSRN

_ACTS = {nn.GELU: 1, nn.ReLU: 2, nn.LeakyReLU: 3}


def supports(model: nn.Module) -> str | None:
    """None when ``TritonRTSRN`` can run the model, else the reason."""
    if not isinstance(model, RTSRN):
        return "not an RTSRN"
    if not model.is_deploy:
        return "not in deploy form (use rt4ksr.models.reparameterize)"
    if model.forget or model.global_skip != "none":
        return "the gated high-frequency branch and global skips have no kernel yet"
    if not model.config["unshuffle"] and model.multiple > 1:
        return "strided (non-unshuffle) downscaling has no kernel yet"
    for block in model.body:
        if not isinstance(block, SimplifiedNAFBlock) or not isinstance(block.ca, nn.Identity):
            return f"block {type(block).__name__} (with its attention) has no kernel yet"
        if type(block.act) not in _ACTS or (isinstance(block.act, nn.GELU) and block.act.approximate != "none"):
            return f"activation {block.act} has no kernel"
    return None


def _pad_to(n: int) -> int:
    return max(16, 1 << (n - 1).bit_length())


class _Layer:
    """One fused convolution: packed (9, Cin_p, Cout_p) weights, bias, optional LayerNorm and activation."""

    def __init__(self, conv: nn.Conv2d, norm: nn.Module, act: int, residual: bool, dtype: torch.dtype) -> None:
        w = conv.weight.detach()
        cout, cin = w.shape[:2]
        self.cin, self.cout, self.cin_p, self.cout_p = cin, cout, _pad_to(cin), _pad_to(cout)
        packed = torch.zeros(9, self.cin_p, self.cout_p, dtype=dtype, device=w.device)
        packed[:, :cin, :cout] = w.permute(2, 3, 1, 0).reshape(9, cin, cout).to(dtype)
        self.weight = packed.contiguous()
        self.bias = conv.bias.detach().float().contiguous()
        self.ln = isinstance(norm, LayerNorm2d)
        self.ln_w = norm.weight.detach().float().contiguous() if self.ln else self.bias
        self.ln_b = norm.bias.detach().float().contiguous() if self.ln else self.bias
        self.eps = float(norm.eps) if self.ln else 0.0
        self.act, self.residual = act, residual


class TritonRTSRN(nn.Module):
    """The deploy form as fused Triton launches: head (reads the image through PixelUnshuffle), one launch
    per block (LayerNorm + conv + act [+ x]), tail (LayerNorm + conv), last conv writing the pixel-shuffled,
    cropped output. fp16 on CUDA by default."""

    def __init__(self, model: RTSRN, dtype: torch.dtype | None = None, block_p: int = 64) -> None:
        super().__init__()
        reason = supports(model)
        if reason is not None:
            raise ValueError(f"TritonRTSRN cannot run this model: {reason}")
        p = next(model.parameters())
        self.dtype = dtype or (torch.float16 if p.is_cuda else torch.float32)
        self.scale, self.down = model.scale, model.multiple
        self.block_p = block_p
        act = _ACTS[type(model.body[0].act)] if len(model.body) else 1
        self.layers = [_Layer(model.head[0], nn.Identity(), 0, False, self.dtype)]
        for b in model.body:
            self.layers.append(_Layer(b.conv1, b.norm, act, b.residual, self.dtype))
        self.layers.append(_Layer(model.tail[1], model.tail[0], 0, False, self.dtype))
        self.layers.append(_Layer(model.upsample[0], nn.Identity(), 0, False, self.dtype))

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        from rt4ksr.kernels.conv import conv3x3_kernel

        n, c, h, w = x.shape
        d, s = self.down, self.scale
        fh, fw = -(-h // d), -(-w // d)
        x = x.to(self.dtype).contiguous()
        out = torch.empty(n, c, h * s, w * s, dtype=self.dtype, device=x.device)
        grid = ((n * fh * fw + self.block_p - 1) // self.block_p,)
        feats = x
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            y = out if k == last else torch.empty(n, fh, fw, layer.cout, dtype=self.dtype, device=x.device)
            conv3x3_kernel[grid](
                feats, layer.weight, layer.bias, layer.ln_w, layer.ln_b, y,
                n, fh, fw, h, w, h * s, w * s, layer.eps,
                CIN=layer.cin, CIN_P=layer.cin_p, COUT=layer.cout, COUT_P=layer.cout_p,
                RAW_IN=d if k == 0 else 0, OUT_SHUFFLE=s * d if k == last else 0,
                HAS_LN=layer.ln, ACT=layer.act, RESIDUAL=layer.residual, BLOCK_P=self.block_p,
            )
            feats = y
        return out
