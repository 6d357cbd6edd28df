"""Several same-width 3x3 layers (the blocks and the tail) in one Triton launch, with the feature tile kept in a
small per-program scratch between layers instead of a full feature map in device memory.

Each program owns ``RH x RW`` feature pixels around an output tile of ``(RH - 2L) x (RW - 2L)``: layer ``k``
is computed over the whole region, and its valid part shrinks by one pixel per side per layer (the halo is
recomputed, a cost of ``RH * RW / ((RH - 2L) * (RW - 2L))``). Between layers the tile lives in a two-slot
scratch of ``2 * RH * RW * C`` values per program, in global memory. The grid is persistent (a few programs
per SM looping over tiles), which bounds the scratch by the grid, not the image: at 32x32 regions, 32 padded
channels and 4 programs on each of 132 SMs it is about 69 MB, more than an H100's 50 MB L2, so its traffic
reaches device memory; smaller regions or fewer programs per SM keep it in L2. The maps between the group's
layers never exist whole.

Numerics equal ``conv3x3_kernel`` layer by layer: fp32 accumulation and statistics, and the scratch has the
features' dtype, as the per-layer path's maps have.
"""

from __future__ import annotations

import triton
import triton.language as tl

from rt4ksr.kernels.conv import _activate, _layernorm, _tap


@triton.jit
def fused_layers_kernel(
    x_ptr, w_ptr, b_ptr, lnw_ptr, lnb_ptr, olnw_ptr, olnb_ptr, y_ptr, scratch_ptr,
    N, H, W, TILES_H, TILES_W, eps,
    C: tl.constexpr, C_P: tl.constexpr, LAYERS: tl.constexpr, ACT: tl.constexpr,
    # bit k: layer k normalises its input per tap / has the activation / adds the residual / normalises its
    # output with the next layer's LayerNorm (stacked, padded parameters: ln*[k], oln*[k])
    LN_MASK: tl.constexpr, ACT_MASK: tl.constexpr, RES_MASK: tl.constexpr, OUT_LN_MASK: tl.constexpr,
    RH: tl.constexpr, RW: tl.constexpr, BLOCK_P: tl.constexpr,
    IEEE: tl.constexpr = False,   # fp32 weights: exact fp32 products instead of TF32
):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    ci = tl.arange(0, C_P)
    cmask = ci < C
    slot0 = scratch_ptr + pid * (2 * RH * RW * C_P)
    slot1 = slot0 + RH * RW * C_P
    for tile in range(pid, N * TILES_H * TILES_W, nprog):
        n = tile // (TILES_H * TILES_W)
        r = tile % (TILES_H * TILES_W)
        h0 = (r // TILES_W) * (RH - 2 * LAYERS) - LAYERS  # the region's top-left, halo included
        w0 = (r % TILES_W) * (RW - 2 * LAYERS) - LAYERS
        for k in tl.static_range(LAYERS):
            src = slot0 if k % 2 == 1 else slot1  # layer k reads slot (k - 1) % 2, writes slot k % 2
            dst = slot0 if k % 2 == 0 else slot1
            for c0 in range(0, RH * RW, BLOCK_P):
                q = c0 + tl.arange(0, BLOCK_P)
                a = q // RW
                b = q % RW
                gh = h0 + a
                gw = w0 + b
                acc = tl.zeros((BLOCK_P, C_P), dtype=tl.float32)
                for t in tl.static_range(9):
                    da = t // 3 - 1
                    db = t % 3 - 1
                    # the convolution zero-pads its (normalised) input at the image border
                    inside = (gh + da >= 0) & (gh + da < H) & (gw + db >= 0) & (gw + db < W)
                    if k == 0:
                        ptrs = x_ptr + ((n * H + gh + da) * W + gw + db)[:, None] * C + ci[None, :]
                    else:
                        inside = inside & (a + da >= 0) & (a + da < RH) & (b + db >= 0) & (b + db < RW)
                        ptrs = src + ((a + da) * RW + b + db)[:, None] * C_P + ci[None, :]
                    m2 = inside[:, None] & cmask[None, :]
                    xv = tl.load(ptrs, mask=m2, other=0.0).to(tl.float32)
                    if (LN_MASK >> k) & 1:
                        lw = tl.load(lnw_ptr + k * C_P + ci).to(tl.float32)
                        lb = tl.load(lnb_ptr + k * C_P + ci).to(tl.float32)
                        xv = _layernorm(xv, m2, lw, lb, C, eps)
                    wv = tl.load(w_ptr + ((k * 9 + t) * C_P + ci[:, None]) * C_P + ci[None, :])
                    acc = _tap(acc, xv, wv, IEEE)
                yv = acc + tl.load(b_ptr + k * C_P + ci).to(tl.float32)[None, :]
                if (ACT_MASK >> k) & 1:
                    yv = _activate(yv, ACT)
                inimg = (gh >= 0) & (gh < H) & (gw >= 0) & (gw < W)
                if (RES_MASK >> k) & 1:
                    if k == 0:
                        rptrs = x_ptr + ((n * H + gh) * W + gw)[:, None] * C + ci[None, :]
                    else:
                        rptrs = src + q[:, None] * C_P + ci[None, :]
                    yv += tl.load(rptrs, mask=inimg[:, None] & cmask[None, :], other=0.0).to(tl.float32)
                if (OUT_LN_MASK >> k) & 1:  # padded channels come out 0, as the scratch needs
                    lw = tl.load(olnw_ptr + k * C_P + ci).to(tl.float32)
                    lb = tl.load(olnb_ptr + k * C_P + ci).to(tl.float32)
                    yv = _layernorm(yv, cmask[None, :] & (q >= 0)[:, None], lw, lb, C, eps)
                if k == LAYERS - 1:  # the valid centre of the region goes to the output map
                    keep = inimg & (a >= LAYERS) & (a < RH - LAYERS) & (b >= LAYERS) & (b < RW - LAYERS)
                    optrs = y_ptr + ((n * H + gh) * W + gw)[:, None] * C + ci[None, :]
                    tl.store(optrs, yv.to(y_ptr.dtype.element_ty), mask=keep[:, None] & cmask[None, :])
                else:
                    tl.store(dst + q[:, None] * C_P + ci[None, :], yv.to(dst.dtype.element_ty))
            tl.debug_barrier()  # the next layer (or tile) reads what this one wrote, from other threads
