"""The arena: every design composes, trains, fuses, exports, upscales and is told apart from the others by its
weights; the IMDN of the challenge repository evaluates to the released code's figure; the report groups seeds."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from helpers import CKPT_DIR, DATA_DIR, make_tiny_data, randomize_, run_module, tiny_train_overrides
from rt4ksr import eval as rt_eval
from rt4ksr import upscale as rt_upscale
from rt4ksr.core.config import CONFIG_DIR, compose
from rt4ksr.inference.exporters import export
from rt4ksr.inference.loading import load_file, load_state
from rt4ksr.models import DESIGNS, RTSRN, reparameterize
from rt4ksr.models.catalog import class_of, identify, model_option
from rt4ksr.models.checkpoint import CheckpointMismatchError, portable_state_dict
from rt4ksr.training.run import train

ARENA = sorted(p.stem for p in (Path(CONFIG_DIR) / "arena").glob("*.yaml"))
PRESETS = {cls: cls.preset for cls in DESIGNS if cls is not RTSRN}


def test_the_arena_lists_every_design():
    built = {type(instantiate(compose("train", [f"+arena={a}"]).model)) for a in ARENA}
    assert built == set(DESIGNS)
    sweep = compose("train", ["experiment=arena_x2"]).hydra.sweeper.params["+arena"].split(",")
    assert sorted(sweep) == ARENA


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("arena", ARENA)
def test_arena_entries_compose_at_both_scales(arena, scale):
    cfg = compose("train", [f"experiment=arena_x{scale}", f"+arena={arena}", "seed=2"])
    net = instantiate(cfg.model)
    assert net.scale == scale and cfg.seed == 2
    assert list(cfg.data.test_sets) == ["set5", "set14", "b100", "urban100"]
    assert cfg.trainer.max_time == "00:00:10:00" and cfg.optimizer.lr == 1e-3  # the shared recipe
    with torch.no_grad():
        assert net.eval()(torch.rand(1, 3, 7, 9)).shape == (1, 3, 7 * scale, 9 * scale)


def test_the_slurm_launcher_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the launcher ships with rt4ksr[sweep]")
    cfg = compose("train", ["experiment=arena_x2", "hydra/launcher=slurm"])
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1


@pytest.mark.parametrize("cls", DESIGNS, ids=lambda c: c.__name__)
def test_every_design_is_told_apart_by_its_weights(cls):
    for scale in (2, 3, 4):
        net = cls(scale=scale)
        for state in (net.state_dict(), reparameterize(net).state_dict()):
            assert [d for d in DESIGNS if d.matches(state)] == [cls]
    assert class_of(f"{cls.__module__}.{cls.__qualname__}") is cls


def test_a_file_cannot_name_code_to_run():
    with pytest.raises(CheckpointMismatchError, match="does not build"):
        class_of("os.system")


@pytest.mark.parametrize("cls", DESIGNS, ids=lambda c: c.__name__)
def test_every_design_has_its_published_size_and_a_source(cls):
    assert cls.design and cls.source and cls.preset
    published = {
        "RTSRN": dict(scale=2), "SPAN": dict(scale=4), "SRVGGNetCompact": dict(scale=4), "IMDN": dict(scale=4),
        "FSRCNN": dict(scale=2, num_channels=1), "ESPCN": dict(scale=3, num_channels=1),
        "BicubicPP": dict(scale=3),
    }
    if cls.__name__ not in published:
        pytest.skip(f"{cls.__name__}: no configuration reproduces the published count (see its docstring)")
    net = cls(**published[cls.__name__])
    count, where = net.published_params()
    assert where
    if cls is RTSRN:  # the report counts the fused network with its dead high-frequency branch (3x3 + gamma)
        assert sum(p.numel() for p in reparameterize(net).parameters()) + 24 * 24 * 9 + 24 + 1 == count
    elif hasattr(net, "weight_count"):  # FSRCNN's paper counts kernel weights only
        assert net.weight_count() == count
    else:
        assert sum(p.numel() for p in reparameterize(net).parameters()) == count


@pytest.mark.parametrize("cls", [c for c in DESIGNS if c is not RTSRN], ids=lambda c: c.__name__)
def test_another_designs_weights_are_refused_with_the_model_to_use(cls, tmp_path):
    state = randomize_(cls(scale=4)).state_dict()
    with pytest.raises(CheckpointMismatchError) as e:
        load_state(state, model_cfg=compose("eval", ["model=rt4ksr_x2"]).model, source="x.pth", model_named=True)
    msg = str(e.value)
    assert f"holds {cls.design} weights, not RTSRN ones" in msg and "\n" not in msg
    assert model_option(cls, 4) in msg or (cls.__name__ == "FSRCNN" and f"model={cls.preset}" in msg)
    # given without a model option, the keys decide: the published file loads as its own design
    loaded = load_state(state, source="x.pth")
    assert isinstance(loaded.model, cls)


def test_refusal_through_the_command_is_one_line(tmp_path):
    from rt4ksr.models.span import SPAN

    torch.save(SPAN(scale=2).state_dict(), tmp_path / "span.pth")
    proc = run_module("rt4ksr.eval", f"ckpt_path={tmp_path / 'span.pth'}", "model=rt4ksr_x2",
                      f"paths.data_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds SPAN weights, not RTSRN ones: use model=span" in lines[0], proc.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("arena")
    train_dir, testsets = make_tiny_data(root)
    return root, train_dir, testsets


@pytest.mark.parametrize("arena", ARENA)
def test_every_design_trains_fuses_exports_and_upscales(arena, tiny):
    root, train_dir, testsets = tiny
    overrides = [o for o in tiny_train_overrides(root, train_dir, testsets, run=arena)
                 if not o.startswith("model.")]
    metrics = train(compose("train", [*overrides, f"+arena={arena}", "trainer=debug", "trainer.max_epochs=1",
                                      "trainer.max_steps=2", "trainer.accelerator=cpu"]))
    assert metrics["test_sets"]["tiny"]["n"] >= 1
    deploy = root / arena / "deploy_final.pth"
    loaded = load_file(deploy)
    cls = type(loaded.model)
    assert loaded.model.is_deploy  # the run kept the fused form (fusion itself: each design's own tests)
    x = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        y = loaded.model(x)
    assert y.shape == (1, 3, 22, 26)
    # ONNX: the exported graph computes what the deploy model computes
    ort = pytest.importorskip("onnxruntime")
    onnx = export(loaded.model, "onnx", root / f"{arena}.onnx")
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(out, y.numpy(), atol=2e-4)
    # upscale an image with the trained weights, naming the design as a user would
    img = root / f"{arena}_in.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 256, (9, 12, 3), dtype=np.uint8))
    rt_upscale.run(compose("upscale", [f"input={img}", f"output={root / f'{arena}_out.png'}",
                                       f"ckpt_path={deploy}", f"model={cls.preset}" if cls is not RTSRN
                                       else "model=rt4ksr_x2", "progress=false"]))
    assert cv2.imread(str(root / f"{arena}_out.png")).shape == (18, 24, 3)


def test_upscale_command_with_a_design_and_its_weights(tmp_path):
    from rt4ksr.models.span import SPAN

    torch.save(portable_state_dict(reparameterize(randomize_(SPAN(scale=3)))), tmp_path / "span_x3.pth")
    cv2.imwrite(str(tmp_path / "in.png"), np.full((10, 14, 3), 120, np.uint8))
    proc = run_module("rt4ksr.upscale", f"input={tmp_path / 'in.png'}", f"output={tmp_path / 'out.png'}",
                      "model=span", "model.scale=3", f"ckpt_path={tmp_path / 'span_x3.pth'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(tmp_path / "out.png")).shape == (30, 42, 3)


def test_summary_prints_the_published_count():
    proc = run_module("rt4ksr.summary", "model=imdn", "model.scale=4", "json=true")
    assert proc.returncode == 0, proc.stderr
    assert "parameters, published:     893,936" in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1])["params_published"] == 893_936


def test_imdn_of_the_challenge_repository_evaluates_as_the_released_code():
    ckpt = CKPT_DIR / "peers" / "imdn_x4.pth"
    if not ckpt.is_file() or not (DATA_DIR / "testsets" / "set5" / "test" / "LR_bicubic_x4").is_dir():
        pytest.skip(f"needs {ckpt} and set5 x4 under {DATA_DIR} (RT4KSR_CHECKPOINTS_DIR, RT4KSR_DATA_DIR)")
    # no model option: the keys say IMDN, the shapes say x4; 32.2503 dB is the released code's figure
    # (scripts/peer_imdn.py runs eduardzamfir/NTIRE23-RTSR demo/models/imdn.py on the same images)
    cfg = compose("eval", [f"ckpt_path={ckpt}", f"paths.data_dir={DATA_DIR}", "data.test_sets=[set5]",
                           "progress=false"])
    result = rt_eval.run(cfg)["set5"]
    assert result["psnr_y"] == pytest.approx(32.2503, abs=0.01)
    assert result["ssim_y"] == pytest.approx(0.8959, abs=1e-4)


def test_identify_reads_published_layouts():
    from rt4ksr.models.span import SPAN

    state = {f"module.{k}": v for k, v in SPAN(scale=4).state_dict().items()}
    from rt4ksr.models.checkpoint import network_state

    assert identify(network_state(state)[0]) is SPAN
