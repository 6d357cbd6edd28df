"""Same-run GPU speed table of RT4KSR's execution paths against its peers, x2 (1080p -> 4K) and x3 (720p -> 4K),
batch 1 and 4, fp16, in ONE process with interleaved rounds.

Timings taken in separate processes (or on separate days) differ by more than the gaps between the fast
paths: clocks, other tenants and the allocator's state move between runs. So every candidate is built first,
then timed in the same rounds (``rt4ksr.core.stats.interleaved``: each round times every candidate for
``--iters`` calls, in an order that rotates), and each is reported as the median and inter-quartile range over
rounds (``Stats.to_row``: ``ms``, ``p25_ms``, ``p75_ms``, ``iqr_ms``, ``fps``, ``rounds``, ``values``). The
candidates:

- ``eager_fp16``: our deploy form (``rt4ksr.models.reparameterize``) in fp16, channels_last;
- ``eager_official``: the official released code's deploy form, eager, fp16 channels_last;
- ``compile_ours`` / ``compile_official``: the same two under ``torch.compile(mode="max-autotune")``;
- ``kernels_v1``: ``rt4ksr.kernels.network.TritonRTSRN`` replayed as a CUDA graph;
- ``kernels_v2``: ``TritonRTSRN(persistent=True, ...)`` with options from a sweep, CUDA-graphed;
- ``floor``: not timed: max(compute time at the card's dense fp16 peak, I/O time at its memory bandwidth)
  (scripts/peers_floor.py).

Each candidate's output is compared with the eager fp32 output of our deploy form on the same input (max abs
difference), so a fast but wrong candidate shows. A candidate that cannot run here (no CUDA, no Triton, the
official code missing, a compile failure) becomes a row that says why, never a crash. The official code
(github eduardzamfir/RT4KSR at a pinned commit) is imported from a folder by scripts/peers_official.py.

Prepare, on a machine with the repository checkout (``.device/`` and ``.whl/`` are git-ignored; about 3.6 MiB
in .device/peers plus about 8 MiB of wheels, well under the 64 MiB carry limit):

    # 1. the official model code at the pinned commit fd6627a48d789adf5d9aad29f02ab2a3d2a25296 (from a clone
    #    of github eduardzamfir/RT4KSR: its .git folder, or a bare mirror), about 40 KiB: code/model/__init__.py,
    #    code/model/arch.py, code/model/modules.py, code/model/utils/rep_utils.py, code/test.py (for its
    #    reparameterize()), LICENSE, and a COMMIT file, into .device/peers/rt4ksr_official
    python scripts/peer_table.py --prepare-official /path/to/RT4KSR/.git
    #    which is, by hand:
    #    C=fd6627a48d789adf5d9aad29f02ab2a3d2a25296; G=/path/to/RT4KSR/.git; D=.device/peers/rt4ksr_official
    #    mkdir -p $D/model/utils; for f in model/__init__.py model/arch.py model/modules.py \
    #      model/utils/rep_utils.py test.py; do git --git-dir $G show $C:code/$f > $D/$f; done
    #    git --git-dir $G show $C:LICENSE > $D/LICENSE; echo $C > $D/COMMIT
    # 2. the official weights (../shared does not travel to a GPU machine), 3.4 MiB
    mkdir -p .device/peers/weights && cp ../shared/checkpoints/official/rt4ksr_x[23].pth .device/peers/weights/
    # 3. wheels of what the GPU image lacks (rt4ksr.models imports kornia, the CUDA-graph helper omegaconf)
    ../shared/tools/device-wheels.sh

Then carry ``.device/peers`` and ``.whl`` and run, on the GPU machine (from the repository root):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && \
    export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 && \
    python3 scripts/peer_table.py --rounds 10 --iters 10 --deadline-s 420 --json $OUT/peers.json \
      [--v2-json best_v2.json | --v2 'tile=[8,16]' stages=2 ...]

Each (scale, batch) block compiles two models with max-autotune (minutes together, untested here): under a
10-minute command limit, ``--deadline-s`` stops starting blocks in time to print the table, the JSON is
rewritten after every block, and ``--scales``/``--batches``/``--candidates`` narrow a run.

The official code imports torchvision (present on the GPU image) for a Gaussian blur of a branch that its
released configuration never adds to the output; where torchvision is missing a stand-in is used and noted.
On a CPU, ``--device cpu --size 32 48`` runs the eager rows (official and ours) end to end, and with
``--compile-on-cpu --compile-mode default`` the compile rows too; the kernel rows say they need CUDA.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peers_official
import torch
from omegaconf import OmegaConf
from peers_floor import conv_macs, floor_estimate
from torch import Tensor, nn

from rt4ksr.core.errors import ConfigValueError
from rt4ksr.core.files import write_json
from rt4ksr.core.scenario import timing_size
from rt4ksr.core.stats import interleaved, one_line
from rt4ksr.inference.timing import device_name, measure_for, timing_batch
from rt4ksr.inference.upscaler import cuda_graphed
from rt4ksr.kernels.network import TritonRTSRN, kernel_options, options_error, supports
from rt4ksr.models import RTSRN, load_official, reparameterize

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ("eager_fp16", "eager_official", "compile_ours", "compile_official", "kernels_v1", "kernels_v2")


# ------------------------------------------------------------------------------------------------ the candidates


@dataclass
class Candidate:
    """One row: a no-argument call that returns the output, or the reason it cannot run here."""

    run: Callable[[], Tensor] | None = None
    skipped: str | None = None
    note: str = ""


def _needs_cuda(device: torch.device, what: str) -> None:
    if device.type != "cuda":
        raise RuntimeError(f"{what} rows are timed on CUDA only")


def _needs_triton() -> None:
    if importlib.util.find_spec("triton") is None:
        raise RuntimeError("triton is not installed")


def _eager(model: nn.Module, x: Tensor, dtype: torch.dtype) -> Callable[[], Tensor]:
    m = copy.deepcopy(model).eval().to(device=x.device, dtype=dtype).to(memory_format=torch.channels_last)
    xin = x.to(dtype).contiguous(memory_format=torch.channels_last)
    return lambda: m(xin)


def _graph_breaks() -> int:
    from torch._dynamo.utils import counters

    return sum(counters["graph_break"].values())


def _compiled(
    model: nn.Module, x: Tensor, dtype: torch.dtype, mode: str, warmup: int = 3, on_cpu: bool = False
) -> tuple[Callable[[], Tensor], str]:
    """``torch.compile(mode=...)`` of an fp16 channels_last copy, compiled (and autotuned) here by warm-up
    calls, and a note with the graph breaks that dynamo met (each one splits the compiled graph, and what
    crosses a break cannot be removed as dead code). max-autotune replays CUDA graphs (cudagraph trees):
    each call is marked as a new step, since the timing loop drops every output. ``on_cpu`` lets a CPU run
    compile too (Inductor's C++ backend: minutes on a small machine), to try the path before a GPU session."""
    if not (on_cpu and x.device.type == "cpu"):
        _needs_cuda(x.device, "torch.compile")
        _needs_triton()
    m = copy.deepcopy(model).eval().to(device=x.device, dtype=dtype).to(memory_format=torch.channels_last)
    compiled = torch.compile(m, mode=mode)
    xin = x.to(dtype).contiguous(memory_format=torch.channels_last)
    step = getattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)

    def run() -> Tensor:
        step()
        return compiled(xin)

    breaks = _graph_breaks()
    with torch.inference_mode():
        for _ in range(warmup):
            run()
    return run, f"{_graph_breaks() - breaks} graph break(s)"


