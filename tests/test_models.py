"""RTSRN: shapes, exact deploy-form equivalence, structure of the deploy form, bad inputs."""

import functools

import pytest
import torch
from torch import nn

from helpers import randomize_
from rt4ksr.models import (
    RTSRN,
    BaseBlock,
    DConvBaseBlock,
    ExpandResConv,
    NAFBlock,
    RepBaseBlock,
    RepConv3x3,
    SimplifiedNAFBlock,
    reparameterize,
)

BLOCKS = {"base": BaseBlock, "dconvbase": DConvBaseBlock, "nafbase": NAFBlock, "repbase": RepBaseBlock,
          "simplified": SimplifiedNAFBlock}
# options that change the network's structure, each on top of the released design
STRUCTURES = {
    "released": {},
    "type_base": {"type": "base"},
    "forget_gate": {"forget": True},
    "forget_no_gaussian": {"forget": True, "use_gaussian": False},
    "no_hfb": {"use_hfb": False},
    "no_unshuffle_strided": {"unshuffle": False},
    "downscaling_1": {"downscaling": 1},
    "downscaling_4": {"downscaling": 4},
    "no_layernorm_residual": {"layernorm": False, "residual": True},
    "squeeze_eca": {"squeeze": True, "eca_gamma": 2},
    "lrelu": {"act_type": "lrelu"},
    "relu_blocks_6": {"act_type": "relu", "num_blocks": 6, "feature_channels": 16},
    "skip_bicubic": {"global_skip": "bicubic"},
    "skip_nearest": {"global_skip": "nearest", "downscaling": 1},
}


def small(scale=2, block="simplified", **kw):
    kw.setdefault("feature_channels", 8)
    kw.setdefault("num_blocks", 2)
    return RTSRN(scale=scale, baseblock=BLOCKS[block], **kw)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("size", [(16, 16), (13, 21), (1, 1), (7, 2)])
def test_output_shape_any_size(block, scale, size):
    model = small(scale, block).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = model(x)
        d = reparameterize(model)(x)
    assert y.shape == d.shape == (2, 3, scale * size[0], scale * size[1])


def _max_diff(model, x):
    deploy = reparameterize(model)
    with torch.no_grad():
        return (model.eval()(x) - deploy(x)).abs().max().item()


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("block", BLOCKS)
def test_deploy_equals_training_every_block(block, scale):
    model = randomize_(small(scale, block, num_blocks=3, feature_channels=12), seed=scale)
    x = torch.rand(2, 3, 19, 23)  # odd: bias padding at the borders matters
    assert _max_diff(model, x) <= 1e-5
    assert _max_diff(model.double(), x.double()) <= 1e-12


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_deploy_equals_training_every_structure(structure, scale):
    model = randomize_(small(scale, "simplified", **STRUCTURES[structure]), seed=7)
    x = torch.rand(1, 3, 21, 18)
    assert _max_diff(model, x) <= 1e-5
    assert _max_diff(model.double(), x.double()) <= 1e-12


@pytest.mark.parametrize("block", ["repbase", "nafbase"])
def test_deploy_equals_training_other_blocks_with_options(block):
    model = randomize_(small(2, block, squeeze=True, eca_gamma=1, layernorm=True, type="base"), seed=3)
    assert _max_diff(model.double(), torch.rand(1, 3, 15, 17, dtype=torch.float64)) <= 1e-12


def test_reparameterize_never_touches_the_training_model():
    model = randomize_(small(2, "repbase", type="rep", forget=True), seed=1).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modules_before = [type(m) for m in model.modules()]
    deploy = reparameterize(model)
    assert model.training and not deploy.training
    assert [type(m) for m in model.modules()] == modules_before
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    deploy_ptrs = {p.data_ptr() for p in deploy.parameters()}
    assert not deploy_ptrs & {p.data_ptr() for p in model.parameters()}


