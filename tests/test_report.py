"""The sweep report: labels from differing overrides only, interleaved re-timing, ties, the Pareto front."""

import pytest
import torch
from torch import nn

from rt4ksr.core.stats import Stats
from rt4ksr.measure.multirun import differing_labels, pareto_front, rank_with_ties, retime, retime_size


def test_labels_are_the_values_that_differ():
    overrides = [{"experiment": "ablation_x2", "ablation": "base", "trainer.max_time": "00:00:03:00"},
                 {"experiment": "ablation_x2", "ablation": "dconv", "trainer.max_time": "00:00:03:00"},
                 {"experiment": "ablation_x2", "ablation": "rt4ksr", "trainer.max_time": "00:00:03:00"}]
    assert differing_labels(overrides) == ["base", "dconv", "rt4ksr"]
    blocks = [{"model/baseblock": "base", "optimizer.lr": "0.001", "logger": "none"},
              {"model/baseblock": "rt4ksr.models.NAFBlock", "optimizer.lr": "0.002", "logger": "none"}]
    assert differing_labels(blocks) == ["base 0.001", "NAFBlock 0.002"]


CALLS: list[str] = []  # module-level: the timing times copies of the models, and a copy shares this list


class Recorder(nn.Module):
    """A stand-in network that records the order in which the timing calls it."""

    scale = 2

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CALLS.append(self.name)
        return x


def test_retiming_is_interleaved_and_rotates():
    CALLS.clear()
    models = {n: Recorder(n) for n in "ABC"}
    out = retime(models, torch.device("cpu"), size=(8, 8), rounds=4, warmup=1)
    timed = CALLS[3:]  # after one warm-up call each
    assert timed == list("ABC" "BCA" "CAB" "ABC")  # every round times every model once, starting one later
    for name, t in out.items():
        assert t.p25 <= t.median <= t.p75 and t.iqr == t.p75 - t.p25 and t.n == 4 and t.per_second() > 0
        assert retime_size(models[name], torch.device("cpu"), (8, 8)) == (8, 8)


def timing(ms: float, iqr: float) -> Stats:
    """A timing with median ``ms`` and inter-quartile range ``iqr``."""
    return Stats(ms, ms - iqr / 2, ms + iqr / 2, ms - iqr, ms + iqr, 5, (ms,))


def test_ranks_inside_the_iqr_are_ties():
    timings = {"fast": timing(10.0, 0.5), "close": timing(10.4, 0.2), "slow": timing(20.0, 1.0),
               "slower": timing(30.0, 0.1)}
    assert rank_with_ties(timings) == {"fast": "1=", "close": "1=", "slow": "3", "slower": "4"}


def test_ties_do_not_chain():
    """B is within the IQR of A, C within that of B, but C is clearly slower than A: each is compared with the
    fastest of its group, so C starts a rank of its own."""
    timings = {"A": timing(10.0, 0.6), "B": timing(10.5, 0.6), "C": timing(11.0, 0.6), "D": timing(11.5, 0.6)}
    assert rank_with_ties(timings) == {"A": "1=", "B": "1=", "C": "3=", "D": "3="}


class Broken(Recorder):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("out of memory")


def test_a_model_that_fails_is_left_out_of_the_retiming(caplog):
    out = retime({"A": Recorder("A"), "B": Broken("B")}, torch.device("cpu"), size=(8, 8), rounds=2, warmup=1)
    assert list(out) == ["A"] and "B not timed (failed in warm-up: RuntimeError: out of memory)" in caplog.text
    assert rank_with_ties(out) == {"A": "1"}


def test_retiming_needs_a_round():
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        retime({"A": Recorder("A")}, torch.device("cpu"), size=(8, 8), rounds=0)


def test_pareto_front():
    points = [(100.0, 30.0), (50.0, 31.0), (80.0, 29.0), (40.0, 30.5), (100.0, 30.0)]
    assert pareto_front(points) == [0, 1, 4]  # (80, 29) and (40, 30.5) are beaten in both


def test_the_ablation_walks_one_change_per_step_and_ends_with_the_report():
    from rt4ksr.core.config import compose

    steps = ["base", "dconv", "unshuffle", "hfb", "layernorm", "simplified", "rep", "rt4ksr"]
    cfg = compose("train", ["experiment=ablation_x2"])
    assert cfg.hydra.sweeper.params["+ablation"].split(",") == steps
    assert cfg.hydra.callbacks.sweep_report._target_ == "rt4ksr.measure.multirun.SweepReportCallback"
    keys = ("baseblock", "type", "downscaling", "unshuffle", "use_hfb", "forget", "layernorm", "residual")
    models = []
    for i, step in enumerate(steps, 1):
        c = compose("train", ["experiment=ablation_x2", f"+ablation={step}"])
        assert c.ablation_step == i and c.model.is_train and c.model.global_skip == "bicubic"
        models.append({k: str(c.model[k]) for k in keys})
    changed = [[k for k in keys if a[k] != b[k]] for a, b in zip(models, models[1:], strict=False)]
    assert changed == [["baseblock"], ["downscaling", "unshuffle"], ["use_hfb", "forget"], ["layernorm"],
                       ["baseblock", "residual"], ["type"], ["forget"]]


def test_optuna_searches_end_with_the_same_report():
    from rt4ksr.core.config import compose

    cfg = compose("train", ["hparams_search=optuna"])
    assert cfg.hydra.callbacks.sweep_report._target_ == "rt4ksr.measure.multirun.SweepReportCallback"
