"""A same-run speed table of RT4KSR's execution paths against its peers, on one GPU, in one process.

Timings taken in separate processes (or on separate days) differ by more than the gaps between the fast
paths: clocks, other tenants and the allocator's state move between runs. So every candidate is built first,
then timed in interleaved rounds (each round times every candidate for a few iterations, in an order that
rotates), and each is reported as the median and inter-quartile range over rounds. The candidates:

- ``eager_fp16``: our deploy form (``rt4ksr.models.reparameterize``) in fp16, channels_last;
- ``eager_official``: the official released code's deploy form, eager, fp16 channels_last;
- ``compile_ours`` / ``compile_official``: the same two under ``torch.compile(mode="max-autotune")``;
- ``kernels_v1``: ``rt4ksr.kernels.network.TritonRTSRN`` replayed as a CUDA graph;
- ``kernels_v2``: ``TritonRTSRN(persistent=True, ...)`` with options from a sweep, CUDA-graphed;
- ``floor``: not timed: max(compute time at the card's dense fp16 peak, I/O time at its memory bandwidth).

Each candidate's output is compared with the eager fp32 output of our deploy form on the same input (max abs
difference), so a fast but wrong candidate shows. A candidate that cannot run here (no CUDA, no Triton, the
official code missing, a compile failure) becomes a row that says why, never a crash.

The official code (github eduardzamfir/RT4KSR, ``OFFICIAL_COMMIT``) is imported from a folder given at run
time, never vendored: ``prepare_official`` extracts its model files from a git directory into such a folder.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import datetime
import importlib
import importlib.util
import inspect
import json
import math
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rt4ksr.inference.timing import device_name, timing_input
from rt4ksr.inference.upscaler import cuda_graphed
from rt4ksr.kernels.network import TritonRTSRN, supports

OFFICIAL_REPO = "eduardzamfir/RT4KSR"
OFFICIAL_COMMIT = "fd6627a48d789adf5d9aad29f02ab2a3d2a25296"  # the repository's head: "Create LICENSE", 2023-08-08
# what the official network needs from the repository (its code/ folder): the model package, test.py for the
# re-parameterization it defines, and the licence
OFFICIAL_FILES = ("model/__init__.py", "model/arch.py", "model/modules.py", "model/utils/rep_utils.py", "test.py")
CANDIDATES = ("eager_fp16", "eager_official", "compile_ours", "compile_official", "kernels_v1", "kernels_v2")
OFFICIAL_ARGS = dict(arch="rt4ksr_rep", feature_channels=24, num_blocks=4, act_type="gelu")  # code/utils/parser.py


# --------------------------------------------------------------------------------------------------- the floor


@dataclass(frozen=True)
class Card:
    """A card's dense fp16 tensor-core peak (FLOP/s) and memory bandwidth (bytes/s), from its data sheet."""

    name: str
    fp16_flops: float
    bytes_per_s: float


def card_for(device_name: str) -> tuple[Card | None, str]:
    """The ``Card`` that ``torch.cuda.get_device_name`` names, or None and the reason.

    Matched by substring, most specific first. An A100 with no memory size in its name is taken as the 80GB
    card (2.0 TB/s): the higher bandwidth gives the lower, still valid, floor.
    """
    n = device_name.upper()
    if "H200" in n:
        return Card("H200", 989e12, 4.8e12), ""
    if "H100" in n:
        if "PCIE" in n:
            return Card("H100 PCIe", 756e12, 2.0e12), ""
        if "SXM" in n or "HBM3" in n:
            return Card("H100 SXM", 989e12, 3.35e12), ""
        return None, f"no peak figures for this H100 variant ({device_name!r})"
    if "A100" in n:
        if "40GB" in n:
            return Card("A100 40GB", 312e12, 1.555e12), ""
        return Card("A100 80GB", 312e12, 2.0e12), ""
    return None, f"no peak figures for {device_name!r} (known: H200, H100 SXM/PCIe, A100)"


