"""SPAN and SRVGGNetCompact (Real-ESRGAN compact): shapes on any size, exact re-parameterization, published sizes,
released state-dict names, recognition of their files, and the same output as spandrel's implementations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import randomize_, torchvision_stand_in
from rt4ksr.models import RTSRN
from rt4ksr.models.compact import SRVGGNetCompact
from rt4ksr.models.span import SPAN, Conv3XC

SCALES = (2, 3, 4)
SIZES = ((7, 5), (1, 1))


def _released_span_state(model: SPAN, seed: int = 1) -> dict[str, torch.Tensor]:
    """Our training state in the released layout: each Conv3XC also stores its cached ``eval_conv``."""
    g = torch.Generator().manual_seed(seed)
    state = dict(model.state_dict())
    for name, m in model.named_modules():
        if isinstance(m, Conv3XC):
            c_out, c_in = m.sk.weight.shape[:2]
            state[f"{name}.eval_conv.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g)
            state[f"{name}.eval_conv.bias"] = torch.randn(c_out, generator=g)
    return state


def _tiny_span(scale: int, **kw) -> SPAN:
    return randomize_(SPAN(scale=scale, feature_channels=kw.pop("feature_channels", 6), **kw))


# ----------------------------------------------------------------------------------------------------------- SPAN


@pytest.mark.parametrize("scale", SCALES)
def test_span_shapes_on_odd_and_tiny_inputs(scale):
    model = _tiny_span(scale).eval()
    deploy = model.to_deploy()
    with torch.no_grad():
        for h, w in SIZES:
            x = torch.rand(2, 3, h, w)
            assert model(x).shape == deploy(x).shape == (2, 3, scale * h, scale * w)
    with pytest.raises(ValueError):
        model(torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError):
        model(torch.rand(3, 4, 4))


@pytest.mark.parametrize("scale", SCALES)
def test_span_deploy_equals_training_form_borders_included(scale):
    model = _tiny_span(scale).double().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deploy = model.to_deploy()
    x = torch.rand(1, 3, 7, 5, dtype=torch.float64)
    with torch.no_grad():
        ref, out = model(x), deploy(x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10 * ref.abs().max().item())
    for k, v in model.state_dict().items():  # the training weights are untouched
        assert torch.equal(v, before[k])
    assert not any(isinstance(m, Conv3XC) for m in deploy.modules())
    assert not any(".sk." in k or ".conv." in k or "eval_conv" in k for k in deploy.state_dict())
    assert deploy.is_deploy and not model.is_deploy
    built = SPAN(scale=scale, feature_channels=6, is_train=False)  # the deploy form, built directly
    built.load_state_dict(deploy.state_dict(), strict=True)


def test_span_published_parameter_count():
    count, where = SPAN().published_params()
    assert count == 150_688 and "team38_span_ch28_slim.pth" in where
    fused = SPAN(is_train=False)
    assert sum(p.numel() for p in fused.parameters()) == count
    assert sum(p.numel() for p in SPAN().to_deploy().parameters()) == count
    assert fused.published_params() == (count, where)
    assert SPAN(scale=2).published_params() is None
    assert SPAN(feature_channels=48).published_params() is None


@pytest.mark.parametrize("scale", (2, 4))
def test_span_released_state_dict_loads_strictly(scale):
    model = SPAN(scale=scale, feature_channels=8)
    released = _released_span_state(model)
    assert SPAN.matches(released) and SPAN.matches(model.state_dict())
    cfg = SPAN.config_of_state(released)
    assert cfg == {"scale": scale, "feature_channels": 8, "norm": True, "num_channels": 3, "is_train": True}
    other = SPAN(**cfg)
    other.load_state_dict(SPAN.adapt_state(released), strict=True)
    assert SPAN.adapt_state(model.state_dict()).keys() == model.state_dict().keys()  # our names pass unchanged
    # the NTIRE 2024 entry's file keeps only the fused ``eval_conv``: it loads into the deploy form
    fused_only = {k: v for k, v in released.items() if ".sk." not in k and ".conv." not in k}
    assert SPAN.matches(fused_only)
    cfg = SPAN.config_of_state(fused_only)
    assert cfg["is_train"] is False and cfg["feature_channels"] == 8 and cfg["scale"] == scale
    deploy = SPAN(**cfg)
    deploy.load_state_dict(SPAN.adapt_state(fused_only), strict=True)
    assert torch.equal(deploy.conv_2.weight, released["conv_2.eval_conv.weight"])
    deployed = model.to_deploy().state_dict()
    assert SPAN.matches(deployed) and SPAN.adapt_state(deployed).keys() == deployed.keys()


def test_span_no_norm_files_load():
    model = SPAN(scale=2, feature_channels=4, norm=False)
    state = _released_span_state(model)
    assert "no_norm" in state and SPAN.config_of_state(state)["norm"] is False
    SPAN(**SPAN.config_of_state(state)).load_state_dict(SPAN.adapt_state(state), strict=True)
    assert model.published_params() is None


def test_span_matches_only_its_own_files():
    assert not SPAN.matches(RTSRN().state_dict())
    assert not SPAN.matches(SRVGGNetCompact(num_feat=4, num_conv=1).state_dict())
    assert not SRVGGNetCompact.matches(SPAN(feature_channels=4).state_dict())
    assert not SRVGGNetCompact.matches(SPAN(feature_channels=4, is_train=False).state_dict())


def test_span_gradient_flows():
    model = _tiny_span(2)
    model(torch.rand(1, 3, 6, 5)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.conv_1.parameters())


# ----------------------------------------------------------------------------------------------- SRVGGNetCompact


@pytest.mark.parametrize("scale", SCALES)
def test_compact_shapes_on_odd_and_tiny_inputs(scale):
    model = randomize_(SRVGGNetCompact(scale=scale, num_feat=8, num_conv=2)).eval()
    with torch.no_grad():
        for h, w in SIZES:
            assert model(torch.rand(2, 3, h, w)).shape == (2, 3, scale * h, scale * w)
    with pytest.raises(ValueError):
        model(torch.rand(1, 2, 4, 4))
    deploy = model.to_deploy()  # nothing to fuse: the same network
    x = torch.rand(1, 3, 5, 3)
    with torch.no_grad():
        assert torch.equal(deploy(x), model(x))
    assert deploy.state_dict().keys() == model.state_dict().keys()
    SRVGGNetCompact(scale=scale, num_feat=8, num_conv=2, is_train=False).load_state_dict(deploy.state_dict())


def test_compact_published_parameter_counts():
    count, where = SRVGGNetCompact().published_params()
    assert count == 621_424 == sum(p.numel() for p in SRVGGNetCompact().parameters())
    assert "animevideov3" in where and "no count" in where
    general = SRVGGNetCompact(num_conv=32)
    assert general.published_params()[0] == 1_213_296 == sum(p.numel() for p in general.parameters())
    assert SRVGGNetCompact(scale=2).published_params() is None


@pytest.mark.parametrize("act_type", ("prelu", "relu", "leakyrelu"))
def test_compact_released_names_and_config(act_type):
    model = SRVGGNetCompact(scale=3, num_feat=8, num_conv=3, act_type=act_type)
    state = model.state_dict()
    assert all(k.startswith("body.") for k in state) and "body.0.weight" in state and "body.8.weight" in state
    assert SRVGGNetCompact.matches(state) and not SPAN.matches(state)
    cfg = SRVGGNetCompact.config_of_state(state)
    assert cfg == {"scale": 3, "num_feat": 8, "num_conv": 3, "num_channels": 3, "is_train": True,
                   "act_type": "prelu" if act_type == "prelu" else "relu"}  # relu and leakyrelu leave no weights
    SRVGGNetCompact(**cfg).load_state_dict(SRVGGNetCompact.adapt_state(state), strict=True)


def test_compact_does_not_match_rtsrn():
    assert not SRVGGNetCompact.matches(RTSRN().state_dict())
    assert not SRVGGNetCompact.matches(RTSRN(type="base").state_dict())
    assert not SRVGGNetCompact.matches({})


def test_compact_gradient_flows():
    model = randomize_(SRVGGNetCompact(scale=2, num_feat=8, num_conv=2))
    model(torch.rand(1, 3, 5, 4)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------------------ spandrel, same output

try:  # only these comparisons need spandrel: the tests above run without it
    with torchvision_stand_in():
        from spandrel.architectures.Compact import Compact as SpandrelCompact
        from spandrel.architectures.SPAN import SPAN as SpandrelSPAN
except ImportError:
    SpandrelCompact = SpandrelSPAN = None
needs_spandrel = pytest.mark.skipif(SpandrelSPAN is None, reason="spandrel is not installed (rt4ksr[spandrel])")


def _image_magnitudes_(span: nn.Module, norm: bool) -> None:
    """As a trained SPAN: features of order 1 although the input is scaled by 255, outputs about [-1, 1]."""
    with torch.no_grad():
        if norm:
            for p in (span.conv_1.sk.weight, span.conv_1.conv[0].weight):
                p.div_(255.0)
        span.upsampler[0].weight.mul_(0.15)
        span.upsampler[0].bias.mul_(0.15)


def _scaled_close(out: torch.Tensor, ref: torch.Tensor, tol: float = 1e-5) -> None:
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol * max(1.0, ref.abs().max().item()))


@pytest.mark.parametrize(("scale", "channels", "norm"), [(2, 28, True), (4, 28, True), (4, 12, True), (2, 48, False)])
@needs_spandrel
def test_span_equals_spandrel(scale, channels, norm):
    theirs = SpandrelSPAN(num_in_ch=3, num_out_ch=3, feature_channels=channels, upscale=scale, norm=norm)
    _image_magnitudes_(randomize_(theirs, seed=scale), norm)
    state = {k: v.clone() for k, v in theirs.state_dict().items()}  # the released layout (eval_conv included)
    assert SPAN.matches(state)
    ours = SPAN(**SPAN.config_of_state(state))
    ours.load_state_dict(SPAN.adapt_state(state), strict=True)
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        theirs.train()
        ours.train()
        _scaled_close(ours(x), theirs(x))  # both run the training branches
        theirs.eval()  # spandrel fuses into eval_conv at every eval forward
        ours.eval()
        ref = theirs(x)
        _scaled_close(ours(x), ref)
        _scaled_close(ours.to_deploy()(x), ref)
        theirs.double()  # in float64 our training branches equal spandrel's fused eval_conv to rounding
        ours.double()
        torch.testing.assert_close(ours(x.double()), theirs(x.double()), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("scale", "feat", "conv", "act"),
                         [(2, 64, 16, "prelu"), (4, 64, 16, "prelu"), (4, 16, 3, "relu"), (2, 12, 2, "leakyrelu")])
@needs_spandrel
def test_compact_equals_spandrel(scale, feat, conv, act):
    theirs = SpandrelCompact(num_in_ch=3, num_out_ch=3, num_feat=feat, num_conv=conv, upscale=scale, act_type=act)
    randomize_(theirs, seed=scale).eval()
    state = theirs.state_dict()
    assert SRVGGNetCompact.matches(state)
    ours = SRVGGNetCompact(scale=scale, num_feat=feat, num_conv=conv, act_type=act).eval()
    ours.load_state_dict(SRVGGNetCompact.adapt_state(state), strict=True)
    cfg = SRVGGNetCompact.config_of_state(state)
    assert (cfg["scale"], cfg["num_feat"], cfg["num_conv"]) == (scale, feat, conv)
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        _scaled_close(ours(x), theirs(x.clone()))


def test_helpers_are_modules():
    assert isinstance(SPAN(feature_channels=4).conv_1.to_deploy(), nn.Conv2d)
