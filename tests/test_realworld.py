"""Real-world degradations on the device, their options' checks, and the degraded benchmark sets."""

import hashlib
import io
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import kornia
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from rt4ksr.core.config import CONFIG_DIR, compose
from rt4ksr.core.errors import ConfigValueError, user_command
from rt4ksr.data import BicubicJPEG, MatlabBicubic, RealESRGANDegradation, SRDataModule, TestSet, read_image
from rt4ksr.data.degraded_sets import DegradedSet, degraded_lr, parse_degraded, standard_normal
from rt4ksr.data.jpeg import jpeg_codec
from rt4ksr.data.lr_files import make_lr_folder
from rt4ksr.data.realworld.blur import mixed_kernels, quadratic_form, sinc_kernels
from rt4ksr.data.realworld.draws import Draws
from rt4ksr.data.realworld.ops import add_noise

DEGRADATIONS = sorted(p.stem for p in (Path(CONFIG_DIR) / "data" / "degradation").glob("*.yaml"))
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def is_8bit(x: torch.Tensor) -> bool:
    return torch.equal(torch.round(x * 255) / 255, x) and x.min() >= 0 and x.max() <= 1


# --- the pipelines ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_high_order_model_is_seeded_per_sample_and_8_bit(scale, device):
    deg = RealESRGANDegradation(scale, seed=0)
    hr = torch.rand(1, 3, 12 * scale, 12 * scale, device=device).expand(6, -1, -1, -1)
    a, b, c = deg(hr, seed=7), deg(hr, seed=7), deg(hr, seed=8)
    assert a.shape == (6, 3, 12, 12) and a.device.type == device and is_8bit(a)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert all(not torch.equal(a[0], a[i]) for i in range(1, 6))  # one HR image, six different LR draws


def test_clean_share_and_the_bicubic_preset_without_draws_are_exact_bicubic():
    hr = torch.rand(4, 3, 32, 32)
    exact = MatlabBicubic(2)(hr)
    assert torch.equal(RealESRGANDegradation(2, clean_prob=1.0)(hr, seed=1), exact)
    assert torch.equal(BicubicJPEG(2, jpeg_prob=0.0, noise_prob=0.0)(hr, seed=1), exact)
    jpeg = BicubicJPEG(2, jpeg_quality=[30, 30], noise_prob=0.0)(hr, seed=1)
    expected = jpeg_codec(exact, torch.full((4,), 30.0))
    assert is_8bit(jpeg) and torch.equal(jpeg, torch.round(expected.clamp(0, 1) * 255) / 255)


def test_kernels_are_normalised_cut_to_their_size_and_match_kornia():
    k, n = 9, 5
    sx, sy = torch.linspace(0.5, 2.5, n), torch.linspace(2.0, 0.6, n)
    gauss = torch.exp(-0.5 * quadratic_form(sx, sy, torch.zeros(n), k))
    ref = kornia.filters.get_gaussian_kernel2d((k, k), torch.stack([sy, sx], dim=-1))
    torch.testing.assert_close(gauss / gauss.sum((-2, -1), keepdim=True), ref)
    turned = torch.exp(-0.5 * quadratic_form(sx, sy, torch.full((n,), math.pi / 2), k))
    torch.testing.assert_close(turned, gauss.transpose(-1, -2), atol=1e-6, rtol=0)
    sizes = torch.tensor([3, 5, 9, 7, 9])
    sinc = sinc_kernels(torch.full((n,), math.pi / 3), sizes, k)
    torch.testing.assert_close(sinc.sum((-2, -1)), torch.ones(n))
    assert sinc[0, :3].abs().sum() == 0 and sinc[0, 3:6, 3:6].abs().sum() > 0  # 3 taps inside the 9x9
    assert (sinc < 0).any()  # ringing lobes
    spec = RealESRGANDegradation(2).first
    mixed = mixed_kernels(Draws(3, torch.device("cpu")), 64, spec, factor=0.5)
    assert mixed.shape == (64, 11, 11)  # [7, 21] taps of x4 are [3, 11] at x2
    torch.testing.assert_close(mixed.sum((-2, -1)), torch.ones(64))


def test_noise_statistics():
    x = torch.full((8, 3, 32, 32), 0.5)
    d = Draws(0, x.device)
    g = add_noise(x, d, 1.0, 1.0, (10.0, 10.0), (0, 0), gray_prob=1.0) - x
    assert torch.equal(g[:, 0], g[:, 1]) and abs(g.std().item() - 10 / 255) < 0.003
    p = add_noise(x, d, 1.0, 0.0, (0, 0), (1.0, 1.0), gray_prob=0.0) - x
    assert abs(p.std().item() - math.sqrt(0.5 / 256)) < 0.003 and not torch.equal(p[:, 0], p[:, 1])
    assert torch.equal(add_noise(x, d, 0.0, 1.0, (10.0, 10.0), (0, 0), 0.0), x)