def v2_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Kernels v2 options as ``TritonRTSRN`` keywords: ``persistent=True`` added, lists as tuples, and a wrong
    option refused here in one line (``rt4ksr.kernels.network.options_error``) rather than deep in the
    constructor."""
    options = {**options, "persistent": True}
    error = options_error(**options)
    if error:
        raise ValueError(f"kernels v2 options: {error}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def _kernels(model: nn.Module, x: Tensor, options: Mapping[str, Any]) -> Callable[[], Tensor]:
    """``TritonRTSRN`` on an fp16 copy of the deploy form, replayed as one CUDA graph (captured here)."""
    _needs_cuda(x.device, "Triton kernel")
    _needs_triton()

    reason = supports(model)
    if reason is not None:
        raise RuntimeError(f"TritonRTSRN cannot run this model: {reason}")
    m16 = copy.deepcopy(model).eval().to(device=x.device, dtype=torch.float16)
    fused = TritonRTSRN(m16, dtype=torch.float16, **options)
    xin = x.to(torch.float16).contiguous()  # the kernels read NCHW
    graphed = cuda_graphed(fused, xin)
    return lambda: graphed(xin)


def build_candidates(
    names: Sequence[str],
    ours: nn.Module,
    official: nn.Module | str,
    x: Tensor,
    v2: Mapping[str, Any] | None = None,
    compile_mode: str = "max-autotune",
    dtype: torch.dtype = torch.float16,
    compile_on_cpu: bool = False,
) -> dict[str, Candidate]:
    """The named candidates for input ``x`` (fp32, on the device to time on): ``ours`` is our deploy form,
    ``official`` the official deploy form or the reason it is missing. Building compiles, autotunes and
    captures; a candidate that cannot be built is a ``Candidate`` with ``skipped`` set."""
    out: dict[str, Candidate] = {}
    for name in names:
        note = ""
        if name in ("eager_official", "compile_official") and isinstance(official, str):
            out[name] = Candidate(skipped=official)  # already one line: why the official network is missing
            continue
        try:
            if name == "eager_fp16":
                run = _eager(ours, x, dtype)
            elif name == "eager_official":
                run = _eager(official, x, dtype)
                note = "official forward also computes its unused high-frequency branch"
            elif name == "compile_ours":
                run, note = _compiled(ours, x, dtype, compile_mode, on_cpu=compile_on_cpu)
            elif name == "compile_official":
                run, note = _compiled(official, x, dtype, compile_mode, on_cpu=compile_on_cpu)
            elif name == "kernels_v1":
                run = _kernels(ours, x, {})
            elif name == "kernels_v2":
                options = v2_options(v2 or {})
                note = " ".join(f"{k}={_show(v)}" for k, v in options.items() if k != "persistent") or "defaults"
                run = _kernels(ours, x, options)
            else:
                raise ValueError(f"unknown candidate {name!r}; candidates: {', '.join(CANDIDATES)}")
            out[name] = Candidate(run=run, note=note)
        except Exception as e:  # every failure is a row that says why
            out[name] = Candidate(skipped=one_line(e), note=note)
    return out


def _show(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, tuple | list) else str(v).lower() if isinstance(v, bool) else str(v)


@torch.inference_mode()
def fp32_output(model: nn.Module, x: Tensor) -> Tensor:
    """Eager fp32 output of a copy of ``model`` on ``x``'s device, with TF32 off for the call: cuDNN and
    cuBLAS may otherwise round fp32 convolutions to TF32 (10-bit mantissas) on Ampere and later, and the
    reference must be finer than the fp16 candidates it judges."""
    m = copy.deepcopy(model).eval().to(device=x.device, dtype=torch.float32)
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return m(x.float()).float()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


def max_abs_diff(out: Tensor, ref: Tensor) -> float:
    """Max abs difference of ``out`` from the reference, in fp32 (inf when the shapes differ)."""
    if out.shape != ref.shape:
        return math.inf
    return (out.float() - ref).abs().max().item()


def run_group(
    scale: int,
    batch: int,
    size: tuple[int, int],
    ours: nn.Module,
    official: nn.Module | str,
    device: torch.device,
    names: Sequence[str],
    rounds: int,
    iters: int,
    warmup: int = 3,
    v2: Mapping[str, Any] | None = None,
    compile_mode: str = "max-autotune",
    rotate: bool = True,
    macs_per_frame: int | None = None,
    compile_on_cpu: bool = False,
) -> dict[str, Any]:
    """One (scale, batch) block of the table: builds the candidates, checks each against eager fp32 of our
    deploy form, times them interleaved (``iters`` calls per candidate per round), and adds the floor. Every
    round's figure is kept (``values``)."""

    x = timing_batch(batch, size, device, torch.float32)
    ref = fp32_output(ours, x)
    cands = build_candidates(names, ours, official, x, v2, compile_mode, compile_on_cpu=compile_on_cpu)
    rows: dict[str, dict[str, Any]] = {}
    runs = {}
    with torch.inference_mode():
        for name, c in cands.items():
            rows[name] = {"note": c.note} if c.note else {}
            if c.skipped is not None:
                rows[name]["skipped"] = c.skipped
                continue
            try:
                rows[name]["max_abs_diff"] = max_abs_diff(c.run(), ref)
                runs[name] = c.run
            except Exception as e:
                rows[name]["skipped"] = f"failed on the check call: {one_line(e)}"
        stats, failed = interleaved(runs, rounds, warmup, measure_for(device, iters), rotate)
    for name, reason in failed.items():
        rows[name]["skipped"] = reason
    for name, s in stats.items():
        rows[name].update(s.to_row(batch))
    dev = device_name(device)
    macs = conv_macs(ours, size) if macs_per_frame is None else macs_per_frame
    floor = floor_estimate(macs, batch, size, scale, dev)
    for row in rows.values():
        if "ms" in row and "ms" in floor:
            row["x_floor"] = row["ms"] / floor["ms"]
    del cands, runs
    if device.type == "cuda":
        torch._dynamo.reset()  # compiled graphs of this shape are not needed again
        torch.cuda.empty_cache()
    return {
        "scale": scale,
        "batch": batch,
        "input": [batch, 3, *size],
        "output": [batch, 3, size[0] * scale, size[1] * scale],
        "macs_per_frame": macs,
        "gflop_per_frame": 2 * macs / 1e9,
        "floor": floor,
        "candidates": rows,
    }


