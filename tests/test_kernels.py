"""The fused Triton kernels against the eager deploy form, run on the CPU by Triton's interpreter."""

import os
import re

import pytest
import torch

from helpers import official_ckpt, randomize_, run_module  # conftest sets TRITON_INTERPRET=1 before torch loads triton
from rt4ksr.kernels.network import TritonRTSRN, supports
from rt4ksr.models import RTSRN, load_official, reparameterize

pytest.importorskip("triton", reason="the kernels need the triton package (pip install -e '.[dev]')")
if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    pytest.skip("Triton kernels need a GPU or TRITON_INTERPRET=1", allow_module_level=True)

CASES = {
    "released": {},
    "no_layernorm_residual": {"layernorm": False, "residual": True},
    "relu_16ch_3blocks": {"act_type": "relu", "feature_channels": 16, "num_blocks": 3},
    "lrelu_downscaling_1": {"act_type": "lrelu", "downscaling": 1, "unshuffle": False},
    "type_base": {"type": "base"},
    "bicubic_skip": {"global_skip": "bicubic"},  # the bsd200 recipe's network
    "nearest_skip_residual": {"global_skip": "nearest", "residual": True},
    "bicubic_skip_downscaling_1": {"global_skip": "bicubic", "downscaling": 1, "unshuffle": False},  # 5x5 taps
    "bicubic_skip_downscaling_4": {"global_skip": "bicubic", "downscaling": 4},  # shuffle 8 / 12, 48-ch head
}


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("case", CASES)
def test_kernels_match_the_deploy_form(case, scale):
    kw = {"feature_channels": 8, "num_blocks": 2, **CASES[case]}
    deploy = reparameterize(randomize_(RTSRN(scale=scale, **kw), seed=11))
    fused = TritonRTSRN(deploy, dtype=torch.float32, block_p=32)
    for shape in [(1, 3, 9, 13), (2, 3, 6, 6)]:  # odd sizes: padding and crop paths
        x = torch.rand(*shape)
        with torch.no_grad():
            ref = deploy(x)
        got = fused(x)
        assert got.shape == ref.shape
        assert (got - ref).abs().max() <= 1e-4, case


def test_official_weights():
    deploy = reparameterize(load_official(official_ckpt(2)))
    x = torch.rand(1, 3, 12, 18)
    with torch.no_grad():
        ref = deploy(x)
    assert (TritonRTSRN(deploy, dtype=torch.float32)(x) - ref).abs().max() <= 1e-4


def test_unsupported_models_say_why():
    assert "deploy form" in supports(RTSRN())
    assert "gated" in supports(reparameterize(RTSRN(forget=True)))
    assert "attention" in supports(reparameterize(RTSRN(squeeze=True)))
    from rt4ksr.models import BaseBlock

    assert "BaseBlock" in supports(reparameterize(RTSRN(baseblock=BaseBlock)))
    with pytest.raises(ValueError, match="cannot run"):
        TritonRTSRN(RTSRN())


def test_upscaler_with_kernels_equals_eager():
    import numpy as np

    from rt4ksr.inference.upscaler import Upscaler

    deploy = reparameterize(randomize_(RTSRN(feature_channels=8, num_blocks=1), seed=3))
    img = np.random.default_rng(0).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    a = Upscaler(deploy, torch.device("cpu"))(img)
    b = Upscaler(deploy, torch.device("cpu"), kernels=True)(img)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


FUSED = [  # (case, layers per launch, region): several tiles per image, more tiles than programs (the
    # persistent loop), a group shorter than the network with a leftover layer, and one longer than it
    ("released", 2, (8, 16)),
    ("nearest_skip_residual", 3, (16, 8)),
    ("relu_16ch_3blocks", 4, (16, 16)),
    ("no_layernorm_residual", 8, (32, 32)),
]


@pytest.mark.parametrize("case,fuse,region", FUSED)
def test_layers_fused_across_a_tile_match(case, fuse, region):
    kw = {"feature_channels": 8, "num_blocks": 4, **CASES[case]}
    deploy = reparameterize(randomize_(RTSRN(scale=3, **kw), seed=5))
    fused = TritonRTSRN(deploy, dtype=torch.float32, block_p=64, fuse=fuse, region=region)
    x = torch.rand(2, 3, 23, 17)  # odd: padded to a 12 x 9 feature grid
    with torch.no_grad():
        ref = deploy(x)
    got = fused(x)
    assert (got - ref).abs().max() <= 1e-4


@pytest.mark.parametrize("scale", [2, 3])
def test_scattered_stores_match_too(scale):
    """row_stores=False: the last conv stores through the shuffle element by element (for comparison on a card)."""
    deploy = reparameterize(randomize_(RTSRN(scale=scale, feature_channels=8, num_blocks=1), seed=8))
    x = torch.rand(2, 3, 9, 13)
    with torch.no_grad():
        ref = deploy(x)
    assert (TritonRTSRN(deploy, dtype=torch.float32, row_stores=False)(x) - ref).abs().max() <= 1e-4