def io_bytes(batch: int, size: tuple[int, int], scale: int, channels: int = 3, itemsize: int = 2) -> int:
    """Bytes that one call must read (the LR batch) and write (the SR batch), fp16 by default."""
    h, w = size
    return batch * channels * h * w * itemsize * (1 + scale * scale)


def floor_ms(flops: float, nbytes: float, card: Card) -> dict[str, Any]:
    """The fastest a call can be on ``card``: its FLOPs at the dense fp16 peak or its bytes at the memory
    bandwidth, whichever takes longer (no overlap can beat the slower of the two)."""
    compute_ms = flops / card.fp16_flops * 1e3
    memory_ms = nbytes / card.bytes_per_s * 1e3
    return {
        "ms": max(compute_ms, memory_ms),
        "compute_ms": compute_ms,
        "memory_ms": memory_ms,
        "bound": "compute" if compute_ms >= memory_ms else "memory",
        "card": card.name,
    }


def conv_macs(model: nn.Module, size: tuple[int, int], channels: int = 3) -> int:
    """Multiply-accumulates of ``model``'s convolutions for one (1, channels, *size) input, with their real
    (unpadded) channel counts: forward hooks on every ``nn.Conv2d`` of a copy on the meta device (no memory,
    no arithmetic). Layers that the forward skips (a dead branch) are not counted."""
    meta = copy.deepcopy(model).to_empty(device="meta")
    total = 0

    def hook(conv: nn.Module, _inputs: Any, out: Tensor) -> None:
        nonlocal total
        kh, kw = conv.kernel_size
        total += out.numel() * (conv.in_channels // conv.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            meta(torch.empty(1, channels, *size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total


def floor_estimate(
    macs_per_frame: int, batch: int, size: tuple[int, int], scale: int, device_name: str
) -> dict[str, Any]:
    """The ``floor`` row: ``floor_ms`` for a batch on the named card, with FPS; ``skipped`` for unknown cards."""
    card, reason = card_for(device_name)
    if card is None:
        return {"skipped": reason}
    flops, nbytes = 2.0 * macs_per_frame * batch, io_bytes(batch, size, scale)
    row = floor_ms(flops, nbytes, card)
    row.update(flops=flops, bytes=nbytes, fps=batch * 1000.0 / row["ms"])
    return row


# -------------------------------------------------------------------------------------------------- the timing

Timer = Callable[[Callable[[], object], int], float]


def wall_timer(fn: Callable[[], object], iters: int) -> float:
    """Mean ms per call of ``iters`` calls, by the wall clock (the CPU, where calls are synchronous)."""
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) * 1e3 / iters


def cuda_timer(fn: Callable[[], object], iters: int) -> float:
    """Mean ms per call of ``iters`` back-to-back calls, by CUDA events: the GPU's time, launches queued as
    in a video pipeline, one synchronisation per measurement."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def round_order(names: Sequence[str], r: int, rotate: bool = True) -> list[str]:
    """Round ``r``'s order: rotated by ``r`` so that no candidate always follows the same one (a heavy
    predecessor heats the card or leaves the caches cold for the next)."""
    names = list(names)
    if not rotate or not names:
        return names
    k = r % len(names)
    return names[k:] + names[:k]


def interleaved(
    runs: Mapping[str, Callable[[], object]],
    rounds: int,
    iters: int,
    timer: Timer = wall_timer,
    warmup: int = 1,
    rotate: bool = True,
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Every round times every candidate for ``iters`` calls (ms per call); returns each candidate's times,
    one per round, and the candidates that failed on the way (they leave the rounds) with the reason.
    ``warmup`` untimed calls of each come first, also round-robin."""
    times: dict[str, list[float]] = {n: [] for n in runs}
    failed: dict[str, str] = {}
    for _ in range(warmup):
        for name in [n for n in runs if n not in failed]:
            try:
                runs[name]()
            except Exception as e:  # a candidate that breaks leaves the table with its reason, the others go on
                failed[name] = f"failed in warm-up: {one_line(e)}"
    for r in range(rounds):
        for name in round_order([n for n in runs if n not in failed], r, rotate):
            try:
                times[name].append(timer(runs[name], iters))
            except Exception as e:
                failed[name] = f"failed in round {r + 1}: {one_line(e)}"
    return {n: t for n, t in times.items() if n not in failed}, failed


