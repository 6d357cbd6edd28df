"""Compile ``TritonRTSRN``'s launches for a GPU this machine need not have, and report what the compiler gave them.

Triton's interpreter checks the kernels' arithmetic on the CPU, but it runs Python, not the GPU code generator:
a kernel can pass there and still fail to compile for a GPU, or compile into register spills. The triton wheel
carries ptxas, so the real compilation runs anywhere. What it reports is each launch's registers per thread,
spilled bytes, shared memory, the occupancy they allow on the target, and its narrowest global store (2 bytes:
scattered fp16). ``block_p`` and ``num_warps`` trade these, and speed itself still needs the card. The command
is ``rt4ksr kernel-report`` (``rt4ksr.kernel_report``).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

from rt4ksr.core.scenario import uhd_input
from rt4ksr.kernels.network import Launch, TritonRTSRN, describe

# per-SM limits: registers, threads, shared memory per SM usable by blocks (bytes), resident blocks
SM_LIMITS = {80: (65536, 2048, 166912, 32), 86: (65536, 1536, 101376, 16), 89: (65536, 1536, 101376, 24),
             90: (65536, 2048, 232448, 32)}
_TYPES = {torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float32: "*fp32"}


def _signature(launch: Launch) -> tuple[dict[str, str], dict[str, Any], dict[tuple[int], list]]:
    """Argument types, constexprs and divisibility hints as Triton's JIT would specialise them."""
    fn = launch.kernel
    sig, consts, attrs = {}, {}, {}
    runtime = [n for n in fn.arg_names if n not in launch.meta]
    values = dict(zip(runtime, launch.args, strict=True))
    for i, name in enumerate(fn.arg_names):
        if name in launch.meta:
            sig[name], consts[name] = "constexpr", launch.meta[name]
            continue
        v = values.get(name, fn.params[i].default)
        if isinstance(v, torch.Tensor):
            sig[name] = _TYPES[v.dtype]
            if v.data_ptr() % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(v, bool) or not isinstance(v, int | float):
            sig[name], consts[name] = "constexpr", v
        elif isinstance(v, float):
            sig[name] = "fp32"
        elif v == 1:  # the JIT turns ints equal to 1 into constants
            sig[name], consts[name] = "constexpr", 1
        else:
            sig[name] = "i32"
            if v % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    return sig, consts, attrs


def _resources(cubin: bytes) -> dict[str, int]:
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        Path(path).write_bytes(cubin)
        text = subprocess.run([str(tool), "--dump-resource-usage", path], capture_output=True, text=True,
                              check=True).stdout
    fields = dict(re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", text))
    return {k.lower(): int(v) for k, v in fields.items()}


def narrowest_store(ptx: str) -> int:
    """Bytes written by the narrowest global store instruction in ``ptx`` (0 if none): 2 means scattered fp16."""
    found = re.findall(r"st\.global(?:\.[a-z]+)*?(?:\.v(\d))?\.[bfsu](\d+)", ptx)
    sizes = [int(v or 1) * int(b) // 8 for v, b in found]
    return min(sizes, default=0)


def occupancy(arch: int, regs: int, shared: int, num_warps: int) -> float:
    """Resident warps over the SM's maximum, from registers (allocated per warp in 256s), threads, shared memory."""
    max_regs, max_threads, max_smem, max_blocks = SM_LIMITS[arch]
    per_warp = -(-regs * 32 // 256) * 256
    blocks = min(max_regs // (per_warp * num_warps), max_threads // (32 * num_warps), max_blocks,
                 max_smem // (shared + 1024) if shared else max_blocks)
    return blocks * num_warps * 32 / max_threads


def compile_report(fused: TritonRTSRN, input_shape: tuple[int, int, int, int], arch: int = 90
                   ) -> list[dict[str, Any]]:
    """One row per distinct launch of ``fused`` on an input of ``input_shape``, compiled for ``sm_<arch>``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("compiling for a GPU needs TRITON_INTERPRET unset (the interpreter replaces the JIT)")
    plan, _ = fused.launches(torch.zeros(input_shape, dtype=fused.dtype))
    rows, seen = [], set()
    for k, launch in enumerate(plan):
        meta = dict(launch.meta)
        options = {"num_warps": meta.pop("num_warps", 4)}
        if "num_stages" in meta:
            options["num_stages"] = meta.pop("num_stages")
        sig, consts, attrs = _signature(Launch(launch.kernel, launch.grid, launch.args, meta))
        key = (launch.kernel.__name__, tuple(sorted(sig.items())), tuple(sorted(consts.items())),
               tuple(sorted(options.items())))
        if key in seen:
            continue
        seen.add(key)
        src = ASTSource(fn=launch.kernel, signature=sig, constexprs=consts, attrs=attrs)
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
        res = _resources(compiled.asm["cubin"])
        shared = max(res.get("shared", 0), compiled.metadata.shared)
        num_warps = options["num_warps"]
        pixels = meta["TH"] * meta["TW"] if "TH" in meta else meta.get("BLOCK_P")
        rows.append({"launch": k, "kernel": launch.kernel.__name__, "num_warps": num_warps,
                     "block_p": pixels, "tile": [meta["TH"], meta["TW"]] if "TH" in meta else None,
                     "num_stages": options.get("num_stages"), "cout": meta.get("COUT", meta.get("C")),
                     "layers": meta.get("LAYERS", 1), "regs": res.get("reg"),
                     "spill_bytes": res.get("local", 0) + res.get("stack", 0), "shared": shared,
                     "occupancy": occupancy(arch, res.get("reg", 0), shared, num_warps),
                     "store_bytes": narrowest_store(compiled.asm["ptx"])})
    return rows


def report(deploy: torch.nn.Module, options: list[dict[str, Any]], arch: int = 90) -> list[dict[str, Any]]:
    """``compile_report`` of every ``TritonRTSRN`` option set (``rt4ksr.kernels.network.variants``) for the 4K
    scenario's input, in ``deploy``'s dtype; each row names its set (``options``) and keeps ``fuse``."""
    dtype = next(deploy.parameters()).dtype
    shape = (1, 3, *uhd_input(deploy.scale))
    rows = []
    for opts in options:
        fused = TritonRTSRN(deploy, dtype=dtype, **opts)
        rows += [{**r, "options": describe(opts), "fuse": opts.get("fuse", 1)}
                 for r in compile_report(fused, shape, arch)]
    return rows


def format_report(rows: list[dict[str, Any]]) -> str:
    width = max([len(r["options"]) for r in rows] + [7])
    lines = [f"{'options':<{width}}  {'kernel':<26} {'pixels':>6} {'warps':>5} {'cout':>4} {'regs':>4} {'spill':>5} "
             f"{'shared':>6} {'occup.':>6}"]
    for r in rows:
        name = r["kernel"] + (f" x{r['layers']}" if r["layers"] > 1 else "")
        lines.append(f"{r['options']:<{width}}  {name:<26} {r['block_p']:>6} {r['num_warps']:>5} {r['cout']:>4} "
                     f"{r['regs']:>4} {r['spill_bytes']:>5} {r['shared']:>6} {r['occupancy']:>6.0%}")
    return "\n".join(lines)
