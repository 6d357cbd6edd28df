"""A fused 3x3 convolution in Triton: optional LayerNorm before, activation and residual after, reading the
raw image through PixelUnshuffle (head) or writing the output through PixelShuffle (last layer).

Features are NHWC (channel vectors contiguous). Each program takes ``BLOCK_P`` pixels and all output
channels; the 9 taps are 9 small matmuls (``tl.dot``) accumulated in fp32. The unshuffle, padding,
LayerNorm, activation and pixel shuffle never round-trip device memory.

Correctness is tested on the CPU with ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import triton
import triton.language as tl

ACT_NONE, ACT_GELU, ACT_RELU, ACT_LRELU = 0, 1, 2, 3


@triton.jit
def conv3x3_kernel(
    x_ptr, w_ptr, b_ptr, lnw_ptr, lnb_ptr, y_ptr,
    N, H, W,                      # the feature grid (input and output of the convolution)
    RAW_H, RAW_W,                 # the raw NCHW image, when RAW_IN > 0
    OUT_H, OUT_W,                 # the cropped NCHW output, when OUT_SHUFFLE > 0
    eps,
    CIN: tl.constexpr, CIN_P: tl.constexpr, COUT: tl.constexpr, COUT_P: tl.constexpr,
    RAW_IN: tl.constexpr,         # 0: NHWC features in; S > 0: raw NCHW image read through PixelUnshuffle(S)
    OUT_SHUFFLE: tl.constexpr,    # 0: NHWC features out; S > 0: NCHW image written through PixelShuffle(S)
    HAS_LN: tl.constexpr, ACT: tl.constexpr, RESIDUAL: tl.constexpr, BLOCK_P: tl.constexpr,
):
    pid = tl.program_id(0)
    p = pid * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < N * H * W
    n = p // (H * W)
    hw = p % (H * W)
    h = hw // W
    w = hw % W
    ci = tl.arange(0, CIN_P)
    co = tl.arange(0, COUT_P)
    cmask = ci < CIN
    acc = tl.zeros((BLOCK_P, COUT_P), dtype=tl.float32)
    for t in tl.static_range(9):
        hh = h + (t // 3 - 1)
        ww = w + (t % 3 - 1)
        inside = pmask & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
        m2 = inside[:, None] & cmask[None, :]
        if RAW_IN > 0:
            # PixelUnshuffle channel order: c * S * S + i * S + j; the raw image is replicate-padded
            c = ci // (RAW_IN * RAW_IN)
            i = (ci % (RAW_IN * RAW_IN)) // RAW_IN
            j = ci % RAW_IN
            rh = tl.minimum(hh[:, None] * RAW_IN + i[None, :], RAW_H - 1)
            rw = tl.minimum(ww[:, None] * RAW_IN + j[None, :], RAW_W - 1)
            ptrs = x_ptr + ((n[:, None] * (CIN // (RAW_IN * RAW_IN)) + c[None, :]) * RAW_H + rh) * RAW_W + rw
        else:
            ptrs = x_ptr + ((n * H + hh) * W + ww)[:, None] * CIN + ci[None, :]
        xv = tl.load(ptrs, mask=m2, other=0.0).to(tl.float32)
        if HAS_LN:
            mean = tl.sum(xv, axis=1) / CIN
            d = tl.where(m2, xv - mean[:, None], 0.0)
            var = tl.sum(d * d, axis=1) / CIN
            lw = tl.load(lnw_ptr + ci, mask=cmask, other=0.0).to(tl.float32)
            lb = tl.load(lnb_ptr + ci, mask=cmask, other=0.0).to(tl.float32)
            xv = d * tl.rsqrt(var + eps)[:, None] * lw[None, :] + lb[None, :]
            xv = tl.where(m2, xv, 0.0)  # the convolution zero-pads the normalised map
        wv = tl.load(w_ptr + (t * CIN_P + ci[:, None]) * COUT_P + co[None, :])
        acc += tl.dot(xv.to(wv.dtype), wv)
    comask = co < COUT
    y = acc + tl.load(b_ptr + co, mask=comask, other=0.0).to(tl.float32)[None, :]
    if ACT == 1:
        y = 0.5 * y * (1.0 + tl.math.erf(y * 0.7071067811865476))
    elif ACT == 2:
        y = tl.maximum(y, 0.0)
    elif ACT == 3:
        y = tl.where(y >= 0.0, y, 0.05 * y)
    if RESIDUAL:
        res = tl.load(x_ptr + p[:, None] * CIN + co[None, :], mask=pmask[:, None] & comask[None, :], other=0.0)
        y += res.to(tl.float32)
    if OUT_SHUFFLE > 0:
        c = co // (OUT_SHUFFLE * OUT_SHUFFLE)
        i = (co % (OUT_SHUFFLE * OUT_SHUFFLE)) // OUT_SHUFFLE
        j = co % OUT_SHUFFLE
        oh = h[:, None] * OUT_SHUFFLE + i[None, :]
        ow = w[:, None] * OUT_SHUFFLE + j[None, :]
        omask = pmask[:, None] & comask[None, :] & (oh < OUT_H) & (ow < OUT_W)
        optrs = y_ptr + ((n[:, None] * (COUT // (OUT_SHUFFLE * OUT_SHUFFLE)) + c[None, :]) * OUT_H + oh) * OUT_W + ow
        tl.store(optrs, y.to(y_ptr.dtype.element_ty), mask=omask)
    else:
        tl.store(y_ptr + p[:, None] * COUT + co[None, :], y.to(y_ptr.dtype.element_ty),
                 mask=pmask[:, None] & comask[None, :])
