"""Training: a short run end to end, exact resume (in-process and after SIGKILL), NaN stop,
atomic checkpoints, parameter groups and schedules."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import odenets
from fixtures import tiny_models
from odenets.train import TrainConfig, TrainingDivergedError, checkpoint, load_checkpoint, train
from odenets.train.optim import lr_factor, param_groups

TESTS = Path(__file__).parent
REAL_FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file()


def tiny_config(tmp_path, name="run", **kw):
    base = dict(model="fixtures.tiny_models:tiny", dataset="synthetic", subset=512, test_subset=200,
                batch_size=32, lr=0.05, epochs=2, progress=False, run_dir=str(tmp_path / name),
                amp="off")  # not 'auto': its start-up probe runs forwards (crash counts, exactness)
    return TrainConfig(**{**base, **kw})


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def test_short_run_writes_everything_and_learns(tmp_path):
    summary = train(tiny_config(tmp_path, epochs=2, subset=1024))
    run = tmp_path / "run"
    assert {"config.json", "checkpoint.pt", "metrics.jsonl", "summary.json"} <= {p.name for p in run.iterdir()}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[0]["train_images"] == 1024 and records[0]["img_per_s"] > 0
    assert summary["status"] == "finished" and summary["final"] == records[-1]
    assert records[-1]["test_acc"] > 0.2  # chance is 0.1 (0.36 measured here)
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == 2 and state["schedule"]["step"] == 2 * (1024 // 32)
    assert json.loads((run / "config.json").read_text())["subset"] == 1024


@pytest.mark.parametrize("name", ["resnet20", "lm_resnet20"])
def test_presets_train_one_epoch(tmp_path, name):
    dataset = "fashion-mnist" if REAL_FMNIST else "synthetic"
    cfg = TrainConfig(model=name, dataset=dataset, subset=256, test_subset=128, epochs=1,
                      batch_size=64, progress=False, run_dir=str(tmp_path / name))
    summary = train(cfg)
    assert summary["params"] == odenets.info(name, input_size=(1, 1, 28, 28) if REAL_FMNIST else
                                             (1, 3, 32, 32))["params"]
    coefficients = summary["final"]["coefficients"]
    if name.startswith("lm_"):
        assert sum(len(v) for v in coefficients.values()) == 7  # one k_n per non-transition block
        assert all(-1 < k < 1 for v in coefficients.values() for k in v)
    else:
        assert coefficients == {}
    assert 0 <= summary["final"]["test_acc"] <= 1 and summary["final"]["train_loss"] > 0


def test_resume_in_process_is_exact(tmp_path, capsys):
    """Crash in epoch 2, resume: same weights as an uninterrupted run. Dropout draws from the
    global RNG, so this also checks that the RNG state is restored."""
    args = dict(model_args={"dropout": 0.3}, epochs=3)
    train(tiny_config(tmp_path, "full", **args))
    torch.manual_seed(0)  # what train() does before building its own model (seed 0, rank 0)
    with pytest.raises(tiny_models.Crash):  # 16 steps per epoch: dies at step 5 of epoch 2
        train(tiny_config(tmp_path, "part", **args), model=tiny_models.crash_at(16 + 5, dropout=0.3))
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["epoch"] == 1
    capsys.readouterr()
    train(tiny_config(tmp_path, "part", **args), resume=True)
    assert "schedule now spans" not in capsys.readouterr().err  # same recipe: no note
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    part = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert_same_state(full["model"], part["model"])
    assert full["history"][-1]["test_loss"] == part["history"][-1]["test_loss"]
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_refuses_to_overwrite_a_run(tmp_path):
    train(tiny_config(tmp_path, epochs=1))
    with pytest.raises(ValueError, match="--resume"):
        train(tiny_config(tmp_path, epochs=1))


def _cli(run_dir, epochs, *extra):
    return [sys.executable, "-m", "odenets", "train", "--model", "fixtures.tiny_models:tiny",
            "--model-arg", "dropout=0.2", "--dataset", "synthetic", "--subset", "1024",
            "--test-subset", "100", "--batch-size", "16", "--epochs", str(epochs), "--lr", "0.05",
            "--run-dir", str(run_dir), "--no-progress", "--amp", "off", *extra]  # no timing probe


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    full, killed = tmp_path / "full", tmp_path / "killed"
    runner = subprocess.Popen(_cli(full, 3), env=env, stderr=subprocess.PIPE)
    victim = subprocess.Popen(_cli(killed, 3), env=env, stderr=subprocess.PIPE)
    ckpt = killed / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert ckpt.exists(), victim.stderr.read().decode()[-2000:]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    victim.stderr.close()
    assert victim.returncode == -signal.SIGKILL
    assert load_checkpoint(ckpt)["epoch"] == 1, "the kill came too late to land in epoch 2"
    assert not (killed / "summary.json").exists()
    resumed = subprocess.run(_cli(killed, 3, "--resume", str(killed)), env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert runner.wait(timeout=300) == 0, runner.stderr.read().decode()[-2000:]
    runner.stderr.close()
    a, b = load_checkpoint(full / "checkpoint.pt"), load_checkpoint(ckpt)
    assert a["epoch"] == b["epoch"] == 3
    assert_same_state(a["model"], b["model"])
    assert [r["test_loss"] for r in a["history"]] == [r["test_loss"] for r in b["history"]]
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, subset=256, epochs=3, log_every=3)  # 8 steps per epoch
    model = tiny_models.NaNAfter(bad_call=8 + 5)  # 5th step of epoch 2
    with pytest.raises(TrainingDivergedError) as e:
        train(cfg, model=model)
    assert "epoch 2, step 5" in str(e.value) and "epoch 1)" in str(e.value)
    assert (e.value.epoch, e.value.step) == (2, 5)
    assert model.calls == 8 + 6  # stopped at the next check, not at the end of the epoch
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and "step 5" in summary["error"]


def test_huge_learning_rate_diverges_cleanly(tmp_path):
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step \d+"):
        train(tiny_config(tmp_path, lr=1e12, subset=256, epochs=1, log_every=2))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_atomic({"epoch": 1, "w": torch.ones(3)}, path)

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(ValueError, match=f"cannot save {path}.*disk full"):
        checkpoint.save_atomic({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left


def test_no_weight_decay_on_bn_bias_and_scheme_coefficients():
    model = odenets.create("lm_resnet20")
    decay, no_decay = param_groups(model, 1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0
    assert all(n.endswith("weight") and "bn" not in n for n in decay["names"])
    assert any(n.endswith("raw.k") for n in no_decay["names"])
    assert any("bn" in n for n in no_decay["names"]) and "head.fc.bias" in no_decay["names"]
    per_channel = odenets.create("lm_resnet20", solver_options={"per_channel": True})
    assert not any("raw" in n for n in param_groups(per_channel, 1e-4)[0]["names"])
    n_params = sum(1 for _ in model.parameters())
    assert len(decay["params"]) + len(no_decay["params"]) == n_params


def test_schedules():
    cfg = TrainConfig(schedule="step", milestones=(0.5, 0.75), gamma=0.1)
    assert [lr_factor(s, 100, cfg, 10) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    cfg = TrainConfig(schedule="cosine")
    assert lr_factor(0, 100, cfg, 10) == 1 and lr_factor(50, 100, cfg, 10) == pytest.approx(0.5)
    cfg = TrainConfig(schedule="onecycle")
    f = [lr_factor(s, 100, cfg, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.04) and max(f) == f[30] == 1 and f[99] < 0.02
    cfg = TrainConfig(schedule="cosine", warmup_epochs=1)
    assert lr_factor(0, 100, cfg, 10) == pytest.approx(0.1) and lr_factor(9, 100, cfg, 10) == 1


@pytest.mark.parametrize("bad, match", [
    (dict(schedule="linear"), "step, cosine, onecycle"), (dict(amp="fp16"), "auto, bf16, off"),
    (dict(epochs=0), "epochs"), (dict(milestones=(0.8, 0.5)), "milestones"),
    (dict(label_smoothing=1.0), "label_smoothing"), (dict(gamma=-0.1), "gamma")])
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad).validate()
    with pytest.raises(ValueError, match="valid: "):
        TrainConfig.from_dict({"epochz": 3})


def test_nan_weights_after_the_last_step_of_an_epoch_are_not_checkpointed(tmp_path):
    """The loss of a step is computed before its update: NaN gradients at the last step of an
    epoch leave every training loss finite but the weights NaN. That epoch must not be saved as
    a good checkpoint."""
    cfg = tiny_config(tmp_path, subset=256, epochs=2, log_every=3)  # 8 steps per epoch
    with pytest.raises(TrainingDivergedError, match="epoch 1") as e:
        train(cfg, model=tiny_models.NaNGradAt(bad_call=8))
    assert e.value.epoch == 1 and "No checkpoint was written" in str(e.value)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["epochs_done"] == 0


def test_continuous_depth_runs_record_their_function_evaluations(tmp_path):
    cfg = TrainConfig(model="preact_resnet20", solver="ode:euler", model_args={
        "solver_options": {"steps": 3}}, dataset="synthetic", subset=64, test_subset=32, epochs=1,
        batch_size=32, progress=False, run_dir=str(tmp_path / "ode"))
    summary = train(cfg)
    # three tied stages of 3 fixed Euler steps each (one evaluation per step) per training batch
    assert summary["final"]["nfe_per_step"] == {"forward": 9.0, "backward": 0.0}
    discrete = train(tiny_config(tmp_path, epochs=1))
    assert "nfe_per_step" not in discrete["final"]