# ------------------------------------------------------------------------------------------------ the report


def environment(device: torch.device, code_dir: str | Path | None = None) -> dict[str, Any]:
    """What a reader needs to trust or redo the table: the device, versions, date and the official commit."""

    triton = importlib.util.find_spec("triton")
    triton_version = None
    if triton is not None:
        try:
            triton_version = importlib.import_module("triton").__version__
        except Exception as e:
            triton_version = f"unimportable ({one_line(e)})"
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version,
        "python": sys.version.split()[0],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "official_repo": peers_official.OFFICIAL_REPO,
        "official_commit_pinned": peers_official.OFFICIAL_COMMIT,
        "official_commit": peers_official.official_commit(code_dir) if code_dir is not None else None,
    }


def _num(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(groups: Sequence[Mapping[str, Any]], env: Mapping[str, Any] | None = None) -> str:
    """The table as aligned text: one line per (scale, batch, candidate), the floor last in each block;
    skipped rows say why."""
    head = (
        f"{'scale':>5} {'batch':>5} {'candidate':<17} {'median ms':>10} {'p25-p75 ms':>17} {'FPS':>8} "
        f"{'x floor':>7} {'max|diff|':>9}  note"
    )
    lines = (
        []
        if env is None
        else [
            f"device: {env.get('device')}  torch {env.get('torch')}  triton "
            f"{env.get('triton')}  {env.get('date')}  official "
            f"{(env.get('official_commit') or '-')[:12]}"
        ]
    )
    lines += [head, "-" * len(head)]
    for g in groups:
        s, b = g["scale"], g["batch"]
        for name, r in g["candidates"].items():
            if "skipped" in r:
                lines.append(
                    f"{s:>5} {b:>5} {name:<17} {'-':>10} {'-':>17} {'-':>8} {'-':>7} {'-':>9}  skipped: {r['skipped']}"
                )
                continue
            iqr = f"{r['p25_ms']:.3f}-{r['p75_ms']:.3f}"
            lines.append(
                f"{s:>5} {b:>5} {name:<17} {r['ms']:>10.3f} {iqr:>17} {r['fps']:>8.1f} "
                f"{_num(r.get('x_floor'), '.2f'):>7} {_num(r.get('max_abs_diff'), '.2e'):>9}  "
                f"{r.get('note', '')}".rstrip()
            )
        f = g["floor"]
        if "skipped" in f:
            lines.append(
                f"{s:>5} {b:>5} {'floor':<17} {'-':>10} {'-':>17} {'-':>8} {'-':>7} {'-':>9}  skipped: {f['skipped']}"
            )
        else:
            lines.append(
                f"{s:>5} {b:>5} {'floor':<17} {f['ms']:>10.3f} {'-':>17} {f['fps']:>8.1f} {1:>7.2f} "
                f"{'-':>9}  {f['bound']}-bound on {f['card']} ({g['gflop_per_frame']:.1f} GFLOP/frame)"
            )
    return "\n".join(lines)


def options_for_scale(options: Mapping[str, Any], scale: int) -> dict[str, Any]:
    """Kernels v2 options for ``scale`` from a JSON file's object: a flat dict of keywords, one per scale
    (``{"2": {...}, "3": {...}}``), or a sweep row (``{"options": {...}}``)."""
    if options and all(str(k).isdigit() for k in options):
        options = options.get(str(scale), options.get(scale, {}))  # type: ignore[call-overload]
    if isinstance(options.get("options"), Mapping):
        options = options["options"]
    return dict(options)


def default_weights_dir() -> Path:
    """``.device/peers/weights`` (what travels to a GPU machine), else the shared official checkpoints."""
    shared = Path(os.environ.get("RT4KSR_CHECKPOINTS_DIR", ROOT.parent / "shared" / "checkpoints")) / "official"
    local = ROOT / ".device" / "peers" / "weights"
    return local if local.is_dir() else shared


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--official-code",
        type=Path,
        default=ROOT / ".device" / "peers" / "rt4ksr_official",
        help="folder with the official model files (see --prepare-official)",
    )
    p.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="folder with rt4ksr_x2.pth / rt4ksr_x3.pth (default: .device/peers/weights, else "
        "../shared/checkpoints/official)",
    )
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds (one time per candidate each)")
    p.add_argument("--iters", type=int, default=10, help="calls per candidate per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per candidate before the rounds")
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="LR size for every scale (default: the 4K scenario on CUDA, 1/8 of it on the CPU)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    p.add_argument(
        "--v2",
        nargs="*",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="kernels v2 options as the commands' kernel_options overrides take them (Hydra/YAML values), e.g. "
        "'tile=[8,16]' stages=2 keep_weights=true",
    )
    p.add_argument(
        "--v2-json",
        type=Path,
        default=None,
        help='kernels v2 options as JSON: a dict of keywords, one per scale ({"2": {...}}), or a '
        'sweep row ({"options": {...}}); --v2 overrides its keys',
    )
    p.add_argument("--compile-mode", default="max-autotune")
    p.add_argument(
        "--compile-on-cpu",
        action="store_true",
        help="compile on the CPU too (Inductor's C++ backend, slow; try --compile-mode default): a dry run of "
        "the compile rows before a GPU session",
    )
    p.add_argument("--no-rotate", action="store_true", help="same candidate order in every round")
    p.add_argument(
        "--deadline-s",
        type=float,
        default=None,
        help="start no further (scale, batch) block after this many seconds (compiling with max-autotune takes "
        "minutes per block): the table and JSON then list the blocks not run",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="raw results (every round's times), written atomically after each (scale, batch) block",
    )
    p.add_argument(
        "--prepare-official",
        type=Path,
        default=None,
        metavar="GIT_DIR",
        help="extract the official files at the pinned commit from GIT_DIR into --official-code, then exit",
    )
    args = p.parse_args(argv)
    try:  # the package's own check of kernel_options, as `rt4ksr benchmark kernel_options.KEY=VALUE` runs it
        args.v2 = kernel_options(OmegaConf.from_dotlist(args.v2))
    except ConfigValueError as e:
        p.error(str(e))
    return args


