"""Official checkpoints and the other weight formats."""

import pytest
import torch

from helpers import official_ckpt, randomize_
from rt4ksr.models import RTSRN, CheckpointMismatchError, load_into, load_official, read_state_dict, reparameterize
from rt4ksr.models.checkpoint import is_deploy_state


@pytest.mark.parametrize("scale", [2, 3])
def test_load_official_strict(scale):
    model = load_official(official_ckpt(scale))
    assert model.scale == scale and model.training
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in RTSRN(scale=scale).state_dict().items()}
    assert model.gamma.item() == 0.0  # the high-frequency branch never reached the output
    x = torch.rand(1, 3, 20, 30)
    with torch.no_grad():
        assert (model.eval()(x) - reparameterize(model)(x)).abs().max() <= 1e-5


def test_wrong_scale_names_the_mismatched_keys():
    state = read_state_dict(official_ckpt(3))
    with pytest.raises(CheckpointMismatchError, match=r"upsample\.0\.weight: checkpoint \(108, 24, 3, 3\) vs model "
                                                      r"\(48, 24, 3, 3\)"):
        load_into(RTSRN(scale=2), state, "x3 weights")


@pytest.mark.parametrize("scale", [3, 4])
def test_weights_of_another_scale_name_the_preset(scale):
    state = RTSRN(scale=scale).state_dict()
    with pytest.raises(CheckpointMismatchError, match=f"model=rt4ksr_x{scale}$"):
        load_into(RTSRN(scale=2), state)


def test_wrong_architecture_names_missing_and_unexpected_keys():
    state = read_state_dict(official_ckpt(2))
    with pytest.raises(CheckpointMismatchError) as err:
        load_into(RTSRN(num_blocks=5), state)
    assert "missing keys" in str(err.value) and "body.4.conv1.expand_conv.weight" in str(err.value)
    assert "\n" not in str(err.value) and str(err.value).endswith("model.num_blocks=4")  # one line, with the fix
    with pytest.raises(CheckpointMismatchError, match="unexpected keys"):
        load_into(RTSRN(num_blocks=3), state)


def test_formats_are_detected(tmp_path):
    model = randomize_(RTSRN(feature_channels=8, num_blocks=1))
    deploy = reparameterize(model)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "epoch": 3},
               tmp_path / "lightning.ckpt")
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "dp.pth")
    torch.save(deploy.state_dict(), tmp_path / "deploy.pth")
    for name in ("lightning.ckpt", "dp.pth"):
        state = read_state_dict(tmp_path / name)
        assert not is_deploy_state(state)
        load_into(RTSRN(feature_channels=8, num_blocks=1), state)
    state = read_state_dict(tmp_path / "deploy.pth")
    assert is_deploy_state(state)
    load_into(RTSRN(feature_channels=8, num_blocks=1, is_train=False), state)


def test_not_a_checkpoint(tmp_path):
    torch.save({"epoch": 1, "lr": 0.1}, tmp_path / "x.pth")
    with pytest.raises(CheckpointMismatchError, match="no state dict"):
        read_state_dict(tmp_path / "x.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_state_dict(tmp_path / "missing.pth")
