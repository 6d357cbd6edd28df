"""IMDN as a peer: the RELEASED code (eduardzamfir/NTIRE23-RTSR ``demo/models/imdn.py`` + ``modules/_imdn.py``)
with its published x4 weights, and ``rt4ksr.models.imdn.IMDN`` with the same weights, on Set5 x4.

Both are scored by rt4ksr's own evaluation (``rt4ksr.inference.evaluate.evaluate``: input /255, output clamped and
rounded to 8 bits, MATLAB Y channel, ``crop = scale``), so the two figures are comparable with every other table
of the project; the script also prints the largest output difference between the two networks.

    python scripts/peer_imdn.py [--released GIT_DIR_OR_CHECKOUT] [--weights imdn_x4.pth] [--out result.json]

The released files are imported from a temporary folder (never vendored): ``--released`` is a git directory (the
mirror, read with ``git show HEAD:...``) or a checkout holding ``demo/models/``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from rt4ksr.data.testsets import TestSet
from rt4ksr.inference.evaluate import evaluate
from rt4ksr.models.checkpoint import read_state_dict
from rt4ksr.models.imdn import IMDN
from rt4ksr.quality.measures import to_uint8_range

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path("/work/.mirror/eduardzamfir+NTIRE23-RTSR/repo")
WEIGHTS = ROOT.parent / "shared" / "checkpoints" / "peers" / "imdn_x4.pth"
TESTSETS = ROOT.parent / "shared" / "data" / "testsets"
RELEASED_FILES = ("demo/models/imdn.py", "demo/models/modules/_imdn.py")
SCALE = 4


def released_source(where: Path, rel: str) -> tuple[bytes, str]:
    """A released file's bytes and what it was read from (git directory at HEAD, or a checkout)."""
    if (where / rel).is_file():
        return (where / rel).read_bytes(), str(where / rel)
    if (where / "HEAD").is_file() or (where / ".git").exists():
        git_dir = where / ".git" if (where / ".git").exists() else where
        commit = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        data = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{rel}"], check=True,
                              capture_output=True).stdout
        return data, f"{git_dir}@{commit}:{rel}"
    raise SystemExit(f"{where}: neither a git directory nor a checkout holding {rel}")


def import_released(where: Path, dest: Path) -> tuple[type, list[str]]:
    """The released ``IMDN`` class, its files written under ``dest`` as the package ``models`` they import."""
    sources = []
    for rel in RELEASED_FILES:
        data, origin = released_source(where, rel)
        path = dest / rel.removeprefix("demo/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        (path.parent / "__init__.py").touch()
        sources.append(origin)
    sys.path.insert(0, str(dest))
    try:
        import models.imdn as released
    finally:
        sys.path.remove(str(dest))
    return released.IMDN, sources


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--released", type=Path, default=MIRROR, help="git directory or checkout of NTIRE23-RTSR")
    ap.add_argument("--weights", type=Path, default=WEIGHTS, help="the published imdn_x4.pth")
    ap.add_argument("--testsets", type=Path, default=TESTSETS, help="folder holding set5/test/{HR,LR_bicubic_x4}")
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)

    raw = torch.load(args.weights, map_location="cpu", weights_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        released_cls, sources = import_released(args.released, Path(tmp))
        released = released_cls(in_nc=3, out_nc=3, nc=64, nb=8, upscale=SCALE).eval()
    released.load_state_dict(raw, strict=True)  # the released code reads its file as it is (``model.N...``)

    state = read_state_dict(args.weights)  # as rt4ksr's loader hands it over: ``model.`` stripped
    if not IMDN.matches(state):
        raise SystemExit(f"{args.weights}: not recognised as IMDN weights")
    ours = IMDN(**IMDN.config_of_state(state)).eval()
    ours.load_state_dict(IMDN.adapt_state(state), strict=True)

    dataset = TestSet(args.testsets, "set5", SCALE)
    result = {"set": "set5", "scale": SCALE, "weights": str(args.weights), "released_code": sources,
              "metric": "rt4ksr.inference.evaluate.evaluate (8-bit rounding, MATLAB Y, crop = scale)",
              "released": evaluate(released, dataset), "ours": evaluate(ours, dataset)}
    max_diff = max_q = 0.0
    for i in range(len(dataset)):
        lr = dataset[i]["lr"].unsqueeze(0).float() / 255.0
        a, b = released(lr), ours(lr)
        max_diff = max(max_diff, (a - b).abs().max().item())
        max_q = max(max_q, (to_uint8_range(a) - to_uint8_range(b)).abs().max().item())
    result["max_abs_output_diff"] = max_diff
    result["max_abs_uint8_diff"] = max_q
    for name in ("released", "ours"):
        r = result[name]
        print(f"{name:<9} set5 x{SCALE}: Y-PSNR {r['psnr_y']:.4f} dB  Y-SSIM {r['ssim_y']:.4f}  (n={r['n']})")
    print(f"max |released - ours| output: {max_diff:.3g} (8-bit: {max_q:g})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
