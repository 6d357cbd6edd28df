"""The training system: a CPU run end to end, its artifacts, exact resume, bad input, sweeps and DDP."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from helpers import make_tiny_data, run_module, tiny_train_overrides
from rt4ksr import eval as rt_eval
from rt4ksr.core.config import CONFIG_DIR, compose
from rt4ksr.models import read_state_dict
from rt4ksr.training.losses import L1AuxLoss
from rt4ksr.training.module import NonFiniteLossError
from rt4ksr.training.run import best_checkpoint, train
from rt4ksr.training.schedules import CosineBudget, parse_duration, warmup_cosine

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny(tmp_path):
    train_dir, testsets = make_tiny_data(tmp_path)
    return tmp_path, train_dir, testsets


def cfg_for(tiny, *extra, run="run"):
    root, train_dir, testsets = tiny
    return compose("train", tiny_train_overrides(root, train_dir, testsets, run) + list(extra))


def test_fast_dev_run_on_cpu(tiny):
    metrics = train(cfg_for(tiny, "trainer.fast_dev_run=true"))
    assert metrics["global_step"] == 1
    assert metrics["test_sets"]["tiny"]["n"] == 1  # fast_dev_run tests one batch (image) per set


def test_run_leaves_checkpoints_deploy_weights_config_and_metrics(tiny):
    root = tiny[0]
    metrics = train(cfg_for(tiny))
    run = root / "run"
    assert Path(metrics["final_checkpoint"]) == run / "checkpoints" / "last.ckpt"
    assert (run / "deploy_final.pth").is_file() and (run / "deploy_best.pth").is_file()
    assert metrics["best"]["checkpoint"] and Path(metrics["best"]["checkpoint"]).is_file()
    assert OmegaConf.load(run / "config.yaml").model.feature_channels == 8  # resolved config
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test_sets"]["tiny"]["n"] == 3 and saved["timing"]["fps"] > 0
    assert saved["params_deploy"] < saved["params_train"]
    # the logged per-set and mean validation metrics
    csv = (run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in ("val/tiny/psnr", "val/tiny/ssim", "val/psnr", "val/ssim", "val/fps", "val/ms", "train/loss_step", "lr"):
        assert key in csv
    # the deploy-form weights load in rt4ksr.eval and give the final figures
    ev = compose("eval", ["model.feature_channels=8", "model.num_blocks=1", f"ckpt_path={run / 'deploy_final.pth'}",
                          f"data.testsets_dir={tiny[2]}", "data.test_sets=[tiny]", "progress=false"])
    res = rt_eval.run(ev)
    assert res["tiny"]["psnr_y"] == pytest.approx(saved["test_sets"]["tiny"]["psnr_y"], abs=1e-9)
    deploy = torch.load(run / "deploy_best.pth", weights_only=True)
    assert deploy["config"]["is_train"] is False and deploy["config"]["feature_channels"] == 8


def test_resume_is_exact(tiny):
    train(cfg_for(tiny, run="straight"))
    train(cfg_for(tiny, "trainer.max_epochs=1", run="first"))
    root = tiny[0]
    train(cfg_for(tiny, f"ckpt_path={root / 'first' / 'checkpoints' / 'last.ckpt'}", run="resumed"))
    a = torch.load(root / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(root / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] and a["epoch"] == b["epoch"]
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    assert a["optimizer_states"][0]["state"][0]["exp_avg"].equal(b["optimizer_states"][0]["state"][0]["exp_avg"])


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny):
    root = tiny[0]
    train(cfg_for(tiny, "trainer.max_epochs=1", run="nan"))
    last = root / "nan" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    cfg = cfg_for(tiny, f"ckpt_path={last}", "trainer.max_epochs=3", run="nan")
    cfg.loss = OmegaConf.create({"_target_": "helpers.NaNAfterLoss", "steps": 1})
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        train(cfg)
    assert last.read_bytes() == before


def test_ctrl_c_writes_a_resumable_checkpoint(tiny):
    root = tiny[0]
    cfg = cfg_for(tiny, "trainer.max_epochs=5", run="intr")
    with open_dict(cfg):
        cfg.callbacks.stop = OmegaConf.create({"_target_": "helpers.InterruptAt", "step": 3})
    with pytest.raises(SystemExit):
        train(cfg)
    ckpt = torch.load(root / "intr" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    metrics = train(cfg_for(tiny, f"ckpt_path={root / 'intr' / 'checkpoints' / 'last.ckpt'}", run="intr2"))
    assert metrics["global_step"] == 4  # 2 epochs of 2 steps, resumed
    # the training time of the interrupted part is counted, and the run says what it resumed
    assert ckpt["train_seconds"] > 0 and metrics["train_seconds"] >= round(ckpt["train_seconds"], 1)
    assert metrics["resumed_from"] == str(root / "intr" / "checkpoints" / "last.ckpt")


def test_ema_is_validated_and_exported(tiny):
    metrics = train(cfg_for(tiny, "ema_decay=0.5"))
    state = torch.load(metrics["final_checkpoint"], weights_only=True)["state_dict"]
    assert any(k.startswith("ema.module.") for k in state)
    ema = read_state_dict(metrics["final_checkpoint"])
    assert torch.equal(ema["head.0.weight"], state["ema.module.head.0.weight"])


def test_aux_loss_adds_the_high_frequency_term():
    torch.manual_seed(0)
    sr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    plain = torch.nn.functional.l1_loss(sr, hr)
    aux = L1AuxLoss(weight=0.0)(sr, hr)
    assert aux == pytest.approx(plain.item())
    flat = torch.full((1, 3, 16, 16), 0.5)
    assert L1AuxLoss(weight=2.0)(flat, flat + 0.1).item() == pytest.approx(0.1, abs=1e-6)  # no high frequency


def test_warmup_cosine_factor():
    assert parse_duration("00:00:10:00") == 600.0 and parse_duration(5) == 5.0
    assert warmup_cosine(0, 0.0, warmup_steps=4, min_factor=0.0) == pytest.approx(0.25)  # the first step ramps
    assert warmup_cosine(3, 0.0, warmup_steps=4, min_factor=0.0) == pytest.approx(1.0)
    assert warmup_cosine(100, 0.5, warmup_steps=4, min_factor=0.0) == pytest.approx(0.5)
    assert warmup_cosine(100, 2.0, warmup_steps=4, min_factor=0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, 0.0, warmup_steps=0, min_factor=0.0) == 1.0


def test_cosine_budget_follows_steps_when_there_is_a_step_budget():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = CosineBudget(opt, max_steps=10, max_time="00:00:00:01", warmup_steps=0, min_factor=0.0)
    assert sched.follows_steps
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 1.0 and lrs[5] == pytest.approx(0.5) and opt.param_groups[0]["lr"] == pytest.approx(0.0)
    timed = CosineBudget(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), max_steps=-1,
                         max_time=100.0, warmup_steps=0)
    assert not timed.follows_steps and timed.fraction() < 0.01
    with pytest.raises(ValueError, match="needs a budget"):
        CosineBudget(opt, max_steps=-1, max_time=None)


def test_every_train_config_group_option_composes_and_instantiates(tmp_path):
    from hydra.utils import instantiate

    cfg = compose("train", ["experiment=quickstart"])
    assert cfg.data.train_sets.sample.enabled and cfg.trainer.accelerator == "cpu"
    params = [torch.nn.Parameter(torch.zeros(1))]
    for group in ("trainer", "loss", "optimizer", "scheduler", "callbacks", "logger", "experiment"):
        for f in sorted((Path(CONFIG_DIR) / group).glob("*.yaml")):
            extra = ["trainer.max_time=00:00:01:00"] if f.stem == "cosine" else []
            extra += ["scheduler.total_steps=10"] if f.stem == "onecycle" else []
            extra += ["trainer.accelerator=cpu", "trainer.devices=1"] if f.stem in ("gpu", "ddp") else []
            cfg = compose("train", [f"{group}={f.stem}", f"hydra.run.dir={tmp_path}", *extra])
            node = cfg.get(group)
            if group == "experiment" or not node:
                continue
            if group == "optimizer":
                instantiate(node)(params=params)
            elif group == "scheduler":
                node = OmegaConf.to_container(node, resolve=True)
                assert node.pop("interval") in ("step", "epoch")  # a scheduler carries its own interval
                instantiate(node)(optimizer=torch.optim.SGD(params, lr=0.1))
            elif group in ("callbacks", "logger"):
                for sub in node.values():
                    instantiate(sub)
            elif group == "trainer" and f.stem == "ddp":
                continue  # a DDP trainer is built by the DDP test, in its own processes
            else:
                instantiate(node)


def test_unknown_config_value_lists_the_options():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="rt4ksr_x2"):
        compose("train", ["model=rt4ksr_x5"])


def run_cli(*args, cwd=ROOT, timeout=600):
    return run_module("rt4ksr.train", *args, cwd=cwd, timeout=timeout)


def test_multirun_sweep_over_blocks_and_report(tiny):
    root, train_dir, testsets = tiny
    overrides = [o for o in tiny_train_overrides(root, train_dir, testsets) if not o.startswith("hydra.run")]
    proc = run_cli("-m", "model/baseblock=base,simplified", "trainer.max_epochs=1",
                   f"hydra.sweep.dir={root / 'sweep'}", *overrides, "logger=wandb",
                   "callbacks.sample_images.count=1",
                   "+hydra.callbacks.report._target_=rt4ksr.measure.multirun.SweepReportCallback",
                   "+hydra.callbacks.report.rounds=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted((root / "sweep").glob("*/metrics.json"))
    assert len(runs) == 2
    assert len(list((root / "sweep").glob("*/wandb/offline-run-*"))) == 2  # one wandb run each, offline
    # the multirun ended with the report: labels are the differing values only, speed re-timed and ranked
    table = (root / "sweep" / "report.md").read_text()
    assert "| 0 | base |" in table and "| 1 | simplified |" in table and "interleaved" in table
    assert (root / "sweep" / "report.png").stat().st_size > 10000
    assert len(list((root / "sweep" / "wandb").glob("offline-run-*"))) == 1  # the report, in the sweep's group
    rep = subprocess.run([sys.executable, "-m", "rt4ksr", "sweep-report", f"multirun_dir={root / 'sweep'}",
                          f"out={root / 'again'}", "rounds=2"], capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    assert (root / "again" / "report.png").is_file() and (root / "again" / "report.json").is_file()


def test_ddp_with_two_cpu_processes(tiny):
    root, train_dir, testsets = tiny
    overrides = tiny_train_overrides(root, train_dir, testsets, "ddp")
    proc = run_cli("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((root / "ddp" / "metrics.json").read_text())
    rows = (root / "ddp" / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    head = rows[0].split(",")
    logged = [r.split(",")[head.index("val/tiny/psnr")] for r in rows[1:]]
    logged = [float(v) for v in logged if v]
    # validation sharded over 2 ranks (images 0, 2 | 1) and reduced: equals the single-process evaluation
    assert logged and logged[-1] == pytest.approx(metrics["test_sets"]["tiny"]["psnr_y"], abs=1e-4)


def test_optuna_search_runs_trials(tiny):
    root, train_dir, testsets = tiny
    overrides = [o for o in tiny_train_overrides(root, train_dir, testsets) if not o.startswith("hydra.run")]
    proc = run_cli("hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
                   "trainer.max_epochs=1", "callbacks.deploy_timing.time_inference=false",
                   f"hydra.sweep.dir={root / 'optuna'}", *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = (root / "optuna" / "optimization_results.yaml").read_text()
    assert "best_value" in best and len(list((root / "optuna").glob("*/metrics.json"))) == 2


def test_quickstart_main_job(tmp_path):
    """The README's main-job command, shortened to one epoch."""
    proc = run_cli("experiment=quickstart", "trainer.max_epochs=1", "data.repeats=2", f"hydra.run.dir={tmp_path}",
                   f"paths.cache_dir={tmp_path / 'cache'}", "trainer.enable_progress_bar=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_sets"]["sample_val"]["n"] == 2 and (tmp_path / "deploy_best.pth").is_file()