def summarize(times: Sequence[float], batch: int = 1) -> dict[str, float]:
    """Median and inter-quartile range (p25, p75; inclusive quantiles) of per-call ms over rounds, and FPS."""
    if not times:
        raise ValueError("no times to summarize")
    med = statistics.median(times)
    p25, p75 = statistics.quantiles(times, n=4, method="inclusive")[::2] if len(times) > 1 else (med, med)
    return {
        "median_ms": med,
        "p25_ms": p25,
        "p75_ms": p75,
        "iqr_ms": p75 - p25,
        "fps": batch * 1000.0 / med,
        "rounds": len(times),
    }


def one_line(e: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:200]}" if msg else type(e).__name__


# ---------------------------------------------------------------------------------------- the official network


def prepare_official(git_dir: str | Path, dest: str | Path, commit: str = OFFICIAL_COMMIT) -> list[Path]:
    """Extract the official network's files at ``commit`` from a git directory (a clone's ``.git`` or a bare
    mirror) into ``dest`` (``OFFICIAL_FILES`` from ``code/``, the licence, and a ``COMMIT`` file): a folder
    that ``import_official`` reads and that travels to a GPU machine (about 30 KiB)."""
    dest = Path(dest)
    written = []
    for rel, src in [(f, f"code/{f}") for f in OFFICIAL_FILES] + [("LICENSE", "LICENSE")]:
        data = subprocess.run(
            ["git", "--git-dir", str(git_dir), "show", f"{commit}:{src}"], check=True, capture_output=True
        ).stdout
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
        written.append(dest / rel)
    (dest / "COMMIT").write_text(f"{commit}\n")
    return [*written, dest / "COMMIT"]


class _GaussianBlur(nn.Module):
    """Stands in for ``torchvision.transforms.GaussianBlur`` on tensors where torchvision is not installed:
    the official network blurs its input only for the high-frequency branch, which its released
    configuration (forget=False) computes but never adds to the output. Same operation: a normalised
    Gaussian kernel, reflect padding, one depthwise convolution."""

    def __init__(self, kernel_size: int | Sequence[int], sigma: float | Sequence[float] = (0.1, 2.0)) -> None:
        super().__init__()
        self.kernel_size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.sigma = float(sigma if isinstance(sigma, int | float) else sigma[0])

    def forward(self, img: Tensor) -> Tensor:
        kx, ky = self.kernel_size

        def g(k: int) -> Tensor:
            x = torch.linspace(-(k - 1) / 2, (k - 1) / 2, k, dtype=img.dtype, device=img.device)
            p = torch.exp(-0.5 * (x / self.sigma) ** 2)
            return p / p.sum()

        kernel = (g(ky)[:, None] * g(kx)[None, :]).expand(img.shape[-3], 1, ky, kx)
        img = F.pad(img, [kx // 2, kx // 2, ky // 2, ky // 2], mode="reflect")
        return F.conv2d(img, kernel, groups=img.shape[-3])


@contextlib.contextmanager
def _torchvision_or_stand_in(notes: list[str]) -> Iterator[None]:
    """torchvision as it is, or (absent or broken) a module with ``transforms.GaussianBlur`` only, for the
    time of the official import; the imported code keeps its reference, ``sys.modules`` is restored."""
    try:
        import torchvision.transforms  # noqa: F401

        yield
        return
    except Exception as e:
        notes.append(
            f"torchvision unavailable ({one_line(e)}): a stand-in GaussianBlur feeds the unused high-frequency branch"
        )
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "torchvision" or k.startswith("torchvision.")}
    tv, transforms = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
    transforms.GaussianBlur = _GaussianBlur
    tv.transforms = transforms
    sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms})
    try:
        yield
    finally:
        for k in ("torchvision", "torchvision.transforms"):
            sys.modules.pop(k, None)
        sys.modules.update(saved)


