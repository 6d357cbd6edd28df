"""IMDN (AIM 2019 form, NTIRE23-RTSR release), FSRCNN and ESPCN: shapes, published sizes, released weights and
names, and IMDN against the released code itself."""

from __future__ import annotations

import contextlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from helpers import CKPT_DIR, randomize_
from rt4ksr.core.config import compose
from rt4ksr.models import RTSRN
from rt4ksr.models.espcn import ESPCN
from rt4ksr.models.fsrcnn import FSRCNN
from rt4ksr.models.imdn import IMDN

NTIRE23_GIT = Path("/work/.mirror/eduardzamfir+NTIRE23-RTSR/repo")
RELEASED_FILES = ("demo/models/imdn.py", "demo/models/modules/_imdn.py")
IMDN_PTH = CKPT_DIR / "peers" / "imdn_x4.pth"
DESIGNS = (IMDN, FSRCNN, ESPCN)
SMALL = {IMDN: dict(channels=8, num_blocks=2), FSRCNN: dict(d=8, s=4, m=2), ESPCN: dict(features1=8, features2=4)}


def small(cls, scale: int, **kw):
    return cls(scale=scale, **SMALL[cls], **kw)


def _stripped(path: Path) -> dict[str, torch.Tensor]:
    """The released file as the loader hands it over: ``model.`` stripped."""
    from rt4ksr.models.checkpoint import read_state_dict

    return read_state_dict(path)


@contextlib.contextmanager
def released_imdn_module(tmp_path: Path):
    """The released IMDN class, imported from the mirror's two files written into ``tmp_path`` (its import line is
    ``models.modules._imdn``: any ``models`` package already imported is set aside for the import)."""
    if not (NTIRE23_GIT / "HEAD").is_file():
        pytest.skip(f"NTIRE23-RTSR mirror absent at {NTIRE23_GIT}: cannot compare with the released code")
    for rel in RELEASED_FILES:
        data = subprocess.run(["git", "--git-dir", str(NTIRE23_GIT), "show", f"HEAD:{rel}"], check=True,
                              capture_output=True).stdout
        dest = tmp_path / rel.removeprefix("demo/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        (dest.parent / "__init__.py").touch()
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "models" or k.startswith("models.")}
    sys.path.insert(0, str(tmp_path))
    try:
        import models.imdn as released  # the released module, from tmp_path

        yield released
    finally:
        sys.path.remove(str(tmp_path))
        for k in [k for k in sys.modules if k == "models" or k.startswith("models.")]:
            del sys.modules[k]
        sys.modules.update(saved)


# --- shapes, errors, gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("cls", DESIGNS)
def test_output_is_exactly_scale_times_the_input(cls, scale):
    model = randomize_(small(cls, scale)).eval()
    with torch.no_grad():
        for h, w in ((7, 5), (1, 1), (2, 9)):
            assert model(torch.rand(2, 3, h, w)).shape == (2, 3, scale * h, scale * w)
    one = small(cls, scale, num_channels=1)
    assert one(torch.rand(1, 1, 3, 4)).shape == (1, 1, 3 * scale, 4 * scale)


@pytest.mark.parametrize("cls", DESIGNS)
def test_wrong_input_raises(cls):
    model = small(cls, 2)
    for bad in (torch.rand(3, 8, 8), torch.rand(1, 1, 8, 8)):
        with pytest.raises(ValueError, match="expected an"):
            model(bad)


