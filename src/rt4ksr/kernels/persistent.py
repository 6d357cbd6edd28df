"""Kernels v2: a persistent 3x3 convolution that keeps its weights and walks 2-D feature tiles.

``conv3x3_kernel`` (``conv.py``) launches one program per 64 pixels: every program loads all 18 kB of its
weights again, then runs 9 load -> dot steps in series. This kernel computes the same layer (the same
unshuffle, LayerNorm, activation, residual, next-layer LayerNorm, global skip and shuffled output, through
the same helpers) with a grid of a few programs per SM, each looping over ``TH x TW`` pixel tiles:

- ``KEEP_W``: the 9 weight taps and the bias are loaded once per program, before the tile loop, and the taps
  are unrolled; otherwise the taps are a loop that Triton software-pipelines (``STAGES`` >= 2 prefetches the
  next tap's features and weights while the current one multiplies);
- ``STAGES`` also pipelines the tile loop itself: the next tile's loads are issued before this tile's
  epilogue;
- a 2-D tile reads a (TH + 2) x (TW + 2) window for TH x TW outputs, and with ``TH == 1`` the last conv stores
  contiguous 4K rows, as ``conv3x3_kernel``'s row mode does (``ROWS``).

Numerics equal ``conv3x3_kernel``: fp32 accumulation and statistics, the same rounding points. Which tile,
warps, programs per SM and stages are fastest is the card's to say (``rt4ksr kernel-sweep``).
"""

from __future__ import annotations

import triton
import triton.language as tl

from rt4ksr.kernels.conv import _add_skip, _conv_tap, _epilogue, _ln_params, _store


@triton.jit
def _weights(w_ptr, t, ci, co, CIN_P: tl.constexpr, COUT_P: tl.constexpr):
    return tl.load(w_ptr + (t * CIN_P + ci[:, None]) * COUT_P + co[None, :])


@triton.jit
def conv3x3_persistent_kernel(
    x_ptr, w_ptr, b_ptr, lnw_ptr, lnb_ptr, y_ptr, raw_ptr, olnw_ptr, olnb_ptr, skw_ptr,
    N, H, W, RAW_H, RAW_W, OUT_H, OUT_W, eps, out_eps,
    CIN: tl.constexpr, CIN_P: tl.constexpr, COUT: tl.constexpr, COUT_P: tl.constexpr,
    RAW_IN: tl.constexpr, OUT_SHUFFLE: tl.constexpr, HAS_LN: tl.constexpr, ACT: tl.constexpr,
    RESIDUAL: tl.constexpr,
    TH: tl.constexpr, TW: tl.constexpr,  # the pixel tile: TH feature rows by TW columns (powers of two)
    SKIP_K: tl.constexpr = 0, DOWN: tl.constexpr = 1, RAW_C: tl.constexpr = 3, SKIP_CP: tl.constexpr = 16,
    IEEE: tl.constexpr = False, OUT_LN: tl.constexpr = False,
    ROWS: tl.constexpr = False,   # the shuffled output stored in row runs (see conv._store)
    GATHER_R: tl.constexpr = 0, GATHER_Q: tl.constexpr = 0,
    KEEP_W: tl.constexpr = True,  # weights loaded once per program, taps unrolled; False: a pipelined tap loop
    STAGES: tl.constexpr = 1,     # software-pipelining depth of the tile loop (and of the tap loop)
):
    pid = tl.program_id(0)
    tiles_w = tl.cdiv(W, TW)
    tiles_h = tl.cdiv(H, TH)
    ci = tl.arange(0, CIN_P)
    co = tl.arange(0, COUT_P)
    cmask = ci < CIN
    comask = co < COUT
    q = tl.arange(0, TH * TW)
    bias = tl.load(b_ptr + co, mask=comask, other=0.0).to(tl.float32)
    lw, lb = _ln_params(lnw_ptr, lnb_ptr, ci, cmask, HAS_LN)
    if KEEP_W:
        ws = (_weights(w_ptr, 0, ci, co, CIN_P, COUT_P), _weights(w_ptr, 1, ci, co, CIN_P, COUT_P),
              _weights(w_ptr, 2, ci, co, CIN_P, COUT_P), _weights(w_ptr, 3, ci, co, CIN_P, COUT_P),
              _weights(w_ptr, 4, ci, co, CIN_P, COUT_P), _weights(w_ptr, 5, ci, co, CIN_P, COUT_P),
              _weights(w_ptr, 6, ci, co, CIN_P, COUT_P), _weights(w_ptr, 7, ci, co, CIN_P, COUT_P),
              _weights(w_ptr, 8, ci, co, CIN_P, COUT_P))
    for tile in tl.range(pid, N * tiles_h * tiles_w, tl.num_programs(0), num_stages=STAGES):
        img = tile // (tiles_h * tiles_w)
        h0 = (tile // tiles_w) % tiles_h * TH
        w0 = tile % tiles_w * TW
        h = h0 + q // TW
        w = w0 + q % TW
        pmask = (h < H) & (w < W)
        n = img + q * 0
        p = (img * H + h) * W + w
        acc = tl.zeros((TH * TW, COUT_P), dtype=tl.float32)
        if KEEP_W:
            for t in tl.static_range(9):
                acc = _conv_tap(acc, x_ptr, ws[t], t, n, h, w, pmask, ci, cmask, lw, lb, eps, H, W, RAW_H, RAW_W,
                                CIN, RAW_IN, HAS_LN, IEEE)
        else:
            for t in tl.range(0, 9, num_stages=STAGES):
                acc = _conv_tap(acc, x_ptr, _weights(w_ptr, t, ci, co, CIN_P, COUT_P), t, n, h, w, pmask, ci, cmask,
                                lw, lb, eps, H, W, RAW_H, RAW_W, CIN, RAW_IN, HAS_LN, IEEE)
        if SKIP_K > 0:
            acc = _add_skip(acc, raw_ptr, skw_ptr, n, h, w, pmask, co, RAW_H, RAW_W, COUT_P, SKIP_K, DOWN, RAW_C,
                            SKIP_CP, IEEE)
        y = _epilogue(acc, bias, x_ptr, p, pmask, co, comask, olnw_ptr, olnb_ptr, out_eps, CIN, COUT, ACT,
                      RESIDUAL, OUT_LN)
        _store(y, y_ptr, p, pmask, n, h, w, co, comask, img, h0, w0, OUT_H, OUT_W, COUT, COUT_P, OUT_SHUFFLE,
               ROWS, GATHER_R, GATHER_Q, TH, TW)