@dataclass
class OfficialCode:
    """The official ``model`` package, imported from a folder, and its ``reparameterize`` (from test.py)."""

    folder: Path
    package: types.ModuleType
    reparameterize: Callable[..., nn.Module]
    commit: str | None
    notes: list[str] = field(default_factory=list)


_IMPORTED: dict[Path, OfficialCode] = {}


def official_commit(code_dir: str | Path) -> str | None:
    """The commit recorded in the folder's ``COMMIT`` file, or None."""
    f = Path(code_dir) / "COMMIT"
    return (f.read_text().strip() or None) if f.is_file() else None


def import_official(code_dir: str | Path) -> OfficialCode:
    """The official code from ``code_dir`` (a folder made by ``prepare_official``).

    Its modules import each other as the top-level package ``model``: that name is put in ``sys.modules``
    (and ``code_dir`` on ``sys.path``) only for the import, then the previous state is restored. Only the
    model package is imported: its arch needs torch and torchvision alone, while the rest of the repository
    (data, utils) needs packages a GPU image may lack (kornia, timm, cv2). The re-parameterization is the
    ``reparameterize`` function of its test.py, compiled alone (that module imports the data pipeline).
    """
    folder = Path(code_dir).resolve()
    if folder in _IMPORTED:
        return _IMPORTED[folder]
    if not folder.is_dir():
        raise FileNotFoundError(
            f"official code folder not found: {code_dir} (scripts/peer_table.py says how to prepare it)"
        )
    missing = [f for f in OFFICIAL_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"official code folder {code_dir} lacks {', '.join(missing)}")
    notes: list[str] = []
    commit = official_commit(folder)
    if commit != OFFICIAL_COMMIT:
        notes.append(f"official code at {commit or 'an unrecorded commit'}, pinned {OFFICIAL_COMMIT[:12]}")
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "model" or k.startswith("model.")}
    sys.path.insert(0, str(folder))
    try:
        with _torchvision_or_stand_in(notes):
            importlib.import_module("model.arch")
            package = sys.modules["model"]
    finally:
        sys.path.remove(str(folder))
        imported = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "model" or k.startswith("model.")}
        sys.modules.update(saved)
    _rename(imported, f"rt4ksr_official_{len(_IMPORTED)}")
    tree = ast.parse((folder / "test.py").read_text(), str(folder / "test.py"))
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "reparameterize"), None)
    if fn is None:
        raise ValueError(f"{folder / 'test.py'} defines no reparameterize()")
    namespace: dict[str, Any] = {"torch": torch, "F": F, "model": package}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(folder / "test.py"), "exec"), namespace)
    code = OfficialCode(folder, package, namespace["reparameterize"], commit, notes)
    _IMPORTED[folder] = code
    return code


def _rename(modules: Mapping[str, types.ModuleType], root: str) -> None:
    """Register the imported ``model.*`` modules as ``<root>.model.*``: torch.compile (dynamo) re-imports a
    traced function's module by its ``__name__``, so the modules must stay importable, but not under the
    generic name ``model``, which another package (or another folder of the official code) may use."""
    sys.modules.setdefault(root, types.ModuleType(root))
    for old, module in modules.items():
        new = f"{root}.{old}"
        for obj in vars(module).values():
            if getattr(obj, "__module__", None) == old and (inspect.isclass(obj) or inspect.isfunction(obj)):
                obj.__module__ = new
        module.__name__ = new
        sys.modules[new] = module


@contextlib.contextmanager
def _cuda_calls_stay(device: torch.device) -> Iterator[None]:
    """Off CUDA, make the tensor method ``cuda`` a no-op for the time of the official merge: the released
    code moves one helper tensor to the GPU by that method, which a CPU-only torch refuses; on CUDA nothing
    changes."""
    if device.type == "cuda":
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = original  # type: ignore[method-assign]


