"""spandrel (chaiNNer, ComfyUI) loads every kind of rt4ksr weights file once the RT4KSR architecture is installed,
and the model it hands back upscales exactly as ``rt4ksr.upscale`` does."""

from __future__ import annotations

import functools
import importlib
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import torchvision_stand_in

with torchvision_stand_in():
    spandrel = pytest.importorskip("spandrel", reason="spandrel is not installed (pip install 'rt4ksr[spandrel]')")

from helpers import official_ckpt, randomize_  # noqa: E402
from rt4ksr.core.extras import MissingExtraError  # noqa: E402
from rt4ksr.inference.exporters import export  # noqa: E402
from rt4ksr.inference.loading import load_file as load_weights  # noqa: E402
from rt4ksr.inference.spandrel_arch import ARCH_ID, RT4KSRArch, install, load_file  # noqa: E402
from rt4ksr.inference.upscaler import Upscaler  # noqa: E402
from rt4ksr.models import (  # noqa: E402
    RTSRN,
    BaseBlock,
    CheckpointMismatchError,
    DConvBaseBlock,
    NAFBlock,
    RepBaseBlock,
    reparameterize,
)
from rt4ksr.models.checkpoint import CONFIG_KEY, config_tensor  # noqa: E402
from rt4ksr.training.run import save_deploy  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    install()


def image(h: int = 13, w: int = 18, seed: int = 0) -> np.ndarray:
    """A uint8 RGB image of odd height, so that the model's own padding to its unshuffle grid is exercised."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def run_descriptor(desc: spandrel.ImageModelDescriptor, img: np.ndarray) -> np.ndarray:
    """The descriptor's output for a uint8 image, quantised as a host saves it."""
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    out = desc(x)
    return (out * 255.0).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


def assert_matches_rt4ksr(desc: spandrel.ImageModelDescriptor, reference: torch.nn.Module, scale: int,
                          channels: int = 3) -> None:
    """The descriptor reports the model and upscales as rt4ksr's own ``Upscaler`` does (within 1/255)."""
    assert desc.architecture.id == ARCH_ID and desc.purpose == "SR"
    assert desc.scale == scale and desc.input_channels == desc.output_channels == channels
    assert desc.model.is_deploy  # the fused network
    img = image()
    ours = run_descriptor(desc, img)
    ref = Upscaler(reference, CPU)(img)
    assert ours.shape == ref.shape == (img.shape[0] * scale, img.shape[1] * scale, 3)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


def model(seed: int = 0, **kwargs: object) -> RTSRN:
    return randomize_(RTSRN(**kwargs), seed)


# --- every kind of file ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3])
def test_official_checkpoints(scale):
    path = official_ckpt(scale)
    reference = load_weights(path, {"_target_": "rt4ksr.models.RTSRN", "scale": scale}).model
    # ComfyUI's way: torch.load(weights_only=True), then the state dict to spandrel
    desc = spandrel.ModelLoader().load_from_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    assert_matches_rt4ksr(desc, reference, scale)
    assert desc.tags == ["SimplifiedNAFBlock", "24nf", "4nb", "skip-none"]
    assert_matches_rt4ksr(load_file(path), reference, scale)


def test_load_from_file_refuses_the_counter_in_official_checkpoints():
    """spandrel 0.4's restricted unpickler forbids ``collections.Counter`` (the scheduler's milestones saved in the
    official files); docs/tools.md says so and gives the ways round it. Update both when spandrel accepts it."""
    with pytest.raises(pickle.UnpicklingError, match="collections.Counter"):
        spandrel.ModelLoader().load_from_file(official_ckpt(2))


def _lightning_checkpoint(path: Path, net: RTSRN, scheduler: bool) -> Path:
    """A real Lightning checkpoint of two training steps with an EMA (the cheapest run that writes one)."""
    import lightning as L

    from rt4ksr.training.module import SRModule

    module = SRModule(net, torch.nn.L1Loss(), functools.partial(torch.optim.Adam, lr=1e-3),
                      functools.partial(torch.optim.lr_scheduler.MultiStepLR, milestones=[1]) if scheduler else None,
                      ema_decay=0.5)
    g = torch.Generator().manual_seed(0)
    batch = {"lr": torch.rand(2, 3, 8, 8, generator=g), "hr": torch.rand(2, 3, 16, 16, generator=g)}
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=path.parent)
    trainer.fit(module, torch.utils.data.DataLoader([batch], batch_size=None))
    trainer.save_checkpoint(path)
    return path


def test_lightning_checkpoint_with_ema(tmp_path):
    net = model(feature_channels=8, num_blocks=1, baseblock=NAFBlock, global_skip="bicubic")
    path = _lightning_checkpoint(tmp_path / "last.ckpt", net, scheduler=False)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert any(k.startswith("ema.module.") for k in state) and CONFIG_KEY in state
    desc = spandrel.ModelLoader().load_from_file(path)
    assert_matches_rt4ksr(desc, load_weights(path).model, 2)  # load_weights reads the EMA weights too
    assert desc.tags == ["NAFBlock", "8nf", "1nb", "skip-bicubic"]


def test_lightning_checkpoint_with_multistep_scheduler(tmp_path):
    """rt4ksr writes MultiStepLR's milestones as a plain dict (spandrel's unpickler refuses Counter objects)."""
    net = model(feature_channels=8, num_blocks=1)
    path = _lightning_checkpoint(tmp_path / "last.ckpt", net, scheduler=True)
    assert_matches_rt4ksr(spandrel.ModelLoader().load_from_file(path), load_weights(path).model, 2)
    assert_matches_rt4ksr(load_file(path), load_weights(path).model, 2)