def test_batches_are_reproducible_from_seed_and_step(tmp_path):
    def datamodule(seed):
        dm = SRDataModule({"t": {"dir": str(tmp_path)}}, scale=2, augment=False,
                          degradation=BicubicJPEG(2, seed=seed, noise_prob=1.0))
        dm.trainer = SimpleNamespace(global_step=0, global_rank=0)
        return dm

    hr = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    dm = datamodule(1)
    first = [dm.on_after_batch_transfer({"hr": hr}, 0)["lr"] for _ in range(2)]  # two batches of step 0
    dm.trainer.global_step = 5
    at5 = dm.on_after_batch_transfer({"hr": hr}, 0)["lr"]
    resumed = datamodule(1)
    resumed.trainer.global_step = 5
    assert torch.equal(resumed.on_after_batch_transfer({"hr": hr}, 0)["lr"], at5)  # a resumed run draws the same
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[0], at5)
    other = datamodule(2)
    other.trainer.global_step = 5
    assert not torch.equal(other.on_after_batch_transfer({"hr": hr}, 0)["lr"], at5)


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_every_degradation_config_instantiates_and_runs(name):
    cfg = compose("train", ["experiment=bsd200_x2", f"data/degradation={name}", "seed=3"])
    deg = instantiate(cfg.data.degradation)
    lr = deg(torch.rand(2, 3, 16, 16))
    assert lr.shape == (2, 3, 8, 8) and is_8bit(lr)
    if hasattr(deg, "seed"):
        assert deg.seed == 3  # the training seed


def test_realworld_experiment_composes():
    cfg = compose("train", ["experiment=realworld_x2"])
    dm = instantiate(cfg.data)
    assert isinstance(dm.degradation, RealESRGANDegradation) and dm.degradation.clean_prob == 0.25
    assert cfg.model.global_skip == "bicubic" and cfg.trainer.max_time == "00:00:10:00"
    assert list(cfg.data.test_sets) == ["set5", "set14", "set14_bicubic_n5_q75", "b100_b1_bicubic_n10"]
    for name in cfg.data.test_sets[2:]:
        parse_degraded(name)


# --- impossible options fail when the pipeline is built, naming the key ----------------------------------------


BAD = [
    ("bicubic_jpeg", "jpeg_quality=[0,200]", "data.degradation.jpeg_quality=[0, 200]"),
    ("bicubic_jpeg", "jpeg_quality=[90,50]", "data.degradation.jpeg_quality"),
    ("bicubic_jpeg", "noise_sigma=[-1,5]", "data.degradation.noise_sigma"),
    ("bicubic_jpeg", "noise_prob=1.5", "data.degradation.noise_prob=1.5"),
    ("realesrgan", "first.kernel_size=[6,21]", "data.degradation.first.kernel_size=[6, 21]"),
    ("realesrgan", "second.kernel_size=[1,7]", "data.degradation.second.kernel_size"),
    ("realesrgan", "final.kernel_size=[7,8]", "data.degradation.final.kernel_size"),
    ("realesrgan", "first.sigma=[-0.5,2]", "data.degradation.first.sigma"),
    ("realesrgan", "second.jpeg_quality=[30,101]", "data.degradation.second.jpeg_quality"),
    ("realesrgan", "clean_prob=-0.1", "data.degradation.clean_prob"),
    ("realesrgan", "first.resize_range=[1.2,1.5]", "data.degradation.first.resize_range"),
    ("realesrgan", "final.sinc_cutoff=[0.5,2]", "data.degradation.final.sinc_cutoff"),
    ("realesrgan", "first.kernel_probs.iso=-1", "data.degradation.first.kernel_probs"),
    ("realesrgan", "+first.jpeg_qualty=[30,95]", "data.degradation.first.jpeg_qualty: unknown option"),
]


@pytest.mark.parametrize(("deg", "override", "message"), BAD)
def test_impossible_ranges_fail_at_config_time_naming_the_key(deg, override, message, capsys):
    override = override.replace("+", "+data.degradation.") if override[0] == "+" else f"data.degradation.{override}"
    cfg = compose("train", ["experiment=bsd200_x2", f"data/degradation={deg}", override])

    @user_command
    def build():
        instantiate(cfg.data)

    with pytest.raises(SystemExit) as e:
        build()
    err = capsys.readouterr().err
    assert e.value.code == 1 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_impossible_ranges_in_python():
    with pytest.raises(ConfigValueError, match="odd integers"):
        RealESRGANDegradation(2, first={"kernel_size": [4, 4]})
    with pytest.raises(ConfigValueError, match="1..100"):
        BicubicJPEG(2, jpeg_quality=(0, 200))
    with pytest.raises(ConfigValueError, match="integer scales"):
        BicubicJPEG(5)


# --- degraded benchmark sets -------------------------------------------------------------------------------------


def test_degraded_names_parse_and_bad_ones_show_the_form():
    assert parse_degraded("set14_bicubic_n5_q75") == DegradedSet("set14", None, 5.0, 75)
    assert parse_degraded("b100_b1.2_bicubic_n10") == DegradedSet("b100", 1.2, 10.0, None)
    assert parse_degraded("set5_bicubic_n5.0").canonical == "set5_bicubic_n5"
    for bad in ["set5_n5", "set5_bicubic", "set5_bicubic_q0", "set5_bicubic_q75_n5", "set5_bicubic_x", "_bicubic_n5"]:
        with pytest.raises(ConfigValueError, match=r"<set>\[_b<blur sigma>\]_bicubic"):
            parse_degraded(bad)


