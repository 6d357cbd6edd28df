"""The same-run peer table (scripts/peer_table.py, peers_floor.py, peers_official.py) and the measurement core it
times through (rt4ksr.core.stats): the floor, the interleaved rounds and their statistics, the table, the CLI on
the CPU, and that the official code's network is ours."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers import ROOT, official_ckpt
from rt4ksr.core import stats
from rt4ksr.models import RTSRN, load_official, reparameterize

sys.path.insert(0, str(ROOT / "scripts"))  # the peer table is a script, not part of the package
import peer_table  # noqa: E402
import peers_floor as floor  # noqa: E402
import peers_official  # noqa: E402

OFFICIAL_CODE = ROOT / ".device" / "peers" / "rt4ksr_official"


def test_floor_is_the_slower_of_compute_and_memory():
    card = floor.Card("test", fp16_flops=1e12, bytes_per_s=1e9)
    f = floor.floor_ms(2e9, 1e6, card)  # 2 ms of math, 1 ms of memory
    assert f == {"ms": 2.0, "compute_ms": 2.0, "memory_ms": 1.0, "bound": "compute", "card": "test"}
    assert floor.floor_ms(1e9, 4e6, card)["bound"] == "memory"
    assert floor.io_bytes(1, (2, 3), 2) == 3 * 6 * 2 + 3 * 24 * 2  # fp16 in + out
    # x2 on an H100 SXM: 40.3 GFLOP at 989 TFLOP/s (0.0408 ms) against 62 MB at 3.35 TB/s (0.0186 ms)
    row = floor.floor_estimate(38880 * 540 * 960, 1, (1080, 1920), 2, "NVIDIA H100 80GB HBM3")
    assert row["bound"] == "compute" and row["ms"] == pytest.approx(2 * 38880 * 540 * 960 / 989e12 * 1e3)
    assert row["memory_ms"] == pytest.approx(3 * 1080 * 1920 * 2 * 5 / 3.35e12 * 1e3)
    assert row["fps"] == pytest.approx(1000 / row["ms"])


@pytest.mark.parametrize(
    "name, card",
    [
        ("NVIDIA H200", "H200"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB"),
    ],
)
def test_known_cards(name, card):
    assert floor.card_for(name)[0].name == card


def test_unknown_card_is_a_skipped_floor_with_the_reason():
    assert floor.card_for("NVIDIA H100")[0] is None
    assert floor.floor_estimate(1, 1, (8, 8), 2, "cpu") == {
        "skipped": "no peak figures for 'cpu' (known: H200, H100 SXM/PCIe, A100)"
    }


@pytest.mark.parametrize(
    "scale, size, per_pixel, gflop", [(2, (1080, 1920), 38880, 40.3), (3, (720, 1280), 51840, 23.9)]
)
def test_released_network_macs(scale, size, per_pixel, gflop):
    # head 12->24, 4 blocks and the tail 24->24, upsample 24->3*(2*scale)^2, all 3x3 at half the LR size
    macs = floor.conv_macs(reparameterize(RTSRN(scale=scale)), size)
    assert macs == per_pixel * (size[0] // 2) * (size[1] // 2)
    assert 2 * macs / 1e9 == pytest.approx(gflop, rel=0.01)


def test_stats_median_and_iqr():
    s = stats.Stats.of([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (s.median, s.p25, s.p75, s.iqr, s.n, s.min, s.max) == (3.0, 2.0, 4.0, 2.0, 5, 1.0, 5.0)
    row = s.to_row(4)
    assert (row["ms"], row["p25_ms"], row["p75_ms"], row["iqr_ms"], row["rounds"]) == (3.0, 2.0, 4.0, 2.0, 5)
    assert row["fps"] == pytest.approx(4000 / 3) and row["values"] == [5.0, 1.0, 4.0, 2.0, 3.0]
    one = stats.Stats.of([2.0])
    assert (one.median, one.p25, one.p75, one.iqr) == (2.0, 2.0, 2.0, 0.0)
    assert stats.Stats.of([2.0], unit="s").per_second() == 0.5 and "p25_s" in stats.Stats.of([2.0], "s").to_row()
    with pytest.raises(ValueError, match="no values"):
        stats.Stats.of([])


def test_interleaved_rounds_rotate_and_drop_a_failing_candidate():
    log: list[str] = []

    def call(name: str, fail_at: int | None = None):
        def fn():
            log.append(name)
            if fail_at is not None and log.count(name) >= fail_at:
                raise RuntimeError("out of memory\nmore")

        return fn

    runs = {"a": call("a"), "b": call("b"), "c": call("c")}
    two = functools.partial(stats.wall_ms, iters=2)
    times, failed = stats.interleaved(runs, rounds=3, warmup=1, measure=two)
    assert log == ["a", "b", "c"] + [n for n in "abcbcacab" for _ in range(2)]
    assert failed == {} and all(t.n == 3 and len(t.values) == 3 for t in times.values())
    assert stats.round_order("abc", 4, rotate=False) == ["a", "b", "c"]

    log.clear()
    runs = {"a": call("a"), "b": call("b", fail_at=3)}
    seen = []
    times, failed = stats.interleaved(runs, rounds=3, warmup=1, on_round=lambda r, v: seen.append((r, sorted(v))))
    assert failed == {"b": "failed in round 2: RuntimeError: out of memory"}
    assert list(times) == ["a"] and times["a"].n == 3
    assert seen == [(0, ["a", "b"]), (1, ["a"]), (2, ["a"])]  # partial values after each round, failures dropped
    with pytest.raises(RuntimeError, match="out of memory"):  # a single candidate's failure is raised as it is
        stats.timed(call("c", fail_at=1), rounds=2)
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        stats.interleaved(runs, rounds=0)


def test_table_shows_timed_skipped_and_floor_rows():
    group = {
        "scale": 2,
        "batch": 4,
        "gflop_per_frame": 40.31,
        "floor": {"ms": 0.5, "fps": 8000.0, "bound": "compute", "card": "H200"},
        "candidates": {
            "eager_fp16": {**stats.Stats.of([2.0, 1.0, 3.0]).to_row(4), "x_floor": 4.0, "max_abs_diff": 0.004},
            "compile_official": {"skipped": "FileNotFoundError: official code folder not found"},
        },
    }
    text = peer_table.format_table([group], {"device": "NVIDIA H200", "torch": "2.x", "triton": "3.x", "date": "d"})
    lines = text.splitlines()
    assert lines[0].startswith("device: NVIDIA H200")
    eager = next(x for x in lines if "eager_fp16" in x).split()
    assert eager[:7] == ["2", "4", "eager_fp16", "2.000", "1.500-2.500", "2000.0", "4.00"]
    assert "skipped: FileNotFoundError: official code folder not found" in text
    assert "compute-bound on H200 (40.3 GFLOP/frame)" in next(x for x in lines if x.split()[2:3] == ["floor"])
    skipped_floor = peer_table.format_table([{**group, "floor": {"skipped": "no peak figures for 'cpu'"}}])
    assert "floor" in skipped_floor and "skipped: no peak figures for 'cpu'" in skipped_floor


def test_v2_options_parse_and_validate():
    """--v2 takes the commands' kernel_options overrides (Hydra/YAML values), checked by the package's own check."""
    args = peer_table.parse_args(["--v2", "tile=[8,16]", "stages=2", "keep_weights=false", "programs_per_sm=4",
                                  "num_warps=null", "region=[32,32]"])
    assert args.v2 == {"tile": [8, 16], "stages": 2, "keep_weights": False, "programs_per_sm": 4, "num_warps": None,
                       "region": [32, 32]}
    assert peer_table.v2_options({"tile": [4, 32]}) == {"tile": (4, 32), "persistent": True}
    with pytest.raises(ValueError, match="unknown kernel option 'tiles'"):
        peer_table.v2_options({"tiles": (8, 16)})
    per_scale = {"2": {"tile": [8, 16]}, "3": {"options": {"tile": [4, 16]}}}
    assert peer_table.options_for_scale(per_scale, 3) == {"tile": [4, 16]}
    assert peer_table.options_for_scale({"stages": 2}, 2) == {"stages": 2}


def test_v2_option_errors_are_one_line_on_the_command_line(capsys):
    for bad, words in [(["tile"], "expected KEY=VALUE"), (["tile=8x16"], "tile must be two powers of two"),
                       (["tiles=[8,16]"], "unknown kernel option 'tiles'")]:
        with pytest.raises(SystemExit):
            peer_table.parse_args(["--v2", *bad])
        assert words in capsys.readouterr().err


def test_candidates_off_cuda_run_eager_and_skip_the_rest_with_reasons():
    ours = reparameterize(RTSRN(scale=2, feature_channels=8, num_blocks=1))
    x = torch.rand(1, 3, 8, 12)
    c = peer_table.build_candidates([*peer_table.CANDIDATES, "bogus"], ours, "official code folder not found: X", x)
    assert c["eager_fp16"].skipped is None and c["eager_fp16"].run().shape == (1, 3, 16, 24)
    assert c["eager_official"].skipped == "official code folder not found: X"
    assert c["compile_ours"].skipped == "RuntimeError: torch.compile rows are timed on CUDA only"
    assert c["kernels_v1"].skipped == "RuntimeError: Triton kernel rows are timed on CUDA only"
    assert "unknown candidate 'bogus'" in c["bogus"].skipped


def test_cli_on_cpu_writes_json_and_skips_the_absent_official_code(tmp_path):
    out = tmp_path / "peers.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "peer_table.py"),
            "--device",
            "cpu",
            "--size",
            "8",
            "12",
            "--scales",
            "2",
            "--batches",
            "1",
            "2",
            "--rounds",
            "3",
            "--iters",
            "1",
            "--warmup",
            "1",
            "--official-code",
            str(tmp_path / "absent"),
            "--weights-dir",
            str(tmp_path / "no-weights"),
            "--v2",
            "tile=[8,16]",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert set(data["env"]) >= {"device", "torch", "triton", "date", "official_commit", "official_commit_pinned"}
    assert data["env"]["device"] == "cpu" and data["env"]["official_commit_pinned"] == peers_official.OFFICIAL_COMMIT
    assert [(g["scale"], g["batch"]) for g in data["groups"]] == [(2, 1), (2, 2)]
    rows = data["groups"][1]["candidates"]
    assert len(rows["eager_fp16"]["values"]) == rows["eager_fp16"]["rounds"] == 3 and rows["eager_fp16"]["fps"] > 0
    assert rows["eager_fp16"]["p25_ms"] <= rows["eager_fp16"]["ms"] <= rows["eager_fp16"]["p75_ms"]
    assert rows["eager_fp16"]["max_abs_diff"] < 0.05  # fp16 against fp32
    for name in ("eager_official", "compile_official"):
        assert rows[name]["skipped"].startswith("FileNotFoundError: official code folder not found")
    assert rows["kernels_v2"]["note"] == "tile=8x16"
    assert data["scales"]["2"]["ours"].startswith("random weights")
    assert "skipped: FileNotFoundError: official code folder not found" in proc.stdout


def _fake_official(folder):
    """The official layout with a one-conv network: the import mechanics without the real code."""
    files = {
        "model/__init__.py": "from model.arch import *",
        "model/arch.py": """
            import torch.nn as nn
            import torchvision
            from model.modules import *
            class Net(nn.Module):
                def __init__(self, config):
                    super().__init__()
                    self.blur = torchvision.transforms.GaussianBlur(kernel_size=5, sigma=1)
                    self.conv = nn.Conv2d(3, 3 * (2 * config.scale) ** 2, 3, padding=1)
                    self.up = nn.PixelShuffle(2 * config.scale)
                def forward(self, x):
                    return self.up(self.conv(x - scaled(self.blur(x))))
            def rt4ksr_rep(config):
                return Net(config)""",
        "model/modules.py": "from model.utils import rep_utils as utils\ndef scaled(x):\n    return utils.f * x",
        "model/utils/rep_utils.py": "f = 0.5",
        "test.py": """
            import data  # the released test.py imports its data pipeline: never imported here
            def reparameterize(config, net, device, save_rep_checkpoint=False):
                config.is_train = False
                rep = torch.nn.DataParallel(model.__dict__[config.arch](config)).to(device)
                rep.load_state_dict(net.state_dict())
                torch.ones(1).cuda()
                return rep""",
    }
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(textwrap.dedent(text))


def test_official_import_keeps_the_name_model_free(tmp_path, monkeypatch):
    _fake_official(tmp_path / "code")
    sentinel = type(sys)("model")
    monkeypatch.setitem(sys.modules, "model", sentinel)
    net = torch.nn.DataParallel(
        peers_official.import_official(tmp_path / "code").package.rt4ksr_rep(peers_official.argparse_namespace(scale=2))
    )
    torch.save({"state_dict": net.state_dict()}, tmp_path / "w.pth")
    model, code = peers_official.build_official(tmp_path / "code", tmp_path / "w.pth", 2)
    assert sys.modules["model"] is sentinel and code.commit is None
    assert type(model).__module__.endswith(".model.arch") and type(model).__module__ in sys.modules
    assert any("pinned" in n for n in code.notes)
    x = torch.rand(1, 3, 8, 10)
    assert torch.equal(model(x), net.module(x))
    with pytest.raises(FileNotFoundError, match="official code folder not found"):
        peers_official.import_official(tmp_path / "absent")


@pytest.mark.parametrize("scale", [2, 3])
def test_official_network_is_ours(scale):
    if not (OFFICIAL_CODE / "model" / "arch.py").is_file():
        pytest.skip(
            f"official code not prepared at {OFFICIAL_CODE} (python scripts/peer_table.py --prepare-official GIT_DIR)"
        )
    ckpt = official_ckpt(scale)
    official, code = peers_official.build_official(OFFICIAL_CODE, ckpt, scale)
    ours = reparameterize(load_official(ckpt))
    x = torch.rand(2, 3, 30, 44, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (official(x) - ours(x)).abs().max().item()
    assert diff < 1e-4, f"official x{scale} deploy differs from ours by {diff}"
    assert code.commit == peers_official.OFFICIAL_COMMIT


def test_prepare_official_extracts_the_pinned_files(tmp_path):
    src = tmp_path / "repo"
    for rel in [*(f"code/{f}" for f in peers_official.OFFICIAL_FILES), "LICENSE", "code/data/__init__.py"]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(f"# {rel}\n")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "x")
    commit = git("rev-parse", "HEAD")
    (src / "code/model/arch.py").write_text("# changed after the pinned commit\n")
    files = peers_official.prepare_official(src / ".git", tmp_path / "out", commit)
    assert sorted(f.relative_to(tmp_path / "out").as_posix() for f in files) == sorted(
        [*peers_official.OFFICIAL_FILES, "LICENSE", "COMMIT"]
    )
    assert (tmp_path / "out/model/arch.py").read_text() == "# code/model/arch.py\n"
    assert peers_official.official_commit(tmp_path / "out") == commit and not (tmp_path / "out/data").exists()


@pytest.mark.slow
def test_compile_rows_on_cpu():
    ours = reparameterize(RTSRN(scale=2, feature_channels=8, num_blocks=1))
    x = torch.rand(1, 3, 8, 12)
    c = peer_table.build_candidates(["compile_ours"], ours, "absent", x, compile_mode="default", compile_on_cpu=True)
    assert c["compile_ours"].skipped is None and c["compile_ours"].note == "0 graph break(s)"
    with torch.inference_mode():
        assert peer_table.max_abs_diff(c["compile_ours"].run(), peer_table.fp32_output(ours, x)) < 0.05
