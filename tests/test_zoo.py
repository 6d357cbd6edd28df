"""The model zoo: every bundled file matches its card (hash, architecture, figures), the defaults, ``weights=`` in
every command, the ``rt4ksr zoo`` table, and upscaling with no weights argument."""

from __future__ import annotations

import copy
import hashlib
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import CKPT_DIR, ROOT, run_module
from rt4ksr.inference.evaluate import evaluate_sets
from rt4ksr.inference.loading import load_file
from rt4ksr.models.checkpoint import read_config
from rt4ksr.models.pretrained import (
    DEGRADED_SETS,
    SETS,
    TASKS,
    ZOO_DIR,
    Entry,
    UnknownWeightsError,
    default_entry,
    entries,
    entry,
    scale_for,
    weights_path,
)
from rt4ksr.zoo import markdown

TOLERANCE_DB = 0.005  # a card's Y-PSNR against a fresh evaluation of its file
EXPECTED = {"official-x2", "official-x3", "rt4ksr-x2", "rt4ksr-x3", "rt4ksr-x4", "rt4ksr-realworld-x2"}


def run(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run_module(module, *args, cwd=cwd, timeout=300)


def card_mismatches(e: Entry, measured: dict[str, dict[str, float]]) -> list[str]:
    """Where a card's figures differ from measured ones: Y-PSNR beyond ``TOLERANCE_DB``, Y-SSIM beyond 5e-4."""
    bad = []
    for name, m in measured.items():
        card = e.figures(name)
        if card is None:
            bad.append(f"{e.name}: no {name} figure on the card")
            continue
        if abs(card["psnr_y"] - m["psnr_y"]) > TOLERANCE_DB:
            bad.append(f"{e.name} {name}: card {card['psnr_y']:.4f} dB, measured {m['psnr_y']:.4f} dB")
        if abs(card["ssim_y"] - m["ssim_y"]) > 5e-4:
            bad.append(f"{e.name} {name}: card SSIM {card['ssim_y']:.4f}, measured {m['ssim_y']:.4f}")
    return bad


def measure(e: Entry, testsets_dir: Path, sets: list[str], tmp_path: Path) -> dict[str, dict[str, float]]:
    model = load_file(e.path).model
    return evaluate_sets(model, testsets_dir, sets, e.scale, lr_cache_dir=tmp_path / "lr")


def test_the_zoo_holds_every_entry_with_a_whole_card():
    assert {e.name for e in entries()} >= EXPECTED
    for e in entries():
        card = e.card
        assert card["name"] == e.name and e.task in TASKS and e.path.is_file(), e.name
        assert e.path.stat().st_size < 1024 * 1024, f"{e.name}: the zoo keeps small deploy-form files"
        assert hashlib.sha256(e.path.read_bytes()).hexdigest() == card["sha256"], f"{e.name}: file and card differ"
        config = read_config(e.path)
        assert config["scale"] == e.scale and config["is_train"] is False, e.name
        model = load_file(e.path).model
        assert sum(p.numel() for p in model.parameters()) == e.params, e.name
        assert set(SETS) <= set(card["metrics"]["sets"]), f"{e.name}: the card lacks a benchmark set"
        assert card["metrics"]["command"].startswith(f"rt4ksr eval weights={e.name}")
        for key in ("data", "hardware", "date"):
            assert card["training"].get(key), f"{e.name}: the card does not say the training {key}"
        assert card.get("license"), e.name
        if card["training"].get("command"):  # trained by rt4ksr: the command reproduces it
            assert card["training"]["command"].startswith("rt4ksr train experiment=zoo_")
            assert card["training"]["steps"] > 0 and card["training"]["minutes"] > 0
    license_file = ZOO_DIR / "official-rt4ksr.LICENSE"
    assert "Apache License" in license_file.read_text()


def test_set5_figures_on_every_card_hold(testsets_dir, tmp_path):
    bad = []
    for e in entries():
        bad += card_mismatches(e, measure(e, testsets_dir, ["set5"], tmp_path))
    assert not bad, "\n".join(bad)


def test_a_changed_figure_fails_the_card_check(testsets_dir, tmp_path):
    e = entry("official-x2")
    measured = measure(e, testsets_dir, ["set5"], tmp_path)
    assert not card_mismatches(e, measured)
    changed = copy.deepcopy(e.card)
    changed["metrics"]["sets"]["set5"]["psnr_y"] += 0.01
    assert card_mismatches(Entry(e.name, changed), measured)


@pytest.mark.slow
def test_every_figure_on_every_card_holds(testsets_dir, tmp_path):
    bad = []
    for e in entries():
        bad += card_mismatches(e, measure(e, testsets_dir, list(e.card["metrics"]["sets"]), tmp_path))
    assert not bad, "\n".join(bad)


def test_official_entries_are_the_published_weights_fused(tmp_path):
    """The card's conversion command, run again, writes the bundled file byte for byte."""
    for e in entries():
        if not e.name.startswith("official-"):
            continue
        ckpt = CKPT_DIR / "official" / f"rt4ksr_x{e.scale}.pth"
        if not ckpt.is_file():
            pytest.skip(f"official checkpoint not found at {ckpt} (set RT4KSR_CHECKPOINTS_DIR)")
        args = e.card["conversion"].split(" (")[0].split()[2:]
        args = [f"ckpt_path={ckpt}" if a.startswith("ckpt_path=") else a for a in args]
        out = tmp_path / f"{e.name}.safetensors"
        proc = run("rt4ksr.export", *args, f"output={out}")
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == e.path.read_bytes(), e.name


def test_defaults_are_the_best_clean_entry_of_each_scale():
    for scale in (2, 3, 4):
        d = default_entry(scale)
        assert d.scale == scale and d.task == "bicubic"
        rivals = [e for e in entries() if e.scale == scale and e.task == "bicubic"]
        assert d.mean_psnr() == max(e.mean_psnr() for e in rivals)
    assert [scale_for(s) for s in (1.5, 2, 2.5, 3, 3.5, 4, 6)] == [2, 2, 3, 3, 4, 4, 4]


def test_weights_are_named_or_given_as_a_file_never_both():
    assert weights_path("my.pth", None) == "my.pth"
    assert weights_path(None, "official-x3") == str(entry("official-x3").path)
    assert weights_path(None, None) is None
    assert weights_path(None, None, 2) == str(default_entry(2).path)
    with pytest.raises(UnknownWeightsError, match=r"did you mean 'rt4ksr-x2'.*rt4ksr zoo"):
        weights_path(None, "rt4ksr_x2")
    with pytest.raises(UnknownWeightsError, match="ckpt_path=PATH"):
        weights_path(None, "runs/deploy_final.pth")
    with pytest.raises(ValueError, match="not both"):
        weights_path("my.pth", "rt4ksr-x2")


def test_zoo_command_prints_the_table_and_the_cards():
    proc = run("rt4ksr.zoo")
    assert proc.returncode == 0, proc.stderr
    for e in entries():
        row = next(ln for ln in proc.stdout.splitlines() if ln.startswith(e.name + " ") or ln == e.name)
        assert f"x{e.scale}" in row and f"{e.figures('set5')['psnr_y']:.2f}" in row, row
    assert f"{default_entry(2).name} *" in proc.stdout
    proc = run("rt4ksr.zoo", "name=official-x3")
    assert proc.returncode == 0 and "sha256:" in proc.stdout and str(entry("official-x3").path) in proc.stdout
    proc = run("rt4ksr.zoo", "name=offical-x3")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        proc.stderr.strip()] and "did you mean 'official-x3'" in proc.stderr, proc.stderr