def reference_lr(hr: np.ndarray, lr_bicubic: np.ndarray, name: str, scale: int, stem: str, sigma: float,
                 quality: int) -> np.ndarray:
    """The recipe written out again, independently: seed, Box-Muller, rounding, Pillow's codec."""
    seed = int.from_bytes(hashlib.sha256(f"rt4ksr-degraded|{name}|x{scale}|{stem}".encode()).digest()[:8], "little")
    raw = np.random.PCG64(seed).random_raw(lr_bicubic.size + lr_bicubic.size % 2)
    u = (np.right_shift(raw, np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    z = np.stack([np.sqrt(-2 * np.log(u[0::2])) * np.cos(2 * np.pi * u[1::2]),
                  np.sqrt(-2 * np.log(u[0::2])) * np.sin(2 * np.pi * u[1::2])], axis=1).reshape(-1)
    noisy = np.clip(np.floor(lr_bicubic + sigma * z[: lr_bicubic.size].reshape(lr_bicubic.shape) + 0.5), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return np.array(Image.open(buffer).convert("RGB"))


def tiny_set(root: Path) -> Path:
    hr = root / "testsets" / "tiny" / "test" / "HR"
    hr.mkdir(parents=True)
    y, x = np.mgrid[0:30, 0:34]
    for i in range(2):  # a smooth pattern: made by arithmetic, the same under any library version
        img = np.stack([(x * 7 + y * 3 + 40 * i) % 256, (x * y + 11) % 256, (255 - x * 5 - y * 2) % 256], axis=-1)
        cv2.imwrite(str(hr / f"v{i}.png"), img.astype(np.uint8))
    make_lr_folder(hr, hr.parent / "LR_bicubic_x2", 2, workers=1, progress=False)
    return root / "testsets"


def test_degraded_lr_is_byte_identical_across_generations_and_equals_the_reference(tmp_path):
    testsets = tiny_set(tmp_path)
    name = "tiny_bicubic_n5_q75"
    first = TestSet(testsets, name, 2, tmp_path / "cache")
    data = [p.read_bytes() for p in first.lr_files]
    again = TestSet(testsets, name, 2, tmp_path / "cache")  # from the cache
    shutil.rmtree(tmp_path / "cache")
    fresh = TestSet(testsets, name, 2, tmp_path / "cache")  # generated anew
    assert [p.read_bytes() for p in again.lr_files] == data == [p.read_bytes() for p in fresh.lr_files]
    hr_path = first.hr_files[0]
    lr_file = testsets / "tiny" / "test" / "LR_bicubic_x2" / hr_path.name  # the literature's LR path
    expected = reference_lr(read_image(hr_path), read_image(lr_file).astype(np.float64), name, 2, hr_path.stem, 5, 75)
    assert np.array_equal(read_image(first.lr_files[0]), expected)
    item = first[0]
    assert item["lr"].shape == (3, 15, 17) and item["hr"].shape == (3, 30, 34)


def test_noise_stream_is_pinned():
    """The noise follows from the name alone: these bytes must not change with numpy, torch or the machine."""
    y, x = np.mgrid[0:20, 0:24]
    hr = np.stack([(x * 9 + y) % 256, (x * y) % 256, (200 - x - y) % 256], axis=-1).astype(np.uint8)
    lr = degraded_lr(hr, 2, parse_degraded("pin_b1_bicubic_n5"), "img")
    assert hashlib.sha256(lr.tobytes()).hexdigest()[:16] == PINNED
    z = standard_normal(1, 200_001)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01


PINNED = "f2b1384166b6d5b3"


def test_degraded_sets_validate_beside_clean_ones(tmp_path):
    testsets = tiny_set(tmp_path)
    dm = SRDataModule({"t": {"dir": str(tmp_path)}}, scale=2, testsets_dir=testsets, lr_cache_dir=tmp_path / "c",
                      test_sets=["tiny", "tiny_b1_bicubic_n10", "missing_bicubic_q50"])
    assert dm.val_names == ["tiny", "tiny_b1_bicubic_n10"]  # a missing base set is skipped with a warning
    with pytest.raises(ConfigValueError, match="degraded set name of the form"):
        TestSet(testsets, "tiny_noisy", 2, tmp_path / "c")
    from rt4ksr.inference.evaluate import evaluate_sets, format_table

    net = torch.nn.Upsample(scale_factor=2, mode="bicubic")
    net.register_parameter("p", torch.nn.Parameter(torch.zeros(1)))
    results = evaluate_sets(net, testsets, ["tiny", "tiny_bicubic_n5_q75"], 2, lr_cache_dir=tmp_path / "c")
    assert results["tiny"]["psnr_y"] > results["tiny_bicubic_n5_q75"]["psnr_y"]
    assert "tiny_bicubic_n5_q75" in format_table(results, 2)
