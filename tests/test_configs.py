"""Every config file composes, and every object config instantiates."""

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rt4ksr.core.config import CONFIG_DIR, compose
from rt4ksr.models import RTSRN, reparameterize

CONFIGS = Path(CONFIG_DIR)
MODELS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))
# the presets of RTSRN (the blocks are its option); the arena's other designs are checked in test_arena.py
RTSRN_MODELS = [m for m in MODELS if compose("summary", [f"model={m}"]).model._target_ == "rt4ksr.models.RTSRN"]
BLOCKS = sorted(p.stem for p in (CONFIGS / "model" / "baseblock").glob("*.yaml"))
TOP = sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def test_the_expected_presets_exist():
    assert {"rt4ksr_x2", "rt4ksr_x3", "rtsrn_base_x2", "rtsrn_base_x3", "rtsrn_m", "rtsrn_l"} <= set(RTSRN_MODELS)
    assert set(BLOCKS) == {"base", "dconvbase", "nafbase", "repbase", "simplified"}


@pytest.mark.parametrize("name", TOP)
def test_top_level_configs_compose(name):
    cfg = compose(name)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves, Hydra's own included


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("model", RTSRN_MODELS)
def test_every_model_and_block_instantiates(model, block):
    cfg = compose("summary", [f"model={model}", f"model/baseblock={block}"])
    net = instantiate(cfg.model)
    assert isinstance(net, RTSRN) and net.scale == cfg.model.scale
    reparameterize(net)


def test_presets_match_the_released_and_baseline_designs():
    for s in (2, 3):  # the released network (its parameter counts are asserted in test_models)
        preset = instantiate(compose("summary", [f"model=rt4ksr_x{s}"]).model)
        assert {k: v.shape for k, v in preset.state_dict().items()} == {
            k: v.shape for k, v in RTSRN(scale=s).state_dict().items()}
    base = compose("summary", ["model=rtsrn_base_x3"]).model
    assert (base.type, base.baseblock._target_, base.num_blocks, base.feature_channels, base.act_type, base.scale) == (
        "base", "rt4ksr.models.BaseBlock", 4, 24, "gelu", 3)


def test_paths_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RT4KSR_DATA_DIR", str(tmp_path))
    assert compose("eval").data.testsets_dir == f"{tmp_path}/testsets"


def test_unknown_option_lists_the_choices():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="simplified"):
        compose("eval", ["model/baseblock=fancy"])


def test_wandb_goes_offline_without_credentials(monkeypatch, tmp_path):
    from rt4ksr.core.config import wandb_offline

    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_offline() is True  # no key, no login: offline, decided without any network call
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password x\n")
    assert wandb_offline() is False
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_offline() is True
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert wandb_offline() is False