def test_realworld_entries_beat_the_clean_entry_on_degraded_inputs():
    """What a real-world entry is for, on its card: both degraded sets above the default clean entry."""
    for e in entries():
        if e.task != "realworld":
            continue
        clean = default_entry(e.scale)
        for name in DEGRADED_SETS:
            assert e.figures(name)["psnr_y"] > clean.figures(name)["psnr_y"], (e.name, name)


def test_the_docs_table_is_the_cards():
    """docs/zoo.md holds `rt4ksr zoo format=markdown` between its markers: a changed card changes the page."""
    text = (ROOT / "docs" / "zoo.md").read_text()
    start = text.index("\n", text.index("<!-- zoo table:")) + 1
    page = text[start:text.index("<!-- end of the zoo table -->")].strip()
    assert page == markdown().strip(), "docs/zoo.md's table differs from the cards: python scripts/zoo_entry.py docs"
    for e in entries():
        assert f"`{e.name}`" in page


def test_zoo_formats():
    proc = run("rt4ksr.zoo", "format=markdown")
    assert proc.returncode == 0 and proc.stdout.startswith("| name | scale |"), proc.stderr
    proc = run("rt4ksr.zoo", "format=json")
    assert proc.returncode == 0 and '"sha256"' in proc.stdout
    proc = run("rt4ksr.zoo", "format=markdwon")
    assert proc.returncode == 1 and "did you mean 'markdown'" in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8), (48, 36), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), img)
    return path