def test_outputs_beyond_int32_indexing_are_refused():
    fused = TritonRTSRN(reparameterize(RTSRN(feature_channels=8, num_blocks=1)), dtype=torch.float16)
    x = torch.empty(100, 3, 1080, 1920, dtype=torch.float16, device="meta")  # 100 frames of 4K: 2.5e9 values
    with pytest.raises(ValueError, match="split the batch of 100"):
        fused.launches(x)


def test_bad_kernel_options_say_why():
    from rt4ksr.kernels.network import options_error

    deploy = reparameterize(RTSRN(feature_channels=8, num_blocks=1))
    for kw, words in [({"fuse": 0}, "fuse must be an integer >= 1"),
                      ({"fuse": 4, "region": (8, 8)}, "larger than 2 * fuse (8)"),
                      ({"region": (12, 16)}, "region must be two powers of two"),
                      ({"block_p": 48}, "block_p must be a power of two"),
                      ({"tile": (3, 5)}, "tile must be two powers of two"),
                      ({"tile": (2, 4)}, "at least 16 pixels"),
                      ({"stages": 0}, "stages must be an integer >= 1"),
                      ({"num_warps": 3}, "num_warps must be 1, 2, 4, 8, 16 or null"),
                      ({"persistent": "yes"}, "persistent must be true or false")]:
        with pytest.raises(ValueError, match=re.escape(words)):
            TritonRTSRN(deploy, **kw)
    assert "unknown kernel option 'tiles'" in options_error(tiles=(8, 16))
    assert options_error(persistent=True, tile=[1, 64], stages=3, num_warps=8) is None


V2 = [  # kernels v2 option sets, one per case in turn: a 2-D tile, a row tile with the pipelined tap loop, and
    # scattered stores; 1 program per SM, so that the programs loop over several tiles
    {"tile": (4, 8)},
    {"tile": (1, 16), "keep_weights": False, "stages": 2},
    {"tile": (2, 16), "row_stores": False, "stages": 2},
]


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("case", CASES)
def test_persistent_kernels_match_the_deploy_form(case, scale):
    kw = {"feature_channels": 8, "num_blocks": 2, **CASES[case]}
    deploy = reparameterize(randomize_(RTSRN(scale=scale, **kw), seed=11))
    options = V2[(list(CASES).index(case) + scale) % len(V2)]
    fused = TritonRTSRN(deploy, dtype=torch.float32, persistent=True, programs_per_sm=1, **options)
    x = torch.rand(1, 3, 9, 13) if scale == 2 else torch.rand(2, 3, 7, 6)  # partial tiles at the edges; a batch
    with torch.no_grad():
        ref = deploy(x)
    got = fused(x)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() <= 1e-4, (case, options)


def test_persistent_layers_around_a_fused_group_match():
    """fuse=2 with persistent=true: the head and the last conv run persistent, the blocks fused in pairs."""
    deploy = reparameterize(randomize_(RTSRN(scale=2, feature_channels=8, num_blocks=3, global_skip="bicubic"),
                                       seed=4))
    fused = TritonRTSRN(deploy, dtype=torch.float32, fuse=2, region=(8, 8), persistent=True, tile=(2, 8))
    assert {launch.kernel.__name__ for launch in fused.launches(torch.zeros(1, 3, 10, 14))[0]} == {
        "conv3x3_persistent_kernel", "fused_layers_kernel"}
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        ref = deploy(x)
    assert (fused(x) - ref).abs().max() <= 1e-4


def test_persistent_tiles_shrink_to_the_register_budget():
    from rt4ksr.kernels.network import _tile_shape

    assert _tile_shape((8, 16), 32, False, False, None) == ((8, 16), 8)    # 128 x 32 accumulators
    assert _tile_shape((8, 16), 32, True, False, None) == ((4, 16), 8)     # the head: 64 pixels
    assert _tile_shape((8, 16), 128, False, False, None) == ((2, 16), 8)   # x3's last conv: 108 -> 128
    assert _tile_shape((1, 64), 64, False, True, None) == ((1, 32), 8)     # the last conv with the skip's taps
    assert _tile_shape((4, 4), 128, False, True, 4) == ((4, 4), 4)         # never below 16 pixels