def _key_value(text: str) -> str:
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return text


def ours_for(scale: int, weights: Path) -> tuple[torch.nn.Module, str]:
    """Our deploy form of the released network: from the official weights, else random (said in the note)."""
    if weights.is_file():
        return reparameterize(load_official(weights)), f"official weights {weights.name}"
    return reparameterize(RTSRN(scale=scale)), f"random weights ({weights} not found)"


def official_for(
    args: argparse.Namespace, scale: int, weights: Path, device: torch.device
) -> tuple[torch.nn.Module | str, dict[str, Any]]:
    """The official deploy form, or the reason it is missing, and what the JSON says about it."""
    if not {"eager_official", "compile_official"} & set(args.candidates):
        return "not asked for", {"skipped": "not asked for"}
    try:
        model, code = peers_official.build_official(args.official_code, weights, scale, device)
    except Exception as e:  # a missing folder or file, an import error: the official rows say why
        reason = one_line(e)
        return reason, {"skipped": reason}
    return model, {"commit": code.commit, "notes": code.notes, "params": sum(p.numel() for p in model.parameters())}


def agreement(a: torch.nn.Module, b: torch.nn.Module, device: torch.device) -> float:
    """Max abs difference of two networks in fp32 on one small seeded input: the peer is the same network."""
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1)).to(device)
    return (fp32_output(a, x) - fp32_output(b, x)).abs().max().item()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare_official is not None:
        for f in peers_official.prepare_official(args.prepare_official, args.official_code):
            print(f"{f} ({f.stat().st_size} bytes)")
        return 0
    device = torch.device(args.device)
    weights_dir = args.weights_dir or default_weights_dir()
    v2: dict[str, Any] = json.loads(args.v2_json.read_text()) if args.v2_json else {}
    v2_flat = args.v2
    env = environment(device, args.official_code)
    result: dict[str, Any] = {
        "env": env,
        "argv": sys.argv[1:] if argv is None else argv,
        "settings": {
            "rounds": args.rounds,
            "iters": args.iters,
            "warmup": args.warmup,
            "compile_mode": args.compile_mode,
            "rotate": not args.no_rotate,
            "compile_on_cpu": args.compile_on_cpu,
            "candidates": args.candidates,
            "dtype": "fp16",
            "channels_last": "eager and compile rows",
        },
        "scales": {},
        "groups": [],
        "not_run": [],
    }
    start = time.monotonic()
    for scale in args.scales:
        size = timing_size(scale, device.type, args.size)
        weights = weights_dir / f"rt4ksr_x{scale}.pth"
        ours, ours_note = ours_for(scale, weights)
        official, official_info = official_for(args, scale, weights, device)
        if not isinstance(official, str):
            official_info["fp32_max_abs_diff_vs_ours"] = agreement(official, ours, device)
        options = {**options_for_scale(v2, scale), **v2_flat}
        macs = conv_macs(ours, size)
        result["scales"][str(scale)] = {
            "size": list(size),
            "ours": ours_note,
            "official": official_info,
            "v2_options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        }
        for batch in args.batches:
            if args.deadline_s is not None and time.monotonic() - start > args.deadline_s:
                result["not_run"].append(f"x{scale} batch {batch}")
                continue
            t0 = time.monotonic()
            print(
                f"x{scale} batch {batch} {size[0]}x{size[1]}: building and timing {', '.join(args.candidates)}",
                file=sys.stderr,
                flush=True,
            )
            group = run_group(
                scale,
                batch,
                size,
                ours,
                official,
                device,
                args.candidates,
                args.rounds,
                args.iters,
                args.warmup,
                options,
                args.compile_mode,
                not args.no_rotate,
                macs,
                args.compile_on_cpu,
            )
            group["seconds"] = round(time.monotonic() - t0, 1)
            result["groups"].append(group)
            print(format_table([group]), file=sys.stderr, flush=True)  # a run cut short still shows it
            if args.json is not None:
                write_json(args.json, result)
    print(format_table(result["groups"], env))
    for scale, info in result["scales"].items():
        off = info["official"]
        said = off.get("skipped") or (
            f"official vs ours fp32 max|diff| {off['fp32_max_abs_diff_vs_ours']:.2e}"
            + "".join(f"; {n}" for n in off["notes"])
        )
        print(f"x{scale}: ours from {info['ours']}; {said}")
    if result["not_run"]:
        print(f"not run (--deadline-s {args.deadline_s:g}): {', '.join(result['not_run'])}")
    if args.json is not None:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