@pytest.mark.parametrize("cls", DESIGNS)
def test_gradient_reaches_every_parameter(cls):
    model = randomize_(small(cls, 3))
    model(torch.rand(1, 3, 6, 5)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("cls", DESIGNS)
def test_deploy_form_is_the_training_form(cls):
    """Nothing re-parameterizes: the deploy copy and ``is_train=False`` compute the same thing and load strictly."""
    model = randomize_(small(cls, 2)).double().eval()
    deploy = model.to_deploy()
    built = small(cls, 2, is_train=False).double()
    built.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, 3, 7, 5, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(deploy(x), ref) and torch.equal(built(x), ref)
    assert deploy.is_deploy and built.is_deploy and not model.is_deploy
    assert deploy.state_dict().keys() == model.state_dict().keys()


# --- published sizes ------------------------------------------------------------------------------------------


def test_imdn_published_size():
    model = IMDN(scale=4)
    assert sum(p.numel() for p in model.parameters()) == 893_936
    assert model.published_params()[0] == 893_936
    assert IMDN(scale=2).published_params() is None and IMDN(scale=4, num_blocks=6).published_params() is None


def test_fsrcnn_published_weight_count():
    """The paper counts kernel weights of the Y-channel FSRCNN(56, 12, 4): 12,464, the same at every scale."""
    for s in (2, 3, 4):
        model = FSRCNN(scale=s, num_channels=1)
        assert model.weight_count() == 12_464 == model.published_params()[0]
        # + biases (56 + 12 + 4 * 12 + 56 + 1) + PReLU slopes (56 + 12 + 4 * 12 + 56)
        assert sum(p.numel() for p in model.parameters()) == 12_464 + 173 + 172
    assert FSRCNN(scale=2).published_params() is None  # RGB: not the paper's model
    assert FSRCNN(scale=2, num_channels=1, m=3).published_params() is None


def test_espcn_count_follows_the_layer_spec():
    # Y channel, x3 (the paper's main setting): 5*5*1*64+64 + 3*3*64*32+32 + 3*3*32*9+9
    model = ESPCN(scale=3, num_channels=1)
    assert sum(p.numel() for p in model.parameters()) == 1664 + 18464 + 2601 == model.published_params()[0]
    for s, c in ((2, 3), (4, 3), (4, 1)):
        m = ESPCN(scale=s, num_channels=c)
        assert m.published_params()[0] == sum(p.numel() for p in m.parameters())
    assert ESPCN(scale=2, features1=32).published_params() is None


# --- receptive field ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_receptive_radius_is_exact(scale):
    """The LR pixels that reach HR pixel o lie within ``receptive_radius`` of o // scale, and the bound is met."""
    model = randomize_(FSRCNN(scale=scale, d=4, s=3, m=4, num_channels=1)).double()
    n = 31
    x = torch.rand(1, 1, 1, n, dtype=torch.float64, requires_grad=True)
    out = model(x)
    reach = 0
    for o in range(12 * scale, 19 * scale):  # away from the borders
        (g,) = torch.autograd.grad(out[0, 0, 0, o], x, retain_graph=True)
        idx = g[0, 0, 0].nonzero().flatten()
        reach = max(reach, int((idx - o // scale).abs().max()))
    assert reach == model.receptive_radius() == 2 + 4 + {2: 2, 3: 2, 4: 1}[scale]


# --- names, matching, released weights ------------------------------------------------------------------------


def test_fsrcnn_and_espcn_use_the_ports_names():
    """yjn870/FSRCNN-pytorch and yjn870/ESPCN-pytorch key names and shapes (Y channel, x3)."""
    fsrcnn = {k: tuple(v.shape) for k, v in FSRCNN(scale=3, num_channels=1).state_dict().items()}
    expected = {"first_part.0.weight": (56, 1, 5, 5), "first_part.0.bias": (56,), "first_part.1.weight": (56,),
                "mid_part.0.weight": (12, 56, 1, 1), "mid_part.1.weight": (12,),
                "mid_part.10.weight": (56, 12, 1, 1), "mid_part.11.weight": (56,),
                "last_part.weight": (56, 1, 9, 9), "last_part.bias": (1,)}
    for i in range(2, 10, 2):
        expected |= {f"mid_part.{i}.weight": (12, 12, 3, 3), f"mid_part.{i + 1}.weight": (12,)}
    expected |= {f"mid_part.{i}.bias": expected[f"mid_part.{i}.weight"][:1] for i in range(0, 12, 2)}
    assert fsrcnn == expected
    espcn = {k: tuple(v.shape) for k, v in ESPCN(scale=3, num_channels=1).state_dict().items()}
    assert espcn == {"first_part.0.weight": (64, 1, 5, 5), "first_part.0.bias": (64,),
                     "first_part.2.weight": (32, 64, 3, 3), "first_part.2.bias": (32,),
                     "last_part.0.weight": (9, 32, 3, 3), "last_part.0.bias": (9,)}


@pytest.mark.parametrize("cls", DESIGNS)
def test_matches_only_its_own_state(cls):
    own = cls(scale=3).state_dict()
    assert cls.matches(own)
    assert not cls.matches(RTSRN().state_dict())
    for other in DESIGNS:
        if other is not cls:
            assert not cls.matches(other(scale=3).state_dict()), other.design
            assert not other.matches(own), other.design


@pytest.mark.parametrize("cls", DESIGNS)
def test_config_of_state_rebuilds_the_model(cls):
    for s in (2, 3, 4):
        model = cls(scale=s, num_channels=1, **SMALL[cls])
        cfg = cls.config_of_state(model.state_dict())
        if cls is FSRCNN:  # the deconvolution's stride is in no shape: the caller supplies the scale
            assert "scale" not in cfg
            cfg["scale"] = s
        rebuilt = cls(**cfg)
        rebuilt.load_state_dict(model.state_dict(), strict=True)
        assert {k: v for k, v in rebuilt.config.items() if k in cfg} == cfg


@pytest.mark.parametrize("cls", DESIGNS)
def test_own_names_pass_adapt_state_unchanged(cls):
    state = cls(scale=2).state_dict()
    assert cls.adapt_state(state).keys() == state.keys()


def test_imdn_released_file_loads_strictly():
    if not IMDN_PTH.is_file():
        pytest.skip(f"released IMDN weights absent at {IMDN_PTH} (set RT4KSR_CHECKPOINTS_DIR)")
    state = _stripped(IMDN_PTH)
    assert next(iter(state)) == "0.weight"  # the loader stripped ``model.``
    assert IMDN.matches(state) and not FSRCNN.matches(state) and not ESPCN.matches(state)
    cfg = IMDN.config_of_state(state)
    assert cfg == {"scale": 4, "channels": 64, "num_blocks": 8, "num_channels": 3}
    model = IMDN(**cfg)
    model.load_state_dict(IMDN.adapt_state(state), strict=True)
    assert model.published_params()[0] == sum(v.numel() for v in state.values())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_imdn_equals_the_released_code(tmp_path, scale):
    """Same weights (the released file at x4, random at x2/x3), same input: the released module's output."""
    with released_imdn_module(tmp_path) as released:
        ref = released.IMDN(upscale=scale).eval()
    if scale == 4 and IMDN_PTH.is_file():
        ref.load_state_dict(torch.load(IMDN_PTH, map_location="cpu", weights_only=True), strict=True)
    else:
        randomize_(ref, seed=scale)
    state = {k.removeprefix("model."): v for k, v in ref.state_dict().items()}
    ours = IMDN(**IMDN.config_of_state(state)).eval()
    ours.load_state_dict(IMDN.adapt_state(state), strict=True)
    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(x) - ref(x)).abs().max().item()
    assert diff <= 1e-5


# --- configs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", DESIGNS)
def test_preset_lists_every_argument_and_instantiates(cls):
    cfg = compose("summary", [f"model={cls.preset}", "model.scale=3"]).model
    params = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert set(cfg) - {"_target_"} == params
    model = instantiate(cfg)
    assert type(model) is cls and model.scale == 3
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in cls(scale=3).state_dict().items()}
