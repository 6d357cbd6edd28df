"""``TritonRTSRN``: the deploy form of RTSRN as Triton launches, one per layer or fused in groups (see the package
docstring); ``supports(model)`` says whether it can run a model. Triton is imported when the launches are built."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rt4ksr.core.errors import ConfigValueError
from rt4ksr.models.blocks import SimplifiedNAFBlock
from rt4ksr.models.layers import LayerNorm2d
from rt4ksr.models.rtsrn import RTSRN
from rt4ksr.models.skip import skip_weights

__all__ = ["Launch", "TritonRTSRN", "skip_weights", "supports"]

_ACTS = {nn.GELU: 1, nn.ReLU: 2, nn.LeakyReLU: 3}


def supports(model: nn.Module) -> str | None:
    """None when ``TritonRTSRN`` can run the model, else the reason."""
    if not isinstance(model, RTSRN):
        return "not an RTSRN"
    if not model.is_deploy:
        return "not in deploy form (use rt4ksr.models.reparameterize)"
    if model.forget:
        return "the gated high-frequency branch has no kernel yet"
    if not model.config["unshuffle"] and model.multiple > 1:
        return "strided (non-unshuffle) downscaling has no kernel yet"
    for block in model.body:
        if not isinstance(block, SimplifiedNAFBlock) or not isinstance(block.ca, nn.Identity):
            return f"block {type(block).__name__} (with its attention) has no kernel yet"
        if type(block.act) not in _ACTS or (isinstance(block.act, nn.GELU) and block.act.approximate != "none"):
            return f"activation {block.act} has no kernel"
    return None


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _pad_to(n: int) -> int:
    return max(16, _pow2(n))


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
        self.out_ln, self.oln_w, self.oln_b, self.out_eps = False, self.bias, self.bias, 0.0


def _hoist_norms(layers: list[_Layer]) -> None:
    """Move each LayerNorm whose layer needs no residual into the previous layer's epilogue.

    A convolution kernel that normalises its input does so for each of its 9 taps, on every pixel it loads:
    9x the statistics and 9x the elementwise work, on CUDA cores, beside a tiny matmul. The producer has each
    pixel's channel vector once, in fp32, before rounding: normalising there is cheaper and no less exact, and
    the zero padding of the normalised map is what the consumer's masked loads give. A layer with a residual
    keeps its own LayerNorm, since it adds its raw input.
    """
    for prev, layer in itertools.pairwise(layers):
        if layer.ln and not layer.residual and prev.cout == layer.cin:
            prev.out_ln, prev.oln_w, prev.oln_b, prev.out_eps = True, layer.ln_w, layer.ln_b, layer.eps
            layer.ln = False


class _Group:
    """Consecutive same-width layers run by one ``fused_layers_kernel`` launch: stacked, padded parameters."""

    def __init__(self, layers: list[_Layer]) -> None:
        first = layers[0]
        self.n, self.c, self.c_p = len(layers), first.cin, first.cin_p
        eps = {la.eps for la in layers if la.ln} | {la.out_eps for la in layers if la.out_ln}
        if len(eps) > 1:
            raise ValueError(f"one fused group needs one LayerNorm eps, got {sorted(eps)}")
        self.eps = eps.pop() if eps else 0.0
        self.weight = torch.stack([la.weight for la in layers]).contiguous()
        zeros = torch.zeros(self.c_p, device=first.bias.device)
        fields = ("bias", "ln_w", "ln_b", "oln_w", "oln_b")
        pad = [torch.cat([getattr(la, f), zeros[getattr(la, f).numel():]]) for la in layers for f in fields]
        self.bias, self.ln_w, self.ln_b, self.oln_w, self.oln_b = (
            torch.stack(pad[i::len(fields)]).contiguous() for i in range(len(fields)))
        self.act = max(la.act for la in layers)
        self.masks = {name: sum(1 << k for k, la in enumerate(layers) if getattr(la, attr))
                      for name, attr in (("LN_MASK", "ln"), ("ACT_MASK", "act"), ("RES_MASK", "residual"),
                                         ("OUT_LN_MASK", "out_ln"))}


def _conv_shape(block_p: int, cout_p: int, reads_image: bool, heavy: bool, num_warps: int | None
                ) -> tuple[int, int]:
    """Pixels per program and warps for one conv launch, keeping about 16 accumulators per thread.

    The accumulator tile is BLOCK_P x COUT_P in fp32, spread over the program's threads. Compiled for sm_90
    (``rt4ksr.kernels.aot``), 64 pixels x 32 channels on 4 warps take 56 registers, but x3's last conv
    (108 -> 128 channels) at the same shape takes 255 and spills, so wide layers get fewer pixels and more
    warps. ``heavy`` launches (fp32 operands, or the last conv with the skip's taps on the image) get half the
    pixels. The head computes an unshuffle address per element: 32 pixels on 8 warps (64 registers, against
    127 for 64 on 4). ``num_warps`` overrides.
    """
    budget = 2048 if heavy else 4096
    bp = min(block_p, 32 if reads_image else max(16, budget // cout_p))
    if num_warps is None:
        num_warps = 8 if reads_image or cout_p >= 64 or bp * cout_p > 2048 else 4
    return bp, num_warps


def _tile_shape(tile: tuple[int, int], cout_p: int, reads_image: bool, heavy: bool, num_warps: int | None
                ) -> tuple[tuple[int, int], int]:
    """The persistent kernel's tile and warps for one layer: ``tile`` shrunk (rows first) until its fp32
    accumulators fit the budget that ``_conv_shape`` keeps (4096, 2048 for heavy launches, 64 pixels for the
    head), with 8 warps, as there, for wide layers, wide tiles and the head's unshuffle addressing (compiled
    for sm_90: no spills at the defaults). ``num_warps`` overrides."""
    th, tw = tile
    budget = 2048 if heavy else 4096
    if reads_image:
        budget = min(budget, 64 * cout_p)
    while th * tw * cout_p > budget and th * tw > 16:
        if th > 1:
            th //= 2
        else:
            tw //= 2
    if num_warps is None:
        num_warps = 8 if reads_image or cout_p >= 64 or th * tw * cout_p > 2048 else 4
    return (th, tw), num_warps


OPTIONS = ("fuse", "block_p", "region", "programs_per_sm", "num_warps", "row_stores", "persistent", "tile",
           "keep_weights", "stages")


def options_error(**options: Any) -> str | None:
    """What is wrong with ``TritonRTSRN`` keyword options, in one line, or None: commands check a user's
    ``kernel_options`` with it before loading anything, and the constructor checks its own arguments."""
    def pow2(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1 and not v & (v - 1)

    def pair(v: object) -> bool:
        return isinstance(v, list | tuple) and len(v) == 2 and all(pow2(t) for t in v)

    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        return f"unknown kernel option {unknown[0]!r}; the options are {', '.join(OPTIONS)}"
    fuse = options.get("fuse", 1)
    if not isinstance(fuse, int) or isinstance(fuse, bool) or fuse < 1:
        return f"fuse must be an integer >= 1, got {fuse!r}"
    if not pow2(options.get("block_p", 64)):
        return f"block_p must be a power of two, got {options.get('block_p')!r}"
    region = options.get("region", (32, 32))
    if not pair(region) or min(region) <= 2 * fuse:
        return f"region must be two powers of two larger than 2 * fuse ({2 * fuse}), got {region!r}"
    tile = options.get("tile", (8, 16))
    if not pair(tile) or tile[0] * tile[1] < 16:
        return f"tile must be two powers of two with at least 16 pixels, e.g. [8, 16], got {tile!r}"
    for key in ("programs_per_sm", "stages"):
        v = options.get(key, 1)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            return f"{key} must be an integer >= 1, got {v!r}"
    warps = options.get("num_warps")
    if warps is not None and warps not in (1, 2, 4, 8, 16):
        return f"num_warps must be 1, 2, 4, 8, 16 or null (the kernels' choice), got {warps!r}"
    for key in ("row_stores", "persistent", "keep_weights"):
        if not isinstance(options.get(key, True), bool):
            return f"{key} must be true or false, got {options[key]!r}"
    return None


def kernel_options(node: Any) -> dict[str, Any]:
    """A command's ``kernel_options`` config as ``TritonRTSRN`` keywords, checked: a ``ConfigValueError`` naming
    the option otherwise, before any work is done."""
    from omegaconf import OmegaConf


    options = OmegaConf.to_container(node) if OmegaConf.is_config(node) else dict(node or {})
    error = options_error(**options)
    if error:
        raise ConfigValueError(f"kernel_options: {error}")
    return options


def variants(families: list[str], fuses: list[int], block_ps: list[int], region: tuple[int, int],
             row_stores: list[bool], tiles: list[tuple[int, int]], keep_weights: list[bool], stages: list[int],
             programs_per_sm: list[int], num_warps: list[int]) -> list[dict[str, Any]]:
    """``TritonRTSRN`` keyword sets: v1 is fuse x block_p x row_stores, and x programs_per_sm where fuse > 1
    (its persistent grid: fewer programs, a smaller scratch); v2 is tile x keep_weights x stages x
    programs_per_sm x num_warps x row_stores (``num_warps`` 0: the kernels' own choice per launch)."""
    out: list[dict[str, Any]] = []
    if "v1" in families:
        for f, b, r in itertools.product(fuses, block_ps, row_stores):
            base = {"fuse": f, "block_p": b, "region": tuple(region), "row_stores": r}
            out += [{**base, "programs_per_sm": p} for p in programs_per_sm] if f > 1 else [base]
    if "v2" in families:
        out += [{"persistent": True, "tile": tuple(t), "keep_weights": k, "stages": s, "programs_per_sm": p,
                 "num_warps": w or None, "row_stores": r}
                for t, k, s, p, w, r in itertools.product(tiles, keep_weights, stages, programs_per_sm, num_warps,
                                                          row_stores)]
    return out


def describe(options: dict[str, Any]) -> str:
    """A short name of an option set for tables: ``v1 fuse=2 block_p=64 rows``, ``v2 tile=8x16 keep s2 pps4``."""
    stores = "rows" if options.get("row_stores", True) else "scatter"
    warps = f" w{options['num_warps']}" if options.get("num_warps") else ""
    if options.get("persistent"):
        th, tw = options.get("tile", (8, 16))
        return (f"v2 tile={th}x{tw} {'keep' if options.get('keep_weights', True) else 'loop'} "
                f"s{options.get('stages', 1)} pps{options.get('programs_per_sm', 4)}{warps} {stores}")
    fuse = options.get("fuse", 1)
    grid = f" region={'x'.join(map(str, options.get('region', (32, 32))))} pps{options.get('programs_per_sm', 4)}"
    return f"v1 fuse={fuse} block_p={options.get('block_p', 64)}{grid if fuse > 1 else ''}{warps} {stores}"


@dataclass
class Launch:
    """One kernel launch: a ``triton.jit`` function, its grid, its runtime arguments, and its compile-time
    ones (constexprs and ``num_warps``)."""

    kernel: Any
    grid: tuple[int, ...]
    args: tuple[Any, ...]
    meta: dict[str, Any]

    def __call__(self) -> None:
        self.kernel[self.grid](*self.args, **self.meta)


class TritonRTSRN(nn.Module):
    """The deploy form as fused Triton launches: head (reads the image through PixelUnshuffle), one launch
    per block (conv + act [+ x] + the next LayerNorm), tail, last conv writing the pixel-shuffled, cropped
    output plus the global skip. fp16 on CUDA by default.

    ``fuse`` > 1 runs the blocks and the tail in groups of that many layers per launch
    (``rt4ksr.kernels.fused``): a tile goes through them via a per-program scratch, at the price of
    recomputing a halo; ``region`` is the (H, W) of feature pixels one program computes, and ``programs_per_sm`` sizes
    the persistent grid. ``block_p`` (pixels per program, or per chunk of a region) and ``num_warps`` set
    the register budget, which ``rt4ksr.kernels.aot`` reports for a GPU this machine need not have.
    ``row_stores`` has the last conv's programs follow feature rows and store the output in contiguous row
    runs (a permute at x2, a gather at x3); false: 2-byte stores scattered through the shuffle.
    ``persistent`` runs every layer outside a fused group with kernels v2 (``rt4ksr.kernels.persistent``): a
    persistent grid of ``programs_per_sm`` programs per SM walking ``tile`` (rows, columns) pixel tiles, with
    the weights loaded once per program (``keep_weights``) or a tap loop pipelined ``stages`` deep.
    Which options are fastest is a property of the card: ``rt4ksr kernel-sweep`` measures them.
    """

    def __init__(self, model: RTSRN, dtype: torch.dtype | None = None, block_p: int = 64, fuse: int = 1,
                 region: tuple[int, int] = (32, 32), programs_per_sm: int = 4, num_warps: int | None = None,
                 row_stores: bool = True, persistent: bool = False, tile: tuple[int, int] = (8, 16),
                 keep_weights: bool = True, stages: int = 1) -> None:
        super().__init__()
        reason = supports(model)
        if reason is not None:
            raise ValueError(f"TritonRTSRN cannot run this model: {reason}")
        error = options_error(block_p=block_p, fuse=fuse, region=region, programs_per_sm=programs_per_sm,
                              num_warps=num_warps, row_stores=row_stores, persistent=persistent, tile=tile,
                              keep_weights=keep_weights, stages=stages)
        if error:
            raise ValueError(error)
        self.persistent, self.tile, self.keep_weights, self.pipeline = persistent, tuple(tile), keep_weights, stages
        p = next(model.parameters())
        self.dtype = dtype or (torch.float16 if p.is_cuda else torch.float32)
        self.scale, self.down = model.scale, model.multiple
        self.skip_k, self.skip_w, self.skip_cp = 0, None, 16
        if model.global_skip != "none":
            self.skip_k, w = skip_weights(model.global_skip, model.scale, model.multiple)
            self.skip_cp = _pad_to(w.shape[1])
            packed = torch.zeros(w.shape[0], self.skip_cp, _pad_to(w.shape[2]), dtype=self.dtype, device=p.device)
            packed[:, : w.shape[1], : w.shape[2]] = w.to(self.dtype)
            self.skip_w = packed
        self.block_p, self.region, self.programs_per_sm = block_p, tuple(region), programs_per_sm
        self.num_warps, self.row_stores = num_warps, row_stores
        self._sms: dict[torch.device, int] = {}
        act = _ACTS[type(model.body[0].act)] if len(model.body) else 1
        middle = [_Layer(b.conv1, b.norm, act, b.residual, self.dtype) for b in model.body]
        middle.append(_Layer(model.tail[1], model.tail[0], 0, False, self.dtype))
        head = _Layer(model.head[0], nn.Identity(), 0, False, self.dtype)
        up = _Layer(model.upsample[0], nn.Identity(), 0, False, self.dtype)
        _hoist_norms([head, *middle, up])
        self.stages: list[_Layer | _Group] = [head]
        for i in range(0, len(middle), fuse):
            chunk = middle[i:i + fuse]
            self.stages.append(_Group(chunk) if len(chunk) > 1 else chunk[0])
        self.stages.append(up)

    def _programs(self, device: torch.device, tiles: int) -> int:
        if device.type == "cuda":
            if device not in self._sms:  # asked once: launches without a CUDA graph pay for every host call
                self._sms[device] = torch.cuda.get_device_properties(device).multi_processor_count
            return min(tiles, self._sms[device] * self.programs_per_sm)
        return min(tiles, 4)  # the interpreter runs programs one after another

    def launches(self, x: Tensor) -> tuple[list[Launch], Tensor]:
        """The launches that upscale ``x`` (their outputs and scratch allocated), and the output they fill.

        ``forward`` runs them; ``rt4ksr.kernels.aot`` compiles the same list for a GPU it does not have.
        """
        from rt4ksr.kernels.conv import conv3x3_kernel
        from rt4ksr.kernels.fused import fused_layers_kernel
        from rt4ksr.kernels.persistent import conv3x3_persistent_kernel

        n, c, h, w = x.shape
        d, s = self.down, self.scale
        fh, fw = -(-h // d), -(-w // d)
        x = x.to(self.dtype).contiguous()
        if n * c * h * s * w * s >= 2**31:  # the kernels index in int32
            raise ValueError(f"an output of {n * c * h * s * w * s} values is too large for one call (int32 "
                             f"indexing): split the batch of {n}")
        out = torch.empty(n, c, h * s, w * s, dtype=self.dtype, device=x.device)
        ieee = self.dtype == torch.float32
        plan, feats, last = [], x, len(self.stages) - 1
        for k, st in enumerate(self.stages):
            if isinstance(st, _Group):
                y = torch.empty(n, fh, fw, st.c, dtype=self.dtype, device=x.device)
                rh, rw = self.region
                th, tw = -(-fh // (rh - 2 * st.n)), -(-fw // (rw - 2 * st.n))
                progs = self._programs(x.device, n * th * tw)
                scratch = torch.empty(progs * 2 * rh * rw * st.c_p, dtype=self.dtype, device=x.device)
                plan.append(Launch(fused_layers_kernel, (progs,), (
                    feats, st.weight, st.bias, st.ln_w, st.ln_b, st.oln_w, st.oln_b, y, scratch,
                    n, fh, fw, th, tw, st.eps,
                ), dict(C=st.c, C_P=st.c_p, LAYERS=st.n, ACT=st.act, **st.masks, RH=rh, RW=rw,
                        BLOCK_P=min(self.block_p, rh * rw, (1024 if ieee else 2048) // st.c_p), IEEE=ieee,
                        num_warps=self.num_warps or (8 if ieee else 4),
                        num_stages=1)))  # the default software pipelining of the chunk loop takes 170 kB of smem
            elif self.persistent:
                y = out if k == last else torch.empty(n, fh, fw, st.cout, dtype=self.dtype, device=x.device)
                heavy = ieee or (k == last and self.skip_k > 0)
                (th, tw), num_warps = _tile_shape(self.tile, st.cout_p, k == 0, heavy, self.num_warps)
                shuffle = s * d if k == last else 0
                rows = shuffle > 0 and self.row_stores
                odd = rows and shuffle & (shuffle - 1)
                gather = (_pow2(st.cout // shuffle * th), _pow2(tw * shuffle)) if odd else (0, 0)
                tiles = n * -(-fh // th) * -(-fw // tw)
                plan.append(Launch(conv3x3_persistent_kernel, (self._programs(x.device, tiles),), (
                    feats, st.weight, st.bias, st.ln_w, st.ln_b, y, x, st.oln_w, st.oln_b,
                    self.skip_w if self.skip_w is not None else st.weight,
                    n, fh, fw, h, w, h * s, w * s, st.eps, st.out_eps,
                ), dict(CIN=st.cin, CIN_P=st.cin_p, COUT=st.cout, COUT_P=st.cout_p,
                        RAW_IN=d if k == 0 else 0, OUT_SHUFFLE=shuffle, HAS_LN=st.ln, ACT=st.act,
                        RESIDUAL=st.residual, TH=th, TW=tw,
                        SKIP_K=self.skip_k if k == last else 0, DOWN=d, RAW_C=c, SKIP_CP=self.skip_cp,
                        IEEE=ieee, OUT_LN=st.out_ln, ROWS=rows, GATHER_R=gather[0], GATHER_Q=gather[1],
                        KEEP_W=self.keep_weights, STAGES=self.pipeline,
                        num_warps=num_warps, num_stages=self.pipeline)))
            else:
                y = out if k == last else torch.empty(n, fh, fw, st.cout, dtype=self.dtype, device=x.device)
                heavy = ieee or (k == last and self.skip_k > 0)  # the skip adds its own taps
                block_p, num_warps = _conv_shape(self.block_p, st.cout_p, k == 0, heavy, self.num_warps)
                shuffle = s * d if k == last else 0
                rows = shuffle > 0 and self.row_stores  # the last conv stores the output in row runs
                odd = rows and shuffle & (shuffle - 1)
                gather = (_pow2(st.cout // shuffle), _pow2(block_p * shuffle)) if odd else (0, 0)
                grid = (n * fh * -(-fw // block_p),) if rows else (-(-n * fh * fw // block_p),)
                plan.append(Launch(conv3x3_kernel, grid, (
                    feats, st.weight, st.bias, st.ln_w, st.ln_b, y, x, st.oln_w, st.oln_b,
                    self.skip_w if self.skip_w is not None else st.weight,
                    n, fh, fw, h, w, h * s, w * s, st.eps, st.out_eps,
                ), dict(CIN=st.cin, CIN_P=st.cin_p, COUT=st.cout, COUT_P=st.cout_p,
                        RAW_IN=d if k == 0 else 0, OUT_SHUFFLE=shuffle, ROWS=rows,
                        GATHER_R=gather[0], GATHER_Q=gather[1],
                        HAS_LN=st.ln, ACT=st.act, RESIDUAL=st.residual, BLOCK_P=block_p,
                        SKIP_K=self.skip_k if k == last else 0, DOWN=d, RAW_C=c, SKIP_CP=self.skip_cp,
                        OUT_LN=st.out_ln, IEEE=ieee,
                        num_warps=num_warps)))
            feats = y
        return plan, out

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        plan, out = self.launches(x)
        for launch in plan:
            launch()
        return out
