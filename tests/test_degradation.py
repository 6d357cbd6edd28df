"""MATLAB-exact bicubic: the benchmark LR files to the pixel, the float path, the selectable alternatives."""

import pytest
import torch
import torch.nn.functional as F

from rt4ksr.data import KorniaBicubic, MatlabBicubic, TestSet, imresize, mod_crop, read_image
from rt4ksr.data.degradation import contributions, cubic, resize_matrix


def test_cubic_kernel_values():
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5], dtype=torch.float64)
    assert cubic(x).tolist() == [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625]


def test_weights_are_normalised_and_antialiased():
    ind, w = contributions(64, 32, 0.5)
    torch.testing.assert_close(w.sum(1), torch.ones(32, dtype=torch.float64))
    assert w.shape[1] == 8 and ind.min() == 0 and ind.max() == 63  # kernel stretched to 4 / scale taps
    m = resize_matrix(64, 32, 0.5)
    assert m.shape == (32, 64) and torch.allclose(m.sum(1), torch.ones(32, dtype=torch.float64))


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("name", ["set5", "set14", "b100"])
def test_reproduces_every_benchmark_lr_file(name, scale, testsets_dir):
    ds = TestSet(testsets_dir, name, scale)
    differing = 0
    for hr_path, lr_path in zip(ds.hr_files, ds.lr_files, strict=True):
        hr = torch.from_numpy(read_image(hr_path)).permute(2, 0, 1)
        lr = torch.from_numpy(read_image(lr_path)).permute(2, 0, 1)
        out = imresize(mod_crop(hr, scale), 1 / scale)
        assert out.dtype == torch.uint8 and out.shape == lr.shape, hr_path
        differing += int((out != lr).sum())
    assert differing == 0


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_float_path_equals_the_uint8_path(scale):
    hr = torch.randint(0, 256, (4, 3, 48, 60), dtype=torch.uint8)
    lr8 = imresize(hr, 1 / scale)
    lrf = MatlabBicubic(scale)(hr.float() / 255)
    assert lrf.dtype == torch.float32 and torch.equal((lrf * 255).round().to(torch.uint8), lr8)
    unq = imresize(hr.float() / 255, 1 / scale)  # no quantization (and no clamp between passes): close
    assert (unq * 255 - lr8.float()).abs().mean() <= 0.5


def test_batched_any_leading_shape_and_dtype_kept():
    x = torch.rand(2, 5, 3, 24, 36, dtype=torch.float64)
    y = imresize(x, 0.5)
    assert y.shape == (2, 5, 3, 12, 18) and y.dtype == torch.float64
    torch.testing.assert_close(y[1, 3], imresize(x[1, 3], 0.5))


def test_upscaling_and_arbitrary_sizes():
    x = torch.rand(1, 3, 10, 14)
    assert imresize(x, 2.0).shape == (1, 3, 20, 28)
    assert imresize(x, size=(7, 9)).shape == (1, 3, 7, 9)
    assert imresize(x, 1 / 3).shape == (1, 3, 4, 5)  # MATLAB's ceil


def test_border_modes_differ_only_at_the_border():
    x = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    a, b = imresize(x, 0.5), imresize(x, 0.5, border="symmetric")
    assert torch.equal(a[:, 2:-2, 2:-2], b[:, 2:-2, 2:-2]) and not torch.equal(a, b)


def test_bad_inputs():
    with pytest.raises(ValueError, match="exactly one"):
        imresize(torch.rand(4, 4))
    with pytest.raises(TypeError, match="uint8 or floating"):
        imresize(torch.zeros(4, 4, dtype=torch.int32), 0.5)
    with pytest.raises(ValueError, match="border"):
        imresize(torch.rand(4, 4), 0.5, border="wrap")
    with pytest.raises(ValueError, match="2, 3 and 4"):
        MatlabBicubic(5)


def test_kornia_alternative_runs_and_is_further_from_matlab():
    hr = torch.rand(2, 3, 64, 64)
    exact, kornia = MatlabBicubic(2)(hr), KorniaBicubic(2)(hr)
    assert kornia.shape == exact.shape
    interp = F.interpolate(hr, scale_factor=0.5, mode="bicubic", antialias=True)
    assert (kornia - exact).abs().mean() > (interp - exact).abs().mean() * 0.5


@pytest.mark.parametrize("scale,literature", [(2, 33.66), (3, 30.39), (4, 28.42)])
def test_bicubic_baseline_on_set5_matches_the_literature(testsets_dir, scale, literature):
    """Bicubic upscaling of the benchmark LR files, scored as every method is (Y, crop = scale): the figures the
    literature gives for set5 (EDSR/RCAN tables), which checks the LR files, the resize and the metric at x4 too."""
    from rt4ksr.quality.measures import y_psnr_ssim

    ds = TestSet(testsets_dir, "set5", scale)
    psnrs = []
    for i in range(len(ds)):
        item = ds[i]
        sr = imresize(item["lr"].unsqueeze(0).double() / 255.0, scale=scale).float()
        psnrs += y_psnr_ssim(sr, item["hr"].unsqueeze(0), scale)[0]
    assert sum(psnrs) / len(psnrs) == pytest.approx(literature, abs=0.03)
