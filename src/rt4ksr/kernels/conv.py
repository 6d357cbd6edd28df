"""A fused 3x3 convolution in Triton: optional LayerNorm before, activation and residual after, reading the
raw image through PixelUnshuffle (head) or writing the output through PixelShuffle (last layer), where it
also adds the network's global skip.

The skip (nearest or bicubic upsampling of the input) is, for an integer scale, a fixed linear map from a
small window of the PixelUnshuffled input to the last conv's pixel-shuffle channels: a second convolution
(``SKIP_K`` x ``SKIP_K`` taps on the unshuffled image, weights from ``rt4ksr.models.skip.skip_weights``). It
runs on the tensor cores beside the main one, instead of 16 gathers per output value.

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
def _layernorm(v, m2, w, b, n: tl.constexpr, eps):
    """LayerNorm over the channels (axis 1) of a (pixels, channels) fp32 tile; masked entries come out 0."""
    mean = tl.sum(tl.where(m2, v, 0.0), axis=1) / n
    d = tl.where(m2, v - mean[:, None], 0.0)
    var = tl.sum(d * d, axis=1) / n
    return tl.where(m2, d * tl.rsqrt(var + eps)[:, None] * w[None, :] + b[None, :], 0.0)


@triton.jit
def _activate(y, ACT: tl.constexpr):
    """The block activation on an fp32 tile: 1 GELU (erf), 2 ReLU, 3 LeakyReLU(0.05), else identity."""
    if ACT == 1:
        y = 0.5 * y * (1.0 + tl.math.erf(y * 0.7071067811865476))
    elif ACT == 2:
        y = tl.maximum(y, 0.0)
    elif ACT == 3:
        y = tl.where(y >= 0.0, y, 0.05 * y)
    return y


@triton.jit
def _tap(acc, xv, wv, IEEE: tl.constexpr):
    """acc + xv @ wv: fp32 weights get exact fp32 products (a GPU's default for fp32 dots is TF32), half
    weights take the features in their dtype; fp32 accumulation either way."""
    if IEEE:
        acc += tl.dot(xv, wv, input_precision="ieee")
    else:
        acc += tl.dot(xv.to(wv.dtype), wv)
    return acc


@triton.jit
def _input_tap(x_ptr, n, hh, ww, inside, ci, cmask, H, W, RAW_H, RAW_W, CIN: tl.constexpr, RAW_IN: tl.constexpr):
    """One tap's (pixels, CIN_P) fp32 tile, zero outside the map: NHWC features, or (RAW_IN = S > 0) the raw
    NCHW image read through PixelUnshuffle(S) with replicate padding. Returns the tile and its mask."""
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
    return tl.load(ptrs, mask=m2, other=0.0).to(tl.float32), m2


@triton.jit
def _ln_params(lnw_ptr, lnb_ptr, ci, cmask, HAS_LN: tl.constexpr):
    """The input LayerNorm's weight and bias (fp32, zero where unused); read only when the layer has one, as
    the pointers then hold CIN values."""
    if HAS_LN:
        lw = tl.load(lnw_ptr + ci, mask=cmask, other=0.0).to(tl.float32)
        lb = tl.load(lnb_ptr + ci, mask=cmask, other=0.0).to(tl.float32)
    else:
        lw = tl.zeros(ci.shape, dtype=tl.float32)
        lb = tl.zeros(ci.shape, dtype=tl.float32)
    return lw, lb


@triton.jit
def _conv_tap(acc, x_ptr, wv, t, n, h, w, pmask, ci, cmask, lw, lb, eps, H, W, RAW_H, RAW_W, CIN: tl.constexpr,
              RAW_IN: tl.constexpr, HAS_LN: tl.constexpr, IEEE: tl.constexpr):
    """``acc`` plus tap ``t`` (0-8, row-major over the 3x3 window) of the convolution: the shifted input tile,
    zero outside the map, normalised when the layer has its own LayerNorm, times the tap's weights ``wv``."""
    hh = h + (t // 3 - 1)
    ww = w + (t % 3 - 1)
    inside = pmask & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
    xv, m2 = _input_tap(x_ptr, n, hh, ww, inside, ci, cmask, H, W, RAW_H, RAW_W, CIN, RAW_IN)
    if HAS_LN:  # the convolution zero-pads the normalised map: masked taps stay 0
        xv = _layernorm(xv, m2, lw, lb, CIN, eps)
    return _tap(acc, xv, wv, IEEE)


@triton.jit
def _add_skip(acc, raw_ptr, skw_ptr, n, h, w, pmask, co, RAW_H, RAW_W, COUT_P: tl.constexpr,
              SKIP_K: tl.constexpr, DOWN: tl.constexpr, RAW_C: tl.constexpr, SKIP_CP: tl.constexpr,
              IEEE: tl.constexpr):
    """acc + the global skip, a SKIP_K x SKIP_K conv of the unshuffled raw image; its replicate padding is
    index clamping, also at the grid's edge."""
    ri = tl.arange(0, SKIP_CP)
    c = ri // (DOWN * DOWN)
    i = (ri % (DOWN * DOWN)) // DOWN
    j = ri % DOWN
    m2 = pmask[:, None] & (ri < RAW_C * DOWN * DOWN)[None, :]
    for t in tl.static_range(SKIP_K * SKIP_K):
        rh = (h + (t // SKIP_K - SKIP_K // 2))[:, None] * DOWN + i[None, :]
        rw = (w + (t % SKIP_K - SKIP_K // 2))[:, None] * DOWN + j[None, :]
        rh = tl.minimum(tl.maximum(rh, 0), RAW_H - 1)
        rw = tl.minimum(tl.maximum(rw, 0), RAW_W - 1)
        v = tl.load(raw_ptr + ((n[:, None] * RAW_C + c[None, :]) * RAW_H + rh) * RAW_W + rw, mask=m2, other=0.0)
        sw = tl.load(skw_ptr + (t * SKIP_CP + ri[:, None]) * COUT_P + co[None, :])
        acc = _tap(acc, v.to(tl.float32), sw, IEEE)
    return acc


@triton.jit
def _epilogue(acc, bias, x_ptr, p, pmask, co, comask, olnw_ptr, olnb_ptr, out_eps, CIN: tl.constexpr,
              COUT: tl.constexpr, ACT: tl.constexpr, RESIDUAL: tl.constexpr, OUT_LN: tl.constexpr):
    """Bias, activation, residual (the input at the same pixels) and the next layer's LayerNorm, in fp32."""
    y = acc + bias[None, :]
    y = _activate(y, ACT)
    if RESIDUAL:
        res = tl.load(x_ptr + p[:, None] * CIN + co[None, :], mask=pmask[:, None] & comask[None, :], other=0.0)
        y += res.to(tl.float32)
    if OUT_LN:
        lw = tl.load(olnw_ptr + co, mask=comask, other=0.0).to(tl.float32)
        lb = tl.load(olnb_ptr + co, mask=comask, other=0.0).to(tl.float32)
        y = _layernorm(y, pmask[:, None] & comask[None, :], lw, lb, COUT, out_eps)
    return y


@triton.jit
def _store(y, y_ptr, p, pmask, n, h, w, co, comask, img, h0, w0, OUT_H, OUT_W,
           COUT: tl.constexpr, COUT_P: tl.constexpr, S: tl.constexpr, ROWS: tl.constexpr,
           GATHER_R: tl.constexpr, GATHER_Q: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr):
    """Write a (pixels, COUT_P) tile: NHWC features (S = 0), or the NCHW image through PixelShuffle(S), cropped.

    ``ROWS``: the tile is TH x TW feature pixels of image ``img`` from (h0, w0), in row-major order, and is
    rearranged to (c, a, i) x (b, j) rows and columns, so each row is a contiguous run of one output row, stored
    in vectors rather than 2-byte scatters: a reshape and permute when S is a power of two, else (x3: 6) a gather
    from the flattened tile into a padded GATHER_R x GATHER_Q tile. Otherwise each value is scattered.
    """
    if S > 0 and ROWS and GATHER_R > 0:
        flat = tl.reshape(y.to(y_ptr.dtype.element_ty), (TH * TW * COUT_P,))
        rr = tl.arange(0, GATHER_R)
        qq = tl.arange(0, GATHER_Q)
        c = rr // (TH * S)
        a = (rr // S) % TH
        i = rr % S
        src = ((a * TW)[:, None] + (qq // S)[None, :]) * COUT_P + (c * S * S + i * S)[:, None] + (qq % S)[None, :]
        ok = (rr < (COUT // (S * S)) * TH * S)[:, None] & (qq < TW * S)[None, :]
        g = tl.gather(flat, tl.reshape(tl.where(ok, src, 0), (GATHER_R * GATHER_Q,)), 0)
        oh = (h0 + a) * S + i
        ow = w0 * S + qq
        plane = img * (COUT // (S * S)) + c
        omask = ok & (oh < OUT_H)[:, None] & (ow < OUT_W)[None, :]
        tl.store(y_ptr + (plane * OUT_H + oh)[:, None] * OUT_W + ow[None, :],
                 tl.reshape(g, (GATHER_R, GATHER_Q)), mask=omask)
    elif S > 0 and ROWS:
        CP: tl.constexpr = COUT_P // (S * S)
        t5 = tl.reshape(y.to(y_ptr.dtype.element_ty), (TH, TW, CP, S, S))
        t2 = tl.reshape(tl.permute(t5, (2, 0, 3, 1, 4)), (CP * TH * S, TW * S))
        rr = tl.arange(0, CP * TH * S)
        cc = tl.arange(0, TW * S)
        c = rr // (TH * S)
        oh = (h0 + (rr // S) % TH) * S + rr % S
        ow = w0 * S + cc
        plane = img * (COUT // (S * S)) + c
        omask = ((c < COUT // (S * S)) & (oh < OUT_H))[:, None] & (ow < OUT_W)[None, :]
        tl.store(y_ptr + (plane * OUT_H + oh)[:, None] * OUT_W + ow[None, :], t2, mask=omask)
    elif S > 0:
        c = co // (S * S)
        i = (co % (S * S)) // S
        j = co % S
        oh = h[:, None] * S + i[None, :]
        ow = w[:, None] * S + j[None, :]
        omask = pmask[:, None] & comask[None, :] & (oh < OUT_H) & (ow < OUT_W)
        optrs = y_ptr + ((n[:, None] * (COUT // (S * S)) + c[None, :]) * OUT_H + oh) * OUT_W + ow
        tl.store(optrs, y.to(y_ptr.dtype.element_ty), mask=omask)
    else:
        tl.store(y_ptr + p[:, None] * COUT + co[None, :], y.to(y_ptr.dtype.element_ty),
                 mask=pmask[:, None] & comask[None, :])


@triton.jit
def conv3x3_kernel(
    x_ptr, w_ptr, b_ptr, lnw_ptr, lnb_ptr, y_ptr, raw_ptr, olnw_ptr, olnb_ptr, skw_ptr,
    N, H, W,                      # the feature grid (input and output of the convolution)
    RAW_H, RAW_W,                 # the raw NCHW image (read by the head, RAW_IN > 0, and by the global skip)
    OUT_H, OUT_W,                 # the cropped NCHW output, when OUT_SHUFFLE > 0
    eps, out_eps,
    CIN: tl.constexpr, CIN_P: tl.constexpr, COUT: tl.constexpr, COUT_P: tl.constexpr,
    RAW_IN: tl.constexpr,         # 0: NHWC features in; S > 0: raw NCHW image read through PixelUnshuffle(S)
    OUT_SHUFFLE: tl.constexpr,    # 0: NHWC features out; S > 0: NCHW image written through PixelShuffle(S)
    HAS_LN: tl.constexpr, ACT: tl.constexpr, RESIDUAL: tl.constexpr, BLOCK_P: tl.constexpr,
    SKIP_K: tl.constexpr = 0,     # > 0: add the skip, a SKIP_K x SKIP_K conv of the unshuffled raw image
    DOWN: tl.constexpr = 1,       # the unshuffle factor of the skip's input (the feature grid's stride)
    RAW_C: tl.constexpr = 3,      # image channels
    SKIP_CP: tl.constexpr = 16,   # RAW_C * DOWN * DOWN padded to a power of two (>= 16)
    IEEE: tl.constexpr = False,   # fp32 weights: exact fp32 products instead of TF32
    OUT_LN: tl.constexpr = False,  # normalise the output with the next layer's LayerNorm (once per pixel, here)
    ROWS: tl.constexpr = False,   # programs along feature rows, so the shuffled output rows are contiguous runs
    GATHER_R: tl.constexpr = 0,   # > 0 (a shuffle that is no power of two): rows and columns of the gathered
    GATHER_Q: tl.constexpr = 0,   # output tile, COUT // S and BLOCK_P * S padded to powers of two
):
    pid = tl.program_id(0)
    if ROWS:  # each program takes BLOCK_P pixels of one feature row, so its output rows are contiguous runs
        wb = tl.cdiv(W, BLOCK_P)
        row = pid // wb
        w = (pid % wb) * BLOCK_P + tl.arange(0, BLOCK_P)
        pmask = w < W  # the grid is exactly N * H rows of cdiv(W, BLOCK_P) programs
        p = row * W + w
        n = p // (H * W)
        h = (p % (H * W)) // W
    else:
        row = pid  # unused: only the row stores read it
        wb = 1
        p = pid * BLOCK_P + tl.arange(0, BLOCK_P)
        pmask = p < N * H * W
        n = p // (H * W)
        hw = p % (H * W)
        h = hw // W
        w = hw % W
    ci = tl.arange(0, CIN_P)
    co = tl.arange(0, COUT_P)
    cmask = ci < CIN
    comask = co < COUT
    acc = tl.zeros((BLOCK_P, COUT_P), dtype=tl.float32)
    lw, lb = _ln_params(lnw_ptr, lnb_ptr, ci, cmask, HAS_LN)
    for t in tl.static_range(9):
        wv = tl.load(w_ptr + (t * CIN_P + ci[:, None]) * COUT_P + co[None, :])
        acc = _conv_tap(acc, x_ptr, wv, t, n, h, w, pmask, ci, cmask, lw, lb, eps, H, W, RAW_H, RAW_W, CIN, RAW_IN,
                        HAS_LN, IEEE)
    if SKIP_K > 0:
        acc = _add_skip(acc, raw_ptr, skw_ptr, n, h, w, pmask, co, RAW_H, RAW_W, COUT_P, SKIP_K, DOWN, RAW_C,
                        SKIP_CP, IEEE)
    bias = tl.load(b_ptr + co, mask=comask, other=0.0).to(tl.float32)
    y = _epilogue(acc, bias, x_ptr, p, pmask, co, comask, olnw_ptr, olnb_ptr, out_eps, CIN, COUT, ACT, RESIDUAL,
                  OUT_LN)
    _store(y, y_ptr, p, pmask, n, h, w, co, comask, row // H, row % H, (pid % wb) * BLOCK_P, OUT_H, OUT_W,
           COUT, COUT_P, OUT_SHUFFLE, ROWS, GATHER_R, GATHER_Q, 1, BLOCK_P)
