"""The released RT4KSR code (github eduardzamfir/RT4KSR, ``OFFICIAL_COMMIT``) as a peer of ours, for
scripts/peer_table.py: imported from a folder given at run time, never vendored (``prepare_official`` extracts its
model files from a git directory into such a folder), and built into its deploy form as its own test.py does.

Importing it takes surgery that has no place in the package: its modules import each other as the top-level
package ``model`` (put in ``sys.modules`` only for the import, then renamed), its re-parameterization is a
function of its test.py compiled alone, it moves a tensor with ``.cuda()`` (a no-op off CUDA for the merge), and it
imports torchvision for a branch it never uses (a stand-in where torchvision is missing).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import inspect
import subprocess
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rt4ksr.core.stats import one_line

OFFICIAL_REPO = "eduardzamfir/RT4KSR"
OFFICIAL_COMMIT = "fd6627a48d789adf5d9aad29f02ab2a3d2a25296"  # the repository's head: "Create LICENSE", 2023-08-08
# what the official network needs from the repository (its code/ folder): the model package, test.py for the
# re-parameterization it defines, and the licence
OFFICIAL_FILES = ("model/__init__.py", "model/arch.py", "model/modules.py", "model/utils/rep_utils.py", "test.py")
OFFICIAL_ARGS = dict(arch="rt4ksr_rep", feature_channels=24, num_blocks=4, act_type="gelu")  # code/utils/parser.py


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


def argparse_namespace(**kwargs: Any) -> argparse.Namespace:
    """An ``argparse.Namespace`` (what the official functions take as ``config``)."""
    return argparse.Namespace(**kwargs)