def test_deploy_form_has_no_training_branches_and_no_dead_branch():
    deploy = reparameterize(RTSRN())
    kinds = {type(m) for m in deploy.modules()}
    assert not kinds & {ExpandResConv, RepConv3x3}
    names = set(deploy.state_dict())
    assert not any(k.startswith(("hfb", "gamma")) for k in names)
    assert deploy.is_deploy and not hasattr(deploy, "highpass")


def test_deploy_keeps_the_gated_branch():
    deploy = reparameterize(RTSRN(forget=True))
    assert "gamma" in deploy.state_dict() and any(k.startswith("hfb.0.weight") for k in deploy.state_dict())


def test_is_train_false_builds_the_deploy_form_directly():
    direct = RTSRN(scale=3, is_train=False)
    fused = reparameterize(RTSRN(scale=3))
    assert {k: v.shape for k, v in direct.state_dict().items()} == {k: v.shape for k, v in fused.state_dict().items()}
    direct.load_state_dict(fused.state_dict())


@pytest.mark.parametrize("scale,train,deploy", [(2, 152_233, 39_312), (3, 165_253, 52_332)])
def test_released_parameter_counts(scale, train, deploy):
    model = RTSRN(scale=scale)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model) == train
    assert count(reparameterize(model)) == deploy


def test_block_config_is_recorded_for_reload():
    block = functools.partial(NAFBlock, ffn_expand=4)
    m = RTSRN(baseblock=block)
    assert m.config["baseblock"] == {"_target_": "rt4ksr.models.blocks.NAFBlock", "_partial_": True, "ffn_expand": 4}
    assert m.config["scale"] == 2 and m.config["is_train"] is True
    assert reparameterize(m).config["is_train"] is False and m.config["is_train"] is True


def test_training_form_trains_every_parameter_that_reaches_the_output():
    model = small(2, "nafbase", forget=True)
    model(torch.rand(1, 3, 8, 8)).mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


def test_dead_branch_is_frozen_and_gated_branch_trains():
    dead = RTSRN()
    assert not dead.gamma.requires_grad and not any(p.requires_grad for p in dead.hfb.parameters())
    assert all(p.requires_grad for n, p in dead.named_parameters() if not n.startswith(("hfb", "gamma")))
    gated = RTSRN(forget=True)
    assert all(p.requires_grad for p in gated.parameters())


def test_global_skip_starts_from_the_interpolated_input():
    model = RTSRN(global_skip="bicubic")  # the last convolution starts at zero
    x = torch.rand(1, 3, 10, 12)
    ref = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(model(x), ref)


@pytest.mark.parametrize("kwargs,match", [
    ({"global_skip": "lanczos"}, "global_skip must be one of"),
    ({"type": "fancy"}, "type must be one of"),
    ({"act_type": "swish"}, "act_type must be one of"),
    ({"forget": True, "use_hfb": False}, "needs use_hfb"),
    ({"scale": 0}, ">= 1"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RTSRN(**kwargs)


@pytest.mark.parametrize("shape", [(3, 16, 16), (1, 1, 16, 16), (1, 4, 8, 8)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match=r"expected an \(N, 3, H, W\) tensor"):
        RTSRN()(torch.rand(*shape))


def test_nafblock_residual_scales_fold_into_convolutions():
    block = randomize_(NAFBlock(8), seed=2).double()
    deploy = reparameterize(block)
    assert not any(isinstance(m, type(block.beta)) for m in deploy.modules())
    x = torch.rand(1, 8, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(deploy(x), block(x), rtol=0, atol=1e-12)
    assert sum(p.numel() for p in deploy.parameters()) == sum(p.numel() for p in block.parameters()) - 16


def test_generic_module_reparameterizes_its_children():
    seq = nn.Sequential(RepConv3x3(4, 4), nn.ReLU(), ExpandResConv(4))
    deploy = reparameterize(seq)
    assert [type(m) for m in deploy] == [nn.Conv2d, nn.ReLU, nn.Conv2d]
    assert isinstance(seq[0], RepConv3x3)