def test_deploy_file_from_save_deploy(tmp_path):
    net = model(scale=3, feature_channels=12, num_blocks=2, baseblock=RepBaseBlock, global_skip="nearest")
    path = tmp_path / "deploy_best.pth"
    save_deploy(net, path, source="test")
    desc = spandrel.ModelLoader().load_from_file(path)
    assert_matches_rt4ksr(desc, load_weights(path).model, 3)
    assert desc.tags == ["RepBaseBlock", "12nf", "2nb", "skip-nearest"]


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("kwargs", [
    dict(type="base", baseblock=DConvBaseBlock, feature_channels=12, num_blocks=1, global_skip="bicubic"),
    dict(scale=3, feature_channels=8, num_blocks=2, downscaling=1),
], ids=["base-dconv-bicubic", "x3-no-unshuffle"])
def test_safetensors_export(tmp_path, kwargs, fp16):
    path = export(reparameterize(model(**kwargs)), "safetensors", tmp_path / "m.safetensors", fp16=fp16)
    desc = spandrel.ModelLoader().load_from_file(path)
    assert_matches_rt4ksr(desc, load_weights(path).model, kwargs.get("scale", 2))


def test_plain_blocks_in_training_form_with_config(tmp_path):
    """Plain 3x3 blocks have the same keys in both forms but for the dead high-frequency branch: still loaded."""
    net = model(type="base", baseblock=BaseBlock, feature_channels=8, num_blocks=1)
    state = {"net." + k: v for k, v in net.state_dict().items()} | {CONFIG_KEY: config_tensor(net.config)}
    torch.save({"state_dict": state}, tmp_path / "m.ckpt")
    desc = spandrel.ModelLoader().load_from_file(tmp_path / "m.ckpt")
    assert_matches_rt4ksr(desc, reparameterize(net), 2)


# --- what the descriptor reports and allows ----------------------------------------------------------------------


def test_descriptor_metadata_dtypes_and_sizes(tmp_path):
    path = export(reparameterize(model(feature_channels=8, num_blocks=1)), "safetensors", tmp_path / "m.safetensors")
    desc = spandrel.ModelLoader().load_from_file(path)
    assert desc.supports_half and not desc.supports_bfloat16
    assert desc.size_requirements.none and desc.tiling == spandrel.ModelTiling.SUPPORTED
    for h, w in [(1, 1), (5, 3), (8, 8)]:  # any size: the model pads itself
        assert desc(torch.rand(1, 3, h, w)).shape == (1, 3, 2 * h, 2 * w)
    with pytest.raises(spandrel.UnsupportedDtypeError):
        desc.bfloat16()
    x = torch.rand(1, 3, 6, 7)
    half = desc.half()(x.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()


# --- detection and errors ----------------------------------------------------------------------------------------


def test_other_architectures_are_not_taken_for_rt4ksr_and_rt4ksr_for_none_of_them():
    from spandrel.architectures.SPAN import SPAN

    span = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2).state_dict()
    rcan_like = {"head.0.weight": torch.zeros(8, 3, 3, 3), "body.0.body.0.weight": torch.zeros(8, 8, 3, 3),
                 "tail.1.weight": torch.zeros(3, 8, 3, 3)}  # no upsampler
    wrong_width = {"head.0.weight": torch.zeros(8, 12, 3, 3), "upsample.0.weight": torch.zeros(48, 16, 3, 3),
                   "body.0.conv.weight": torch.zeros(8, 8, 3, 3), "tail.1.weight": torch.zeros(8, 8, 3, 3)}
    extra_module = dict(reparameterize(model(feature_channels=8, num_blocks=1)).state_dict())
    extra_module["conv_first.weight"] = torch.zeros(8, 3, 3, 3)
    for state in (span, rcan_like, wrong_width, extra_module, {"rt4ksr_config": torch.zeros(3, dtype=torch.uint8)}):
        assert not RT4KSRArch().detect(state)
    assert spandrel.ModelLoader().load_from_state_dict(span).architecture.id == "SPAN"

    net = model(feature_channels=8, num_blocks=1)
    ours = {"training form": dict(net.state_dict()), "fused": dict(reparameterize(net).state_dict()),
            "Lightning": {"net." + k: v for k, v in net.state_dict().items()} | {CONFIG_KEY: config_tensor(net.config)}}
    others = [a for a in spandrel.MAIN_REGISTRY.architectures("detection") if a.architecture.id != ARCH_ID]
    for name, state in ours.items():
        assert RT4KSRArch().detect(state), name
        assert not [a.architecture.id for a in others if a.detect(state)], name


def test_install_twice_is_harmless():
    assert install() == []  # the fixture installed it already
    ids = [a.architecture.id for a in spandrel.MAIN_REGISTRY]
    assert ids.count(ARCH_ID) == 1
    registry = spandrel.ArchRegistry()
    assert len(install(registry)) == 1 and install(registry) == [] and len(registry) == 1


def test_fused_weights_without_config_say_why_they_cannot_load():
    fused = dict(reparameterize(model(feature_channels=8, num_blocks=1)).state_dict())
    with pytest.raises(CheckpointMismatchError, match="no model config.*cannot be rebuilt"):
        spandrel.ModelLoader().load_from_state_dict(fused)


def test_training_form_of_another_design_without_config_says_so():
    state = dict(model(feature_channels=8, num_blocks=1, baseblock=NAFBlock).state_dict())
    with pytest.raises(CheckpointMismatchError, match="read as the released design"):
        spandrel.ModelLoader().load_from_state_dict(state)


def test_missing_spandrel_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)  # "not installed" for the import system
    monkeypatch.delitem(sys.modules, "rt4ksr.inference.spandrel_arch")
    with pytest.raises(MissingExtraError, match=r"pip install 'rt4ksr\[spandrel\]'"):
        importlib.import_module("rt4ksr.inference.spandrel_arch")
