"""The fused Triton kernels against the eager deploy form, run on the CPU by Triton's interpreter."""

import os

import pytest
import torch

from conftest import official_ckpt, randomize_  # conftest sets TRITON_INTERPRET=1 before torch loads triton
from rt4ksr.kernels import TritonRTSRN, supports
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

    from rt4ksr.inference import Upscaler

    deploy = reparameterize(randomize_(RTSRN(feature_channels=8, num_blocks=1), seed=3))
    img = np.random.default_rng(0).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    a = Upscaler(deploy, torch.device("cpu"))(img)
    b = Upscaler(deploy, torch.device("cpu"), kernels=True)(img)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