@pytest.mark.parametrize(("args", "scale"), [((), 2), (("-s", "3"), 3), (("model=rt4ksr_x3",), 3),
                                             (("-s", "4"), 4), (("-n", "official-x3"), 3)])
def test_upscale_needs_no_weights_argument(photo, tmp_path, args, scale):
    out = tmp_path / "out.png"
    proc = run("rt4ksr.upscale", "-i", str(photo), "-o", str(out), *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(out)).shape[:2] == (36 * scale, 48 * scale)
    if "-n" not in args:
        assert f"weights: {default_entry(scale).name}, the zoo's default at x{scale}" in proc.stdout + proc.stderr


def test_weights_of_another_scale_than_the_named_model_is_one_line(photo, tmp_path):
    proc = run("rt4ksr.upscale", "-i", str(photo), "-o", str(tmp_path / "o.png"), "weights=official-x2",
               "model=rt4ksr_x3", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "weights=official-x2 is an x2 model, but the model options ask for x3" in proc.stderr
    proc = run("rt4ksr.upscale", "-i", str(photo), "-o", str(tmp_path / "o.png"), "-n", "RealESRGAN_x4plus",
               cwd=tmp_path)
    assert proc.returncode == 1 and "weights=RealESRGAN_x4plus: no such zoo entry" in proc.stderr


def test_every_command_that_takes_weights_takes_a_zoo_name(tmp_path):
    proc = run("rt4ksr.export", "weights=official-x3", "format=safetensors", f"output={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "official-x3.safetensors").read_bytes() == entry("official-x3").path.read_bytes()
    proc = run("rt4ksr.summary", "weights=rt4ksr-x4", "json=true")
    assert proc.returncode == 0, proc.stderr
    assert f'"params_deploy": {entry("rt4ksr-x4").params}' in proc.stdout
    proc = run("rt4ksr.benchmark", "weights=official-x2", "modes=[deploy_fp32]", "batch_sizes=[1]", "cpu_repeats=1",
               "warmup=1", "cpu_size=[16,16]", "fp16_check=false")
    assert proc.returncode == 0, proc.stderr
    proc = run("rt4ksr.benchmark", "modes=[deploy_fp32]", "batch_sizes=[1]", "cpu_repeats=1", "warmup=1",
               "cpu_size=[16,16]", "paths.data_dir=/nonexistent")
    assert proc.returncode == 0 and "fp16 check skipped: no test sets at /nonexistent" in proc.stdout, proc.stderr


def test_eval_takes_a_zoo_name(testsets_dir, tmp_path):
    proc = run("rt4ksr.eval", "weights=official-x2", "data.test_sets=[set5]", f"paths.data_dir={testsets_dir.parent}",
               "progress=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{entry('official-x2').figures('set5')['psnr_y']:.4f}" in proc.stdout


def test_spandrel_loads_a_zoo_name():
    from helpers import torchvision_stand_in

    with torchvision_stand_in():
        pytest.importorskip("spandrel", reason="spandrel is not installed (pip install 'rt4ksr[spandrel]')")
        from rt4ksr.inference.spandrel_arch import load_file

    desc = load_file("rt4ksr-x4")
    assert desc.scale == 4 and desc.architecture.id == "RT4KSR"