def test_run_ending_between_validations_validates_and_saves_its_final_state(tiny):
    """Validation every 2 epochs, 3 epochs: the end is validated anyway, and last.ckpt is the final state."""
    root = tiny[0]
    metrics = train(cfg_for(tiny, "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2", run="odd"))
    final = torch.load(root / "odd" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == metrics["global_step"] == 6
    steps = [v["step"] for v in metrics["health"]["validations"]]
    assert steps == [4, 6]  # epoch 2's validation, then the final state's
    csv = (root / "odd" / "csv" / "version_0" / "metrics.csv").read_text()
    assert csv.count("\n") > 1 and "val/psnr" in csv.splitlines()[0]


def test_time_budget_ends_validated_and_saved(tiny):
    root = tiny[0]
    metrics = train(cfg_for(tiny, "trainer.max_epochs=100000", "trainer.max_time=00:00:00:03",
                            "trainer.check_val_every_n_epoch=100000", "scheduler=cosine",
                            run="timed"))
    final = torch.load(root / "timed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == metrics["global_step"] > 2
    assert metrics["health"]["validations"][-1]["step"] == metrics["global_step"]
    assert metrics["reproducible"] is False


def test_whole_run_progress_and_time_left_for_a_step_and_a_time_budget(tiny, caplog):
    """A line after each validation gives the whole run's progress and time left: against max_steps (or
    max_epochs) as step N/M, against max_time as the time used of the budget, whichever runs out first."""
    import re

    def progress_lines(*overrides, run):
        caplog.clear()
        with caplog.at_level("INFO", logger="rt4ksr.training.callbacks"):
            train(cfg_for(tiny, *overrides, run=run))
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress: ")]

    lines = progress_lines("trainer.max_epochs=100", "trainer.max_steps=6", run="steps")
    assert [line.split(",")[0] for line in lines] == [
        "progress: step 2/6 (33%)", "progress: step 4/6 (67%)", "progress: step 6/6 (100%)"]
    assert all(re.search(r", \d+:\d\d:\d\d elapsed, about \d+:\d\d:\d\d left$", line) for line in lines), lines
    lines = progress_lines("trainer.max_epochs=100000", "trainer.max_time=00:00:00:03", run="timed")
    assert len(lines) >= 2, lines
    budget = (r"progress: step (\d+), (\d+:\d\d:\d\d) of the 0:00:03 time budget \((\d+)%\), "
              r"about (\d+):(\d\d):(\d\d) left")
    matches = [re.fullmatch(budget, line) for line in lines]
    assert all(matches), lines
    steps = [int(m.group(1)) for m in matches]
    assert steps == sorted(steps) and int(matches[-1].group(3)) >= int(matches[0].group(3))


def test_last_checkpoint_on_a_step_interval_survives_a_crash(tiny):
    root = tiny[0]
    cfg = cfg_for(tiny, "trainer.max_epochs=5", "trainer.check_val_every_n_epoch=10",
                  "callbacks.last_checkpoint.every_n_steps=3", run="crash")
    with open_dict(cfg):
        cfg.callbacks.crash = OmegaConf.create({"_target_": "helpers.CrashAt", "step": 5})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg)
    last = torch.load(root / "crash" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3  # the interval's save; no validation ran before the crash at step 5
    assert not list((root / "crash" / "checkpoints").glob("*.tmp"))


def test_step_budget_with_the_same_seed_gives_identical_weights(tiny):
    common = ["trainer.max_epochs=100", "trainer.max_steps=7", "scheduler=cosine",
              "scheduler.warmup_steps=3", "data.num_workers=1", "seed=3"]
    a = train(cfg_for(tiny, *common, run="rep_a"))
    b = train(cfg_for(tiny, *common, run="rep_b"))
    assert a["reproducible"] and a["global_step"] == b["global_step"] == 7
    wa = torch.load(a["final_checkpoint"], weights_only=True)["state_dict"]
    wb = torch.load(b["final_checkpoint"], weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["val_psnr"] == b["val_psnr"]


def test_a_run_that_does_not_learn_says_so(tiny, caplog):
    root = tiny[0]
    with caplog.at_level("WARNING"):
        metrics = train(cfg_for(tiny, "optimizer.lr=0", "callbacks.run_health.stall_after_steps=0", run="stall"))
    health = metrics["health"]
    assert health["status"] == "stalled" and health["baseline"]["val/psnr"] == pytest.approx(metrics["val_psnr"])
    assert any("is not learning" in r.getMessage() for r in caplog.records)
    assert json.loads((root / "stall" / "metrics.json").read_text())["health"]["status"] == "stalled"


def test_run_health_flags_a_fall_below_the_best():
    from rt4ksr.training.callbacks import RunHealth

    h = RunHealth(stall_db=0.1, drop_db=0.25, stall_after_steps=100)
    h.baseline = {"val/psnr": 30.0}
    for step, value in [(50, 30.05), (100, 31.0), (200, 30.9), (300, 30.5)]:
        h.validations.append({"step": step, "val/psnr": value})
        h.check(h.validations[-1])
    assert h.status == "regressed" and len(h.warnings) == 1 and "0.50 dB below its best" in h.warnings[0]
    assert h.summary()["health/best_step"] == 100 and h.summary()["health/final"] == 30.5
    h.validations.append({"step": 400, "val/psnr": 30.02})
    h.check(h.validations[-1], final=True)
    assert h.status == "stalled" and "not learning" in h.warnings[-1]


def test_best_checkpoint_yields_to_a_final_state_at_least_as_good(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val/psnr", mode="max")
    cb.best_model_path, cb.best_model_score = str(tmp_path / "epoch_001.ckpt"), torch.tensor(30.0)
    trainer = type("T", (), {"checkpoint_callback": cb})()
    assert best_checkpoint(trainer, 29.5) == (str(tmp_path / "epoch_001.ckpt"), 30.0)
    assert best_checkpoint(trainer, 30.0) == (None, None)
