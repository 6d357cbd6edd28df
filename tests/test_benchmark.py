"""Benchmark sets: layout errors name the files, grayscale works, missing LR is reported."""

import cv2
import numpy as np
import pytest
import torch

from rt4ksr.data import ImageReadError, MissingLRError, TestSet
from rt4ksr.inference.evaluate import evaluate_sets
from rt4ksr.models import RTSRN, reparameterize


def make_set(root, name="tiny", scale=2, sizes=((30, 41), (24, 24)), gray=False):
    base = root / name / "test"
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        shape = (h, w) if gray else (h, w, 3)
        hr = rng.integers(0, 256, shape, dtype=np.uint8)
        lr = cv2.resize(hr, (w // scale, h // scale), interpolation=cv2.INTER_AREA)
        for folder, img in (("HR", hr), (f"LR_bicubic_x{scale}", lr)):
            (base / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(base / folder / f"img_{i:03d}.png"), img)
    return base


def test_pairs_are_mod_cropped(tmp_path):
    make_set(tmp_path, scale=3, sizes=((31, 40),), gray=True)
    ds = TestSet(tmp_path, "tiny", 3)
    item = ds[0]
    assert item["lr"].shape == (3, 10, 13) and item["hr"].shape == (3, 30, 39)
    assert item["lr"].dtype == torch.uint8


def test_missing_folder_names_path_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no test sets in .*layout: <testsets_dir>/<name>/test/HR"):
        TestSet(tmp_path, "nothere", 2)


def test_unknown_set_lists_the_sets_there_and_the_degraded_form(tmp_path):
    for name in ("set5", "b100"):
        (tmp_path / name / "test" / "HR").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"'set55'.*set55/test/HR.* holds: b100, set5 \(degraded sets are "
                                                r"named <set>\[_b"):
        TestSet(tmp_path, "set55", 2)
    with pytest.raises(FileNotFoundError, match=r"of its base set 'set14'.* holds: b100, set5$"):
        TestSet(tmp_path, "set14_bicubic_q75", 2, lr_cache_dir=tmp_path / "cache")


def test_missing_lr_partner_names_both_files(tmp_path):
    base = make_set(tmp_path)
    (base / "LR_bicubic_x2" / "img_001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"HR/img_001.png.*LR_bicubic_x2/img_001.png"):
        TestSet(tmp_path, "tiny", 2)


def test_size_mismatch_names_both_files(tmp_path):
    base = make_set(tmp_path)
    cv2.imwrite(str(base / "LR_bicubic_x2" / "img_000.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ImageReadError, match=r"HR/img_000.png.*LR_bicubic_x2/img_000.png"):
        TestSet(tmp_path, "tiny", 2)[0]


def test_unreadable_image_names_the_file(tmp_path):
    base = make_set(tmp_path)
    (base / "HR" / "img_000.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="img_000.png"):
        TestSet(tmp_path, "tiny", 2)[0]


def test_set_without_lr_is_skipped_with_a_warning(tmp_path, caplog):
    make_set(tmp_path, "full")
    base = make_set(tmp_path, "hronly")
    for f in (base / "LR_bicubic_x2").iterdir():
        f.unlink()
    (base / "LR_bicubic_x2").rmdir()
    with pytest.raises(MissingLRError):
        TestSet(tmp_path, "hronly", 2)
    model = reparameterize(RTSRN(feature_channels=8, num_blocks=1))
    results = evaluate_sets(model, tmp_path, ["full", "hronly"], 2)
    assert list(results) == ["full"] and results["full"]["n"] == 2
    assert "skipping hronly" in caplog.text