def test_kernel_sweep_checks_and_picks(tmp_path):
    """rt4ksr kernel-sweep, the per-card tuner, on the interpreter: every option set of v1 and v2 is checked
    against eager, and the fastest of each family is printed as overrides that the commands take."""
    import json

    from rt4ksr.core.config import compose
    from rt4ksr.kernels.network import kernel_options

    out = tmp_path / "s.json"
    proc = run_module("rt4ksr.kernel_sweep", "model.global_skip=bicubic", "kernels=[v1,v2]", "fuse=[1,2]",
                      "block_p=[32]", "region=[8,8]", "row_stores=[false]", "tile=[[2,8]]",
                      "keep_weights=[true,false]", "stages=[2]", "programs_per_sm=[1]", "size=[5,7]",
                      f"json={out}", env={"TRITON_INTERPRET": "1"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [r["name"] for r in rows] == [
        "v1 fuse=1 block_p=32 scatter", "v1 fuse=2 block_p=32 region=8x8 pps1 scatter",
        "v2 tile=2x8 keep s2 pps1 scatter", "v2 tile=2x8 loop s2 pps1 scatter"]
    assert all(r["ok"] and r["max_abs_diff"] < 1e-4 for r in rows)
    assert set(report["best_per_family"]) == {"v1", "v2"} and report["best"]["name"] in [r["name"] for r in rows]
    assert "fastest v1: v1 fuse=" in proc.stdout and "fastest v2: v2 tile=2x8" in proc.stdout
    for r in rows:  # what the sweep prints is what benchmark and upscale read back
        cfg = compose("upscale", r["overrides"].split())
        assert {k: tuple(v) if isinstance(v, list) else v for k, v in kernel_options(cfg.kernel_options).items()
                if k in r["options"]} == {k: tuple(v) if isinstance(v, list) else v for k, v in r["options"].items()}
    for args, words in [(["fuse=[0.5]"], "fuse must be a list of positive integers"),
                        (["kernels=[v3]"], "kernels must be a list of v1 and/or v2"),
                        (["tile=[[3,8]]"], "tile must be two powers of two"),
                        (["tile=[8,16]"], "tile must be 2 positive integers")]:
        bad = run_module("rt4ksr.kernel_sweep", *args, env={"TRITON_INTERPRET": "1"})
        assert bad.returncode == 1 and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_bad_kernel_options_on_the_command_line_are_one_line_errors(tmp_path):
    proc = run_module("rt4ksr.upscale", f"input={tmp_path}", f"output={tmp_path / 'out'}", "kernels=true",
                      "kernel_options.tile=[3,5]")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "kernel_options: tile must be two powers of two with at least 16 pixels" in proc.stderr


def test_cuda_graphed_is_the_function_itself_off_cuda():
    from rt4ksr.inference.upscaler import cuda_graphed

    fn = torch.nn.Identity()
    assert cuda_graphed(fn, torch.zeros(1)) is fn


def test_layernorms_move_into_the_producers_epilogue_unless_a_residual_needs_the_raw_input():
    released = TritonRTSRN(reparameterize(RTSRN(feature_channels=8, num_blocks=2)), dtype=torch.float32)
    assert [(st.ln, st.out_ln) for st in released.stages] == [(False, True)] * 3 + [(False, False)] * 2
    residual = TritonRTSRN(reparameterize(RTSRN(feature_channels=8, num_blocks=2, residual=True)),
                           dtype=torch.float32)
    assert [(st.ln, st.out_ln) for st in residual.stages] == [(False, False), (True, False), (True, True),
                                                             (False, False), (False, False)]


@pytest.mark.parametrize("mode", ["nearest", "bicubic"])
@pytest.mark.parametrize("scale,down", [(2, 1), (2, 2), (3, 2), (4, 2), (3, 4)])
def test_skip_weights_are_the_interpolation_as_a_convolution(mode, scale, down):
    """F.interpolate(x) == pixel_shuffle(conv(pixel_unshuffle(replicate-padded x), skip_weights)), float64."""
    import torch.nn.functional as F

    from rt4ksr.kernels.network import skip_weights

    k, w = skip_weights(mode, scale, down)
    x = torch.rand(2, 3, 6 * down, 5 * down, dtype=torch.float64)
    r = k // 2
    padded = F.pad(x, (r * down,) * 4, mode="replicate")
    weight = w.reshape(k, k, w.shape[1], w.shape[2]).permute(3, 2, 0, 1)
    got = F.pixel_shuffle(F.conv2d(F.pixel_unshuffle(padded, down), weight), scale * down)
    ref = F.interpolate(x, scale_factor=scale, mode=mode, **({"align_corners": False} if mode == "bicubic" else {}))
    assert (got - ref).abs().max() <= 1e-12


@pytest.mark.parametrize("mode", ["nearest", "bicubic"])
@pytest.mark.parametrize("scale,down", [(2, 1), (2, 2), (3, 2), (4, 2), (3, 4)])
def test_the_skip_as_a_grouped_convolution_is_the_interpolation(mode, scale, down):
    """What exported graphs run (``skip_conv``) equals F.interpolate: float64 to 1e-12, float32 to 1e-5."""
    import torch.nn.functional as F

    from rt4ksr.models.skip import skip_conv, skip_kernel

    kernel = skip_kernel(mode, scale, down)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        x = torch.rand(2, 3, 6 * down, 5 * down, dtype=dtype)
        ref = F.interpolate(x, scale_factor=scale, mode=mode,
                            **({"align_corners": False} if mode == "bicubic" else {}))
        assert (skip_conv(x, kernel, scale, down) - ref).abs().max() <= tol
