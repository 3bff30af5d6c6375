"""``--amp auto`` / ``--compile auto``: chosen by timing training steps at start-up
(`odenets.train.probe`), recorded in the summary, kept on resume, model state untouched."""
import json

import pytest
import torch

from fixtures import tiny_models
from odenets.train import TrainConfig, train
from odenets.train.config import config_from_args
from odenets.train.probe import AMPS, choose, fastest, time_candidates

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeClock:
    """A clock that the fake steps advance by their cost."""

    def __init__(self):
        self.now, self.calls = 0.0, []

    def __call__(self):
        return self.now

    def step(self, name, cost):
        def run():
            self.now += cost
            self.calls.append(name)
        return run


def test_slow_candidate_is_dropped_after_its_cheap_warmup():
    clock = FakeClock()
    steps = {"fast": clock.step("fast", 1.0), "slow": clock.step("slow", 12.0)}
    warmups = {"fast": clock.step("fast/8", 0.15), "slow": clock.step("slow/8", 1.5)}
    times = time_candidates(steps, warmups=warmups, budget_s=3.5, clock=clock)
    assert "slow" not in clock.calls  # never ran a full step
    assert times["slow"] == [] and times["warmup"] == {"fast": 0.15, "slow": 1.5}
    assert times["fast"] == [1.0]  # one step, for the record: nothing left to compare
    assert fastest(times) == "fast"


def test_the_default_is_never_dropped_on_one_slow_sample():
    clock = FakeClock()
    costs = {"off": iter([1.0, 5.0, 1.0, 1.0, 1.0]), "bf16": iter([0.95] * 5)}  # a preempted step

    def step(name):
        def run():
            clock.now += next(costs[name])
        return run
    warmups = {"off": clock.step("off/8", 0.5), "bf16": clock.step("bf16/8", 0.1)}  # noisy warm-up
    times = time_candidates({n: step(n) for n in costs}, warmups=warmups, keep=("off",),
                            budget_s=100, clock=clock)
    assert len(times["off"]) == 5 and len(times["bf16"]) == 5
    assert fastest(times, default="off") == "off"  # 0.95 is not 10% faster than 1.0


def test_candidates_interleave_and_clearly_slower_one_stops_after_one_round():
    clock = FakeClock()
    steps = {"a": clock.step("a", 1.0), "b": clock.step("b", 1.2), "c": clock.step("c", 2.0)}
    times = time_candidates(steps, rounds=3, budget_s=100, clock=clock)
    assert clock.calls == ["a", "b", "c", "a", "b", "c", "a", "b", "a", "b"]  # warm-ups, then rounds
    assert len(times["c"]) == 1 and len(times["a"]) == 3
    assert fastest(times) == "a"


def _tiny(channels_last=False):
    torch.manual_seed(0)
    return tiny_models.tiny(num_classes=10, in_channels=3)


def test_probe_leaves_weights_statistics_gradients_and_rng_as_they_were():
    torch.manual_seed(0)
    model = tiny_models.Recorder(num_classes=10, in_channels=3)  # records the training inputs
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    cfg = TrainConfig(amp="auto", compile=False, channels_last=False)
    choice, trained = choose(model, cfg, (16, 3, 32, 32), 10, torch.device("cpu"))
    assert choice["amp"] in AMPS and choice["compile"] is False and trained is model
    assert model.seen == []  # precision is timed on a copy: the model's own state is untouched
    assert set(choice["probe"]) == {"amp=off", "amp=bf16"}
    assert all(v["warmup_ms"] > 0 for v in choice["probe"].values())
    assert any(v["median_ms"] is not None for v in choice["probe"].values())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_explicit_settings_are_not_probed_and_a_resumed_choice_is_kept():
    model = _tiny()
    cpu = torch.device("cpu")
    choice, _ = choose(model, TrainConfig(amp="off", compile=False), (4, 3, 32, 32), 10, cpu)
    assert choice == dict(amp="off", compile=False, probe={})
    saved = dict(amp="bf16", compile=False, probe={"amp=bf16": dict(median_ms=1.0, step_ms=[1.0])})
    choice, _ = choose(model, TrainConfig(amp="auto", compile=False), (4, 3, 32, 32), 10, cpu, chosen=saved)
    assert choice == saved  # not probed again: the resumed run replays the original's choice
    choice, _ = choose(model, TrainConfig(amp="off", compile=False), (4, 3, 32, 32), 10, cpu, chosen=saved)
    assert choice["amp"] == "off"  # a setting given explicitly wins over the saved choice


def test_run_records_the_choice_and_its_timings_and_resume_keeps_it(tmp_path):
    cfg = TrainConfig(model="fixtures.tiny_models:tiny", dataset="synthetic", subset=128,
                      test_subset=64, batch_size=32, epochs=1, progress=False, amp="auto",
                      run_dir=str(tmp_path / "run"))
    summary = train(cfg)
    assert summary["speed"]["amp"] in AMPS and summary["speed"]["compile"] is False
    assert {"amp=off", "amp=bf16"} == set(summary["speed"]["probe"])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["amp"] == "auto"
    cfg.epochs = 2
    resumed = train(cfg, resume=True)
    assert resumed["speed"] == summary["speed"]


def test_compile_flag_takes_on_off_auto_and_rejects_others():
    import argparse
    from odenets.train.config import add_arguments
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    got = [config_from_args(parser.parse_args(a)).compile for a in
           ([], ["--compile"], ["--compile", "auto"], ["--compile=off"], ["--no-compile"])]
    assert got == [False, True, "auto", False, False]
    with pytest.raises(SystemExit):
        parser.parse_args(["--compile", "maybe"])
    with pytest.raises(ValueError, match="compile must be true, false or 'auto'"):
        TrainConfig(compile="maybe").validate()
    with pytest.raises(ValueError, match="'compile' must be true, false or"):
        TrainConfig.from_dict(dict(compile="sometimes"))
    assert TrainConfig.from_dict(dict(compile="auto")).validate().compile == "auto"


def test_threads_option_sets_the_intra_op_pool_and_is_validated(tmp_path):
    before = torch.get_num_threads()
    try:
        train(TrainConfig(model="fixtures.tiny_models:tiny", dataset="synthetic", subset=32,
                          test_subset=32, batch_size=32, epochs=1, progress=False, amp="off",
                          threads=before + 1, run_dir=str(tmp_path / "run")))
        assert torch.get_num_threads() == before + 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        TrainConfig(threads=0).validate()