def build_official(
    code_dir: str | Path, weights: str | Path, scale: int, device: torch.device | str = "cpu"
) -> tuple[nn.Module, OfficialCode]:
    """The official network in its deploy form, built as the official test.py does with ``--is-train --rep``:
    the training form (``rt4ksr_rep`` with the parser's defaults), the checkpoint loaded strictly, then its
    ``reparameterize`` (which the released test() calls without its arguments; here with them). Returns the
    unwrapped (no DataParallel) fp32 module in eval mode on ``device``, and the imported code."""
    device = torch.device(device)
    code = import_official(code_dir)
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"official weights not found: {weights}")
    config = argparse_namespace(**OFFICIAL_ARGS, scale=scale, is_train=True, checkpoint_id=f"rt4ksr_x{scale}", rep=True)
    net = nn.DataParallel(code.package.__dict__[config.arch](config)).to(device)
    state = torch.load(weights, map_location=device, weights_only=True)["state_dict"]
    net.load_state_dict(state, strict=True)
    net.eval()
    with torch.no_grad(), _cuda_calls_stay(device):
        rep = code.reparameterize(config, net, device)
    return rep.module.eval(), code


def argparse_namespace(**kwargs: Any) -> Any:
    """An ``argparse.Namespace`` (what the official functions take as ``config``)."""
    import argparse

    return argparse.Namespace(**kwargs)


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
    """Kernels v2 options as ``TritonRTSRN`` keywords: ``persistent=True`` added, lists as tuples, and an
    unknown keyword refused here (one line) rather than deep in the constructor."""

    known = set(inspect.signature(TritonRTSRN.__init__).parameters) - {"self", "model", "dtype"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown TritonRTSRN option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return {**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}, "persistent": True}


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
    deploy form, times them interleaved, and adds the floor. Every round's times are kept."""

    x = timing_input(batch, size, device, torch.float32)
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
        timer = cuda_timer if device.type == "cuda" else wall_timer
        times, failed = interleaved(runs, rounds, iters, timer, warmup, rotate)
    for name, reason in failed.items():
        rows[name]["skipped"] = reason
    for name, t in times.items():
        rows[name].update(summarize(t, batch), times_ms=t)
    dev = device_name(device)
    macs = conv_macs(ours, size) if macs_per_frame is None else macs_per_frame
    floor = floor_estimate(macs, batch, size, scale, dev)
    for row in rows.values():
        if "median_ms" in row and "ms" in floor:
            row["x_floor"] = row["median_ms"] / floor["ms"]
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
        "official_repo": OFFICIAL_REPO,
        "official_commit_pinned": OFFICIAL_COMMIT,
        "official_commit": official_commit(code_dir) if code_dir is not None else None,
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
                f"{s:>5} {b:>5} {name:<17} {r['median_ms']:>10.3f} {iqr:>17} {r['fps']:>8.1f} "
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


def parse_value(text: str) -> Any:
    """A ``key=value`` value: JSON (numbers, true/false, null, lists), ``8x16`` or ``8,16`` as a tuple of
    ints, ``none``/``True``/``False`` as Python spells them, else the string."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for sep in ("x", ","):
        parts = low.strip("()[]").split(sep)
        if len(parts) > 1 and all(p.strip().lstrip("-").isdigit() for p in parts):
            return tuple(int(p) for p in parts)
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(v) if isinstance(v, list) else v


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``["tile=8x16", "stages=2", "keep_weights=false"]`` as keyword arguments."""
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=VALUE, got {p!r}")
        out[key.strip()] = parse_value(value)
    return out


def options_for_scale(options: Mapping[str, Any], scale: int) -> dict[str, Any]:
    """Kernels v2 options for ``scale`` from a JSON file's object: a flat dict of keywords, one per scale
    (``{"2": {...}, "3": {...}}``), or a sweep row (``{"options": {...}}``)."""
    if options and all(str(k).isdigit() for k in options):
        options = options.get(str(scale), options.get(scale, {}))  # type: ignore[call-overload]
    if isinstance(options.get("options"), Mapping):
        options = options["options"]
    return dict(options)
