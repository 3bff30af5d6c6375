"""Training and CLI usability: one-line errors (model factory, run directory, corrupt
checkpoint, resume with another model, config values, metrics file), help texts, finished runs,
and precise BatchNorm statistics (`odenets.train.precise_bn`)."""
import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import odenets
from fixtures import tiny_models
from fixtures.dist import free_port, worker_env
from odenets import cli
from odenets.train import TrainConfig, checkpoint, load_checkpoint, train
from odenets.train.config import help_text
from odenets.train.precise_bn import recompute_bn_stats
from odenets.train.rundir import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

TESTS = Path(__file__).parent
TINY = ["--model", "fixtures.tiny_models:tiny", "--dataset", "synthetic", "--subset", "256",
        "--test-subset", "100", "--batch-size", "32", "--no-progress"]


def run_cli(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def tiny_config(tmp_path, name="run", **kw):
    base = dict(model="fixtures.tiny_models:tiny", dataset="synthetic", subset=256, test_subset=100,
                batch_size=32, lr=0.05, epochs=1, progress=False, run_dir=str(tmp_path / name),
                amp="off")  # not 'auto': its start-up probe runs forwards (crash counts, exactness)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A one-epoch run of the tiny model (``width=8`` given explicitly); copy before changing it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(run.parent, model_args={"width": 8}))
    return run


def copy_run(run, tmp_path, name="copy"):
    return Path(shutil.copytree(run, tmp_path / name))


def one_line_error(status, err, command):
    assert status == 2 and "Traceback" not in err
    assert err.startswith(f"odenets {command}: error: ") and err.count("\n") == 1, err


# ---- one-line errors ----------------------------------------------------------------------------
def _factory_with_a_bug(num_classes=10, in_channels=3):
    return len(5)  # a TypeError inside the factory: the user's bug, not a signature mismatch


def test_model_factory_without_the_keywords_is_a_one_line_error(capsys, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    status, _, err = run_cli(capsys, "train", "--model", "os:getcwd", "--dataset", "synthetic",
                             "--subset", "64", "--batch-size", "32", "--no-progress",
                             "--run-dir", tmp_path / "a")
    one_line_error(status, err, "train")
    assert "model factory 'os:getcwd' must accept num_classes=, in_channels=" in err
    status, _, err = run_cli(capsys, "train", *TINY, "--model-arg", "depth=3", "--run-dir",
                             tmp_path / "b")
    one_line_error(status, err, "train")
    assert "and the keywords depth" in err
    cfg = TrainConfig(model="test_train_usability:_factory_with_a_bug")
    with pytest.raises(TypeError, match="has no len"):  # not hidden behind "must accept"
        odenets.train.build_model(cfg, 10, 3)


def test_unwritable_run_dir_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    status, _, err = run_cli(capsys, "train", *TINY, "--epochs", "1", "--run-dir", "/dev/null/run")
    one_line_error(status, err, "train")
    assert "cannot write the run directory /dev/null/run" in err and "Not a directory" in err


@pytest.mark.parametrize("content", [b"garbage\n", "truncated", b""])
def test_corrupt_checkpoint_is_one_line_without_unsafe_advice(capsys, tmp_path, finished_run, content):
    run = copy_run(finished_run, tmp_path)
    path = run / checkpoint.NAME
    if content == "truncated":
        content = path.read_bytes()[:500]
    path.write_bytes(content)
    with pytest.raises(ValueError) as e:
        checkpoint.load(path)
    assert str(e.value).startswith(f"{path} is not a readable torch checkpoint (corrupt or truncated?)")
    for argv in (["eval", run], ["train", "--resume", run, "--epochs", "2", "--trust-run-code"]):
        status, _, err = run_cli(capsys, *argv)
        one_line_error(status, err, argv[0])
        assert "not a readable torch checkpoint (corrupt or truncated?)" in err
        assert "weights_only" not in err and len(err) < 300


@pytest.mark.parametrize("flag, value, expected", [
    ("--model", "resnet20", "--model resnet20 differs from the run's --model fixtures.tiny_models:tiny"),
    ("--solver", "euler", "--solver euler differs from the run's --solver none"),
    ("--model-arg", "width=4", "--model-arg width=4 differs from the run's --model-arg width=8"),
    ("--model-arg", "dropout=0.5", "--model-arg dropout=0.5 differs from the run's default "
                                   "(no --model-arg dropout)"),
    ("--dataset", "cifar10", "--dataset cifar10 differs from the run's --dataset synthetic"),
])
def test_resume_refuses_another_model_before_reading_data(capsys, tmp_path, monkeypatch,
                                                          finished_run, flag, value, expected):
    run = copy_run(finished_run, tmp_path)

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded before the check")

    monkeypatch.setattr(odenets.data, "load_dataset", no_data)
    status, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2", flag, value)
    one_line_error(status, err, "train")
    assert expected in err and "cannot change on --resume" in err


def test_resume_accepts_the_same_model_options_and_says_when_a_run_is_complete(capsys, tmp_path,
                                                                                finished_run):
    run = copy_run(finished_run, tmp_path)
    status, out, err = run_cli(capsys, "train", "--resume", run, "--model-arg", "width=8",
                               "--model", "fixtures.tiny_models:tiny")
    assert status == 0, err
    assert "run already complete (1/1 epochs); pass --epochs N (N > 1) to extend it" in out + err
    assert "epochs 2..1" not in out + err
    assert "after 1 epoch " in out  # not "1 epochs"
    status, out, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2", "--trust-run-code")
    assert status == 0 and "epoch 2 of 2" in out + err and "after 2 epochs " in out
    status, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "1", "--trust-run-code")
    one_line_error(status, err, "train")
    assert "has 2 epochs, more than --epochs 1" in err


def test_a_state_dict_of_another_model_gives_a_short_message():
    saved = odenets.create("resnet20").state_dict()
    with pytest.raises(ValueError) as e:
        checkpoint.load_model_state(odenets.create("resnet32"), saved, "RUN/checkpoint.pt")
    message = str(e.value)
    assert message.startswith("RUN/checkpoint.pt does not fit the model built from the config")
    assert "missing: " in message and len(message) < 500 and "\n" not in message


@pytest.mark.parametrize("bad, match", [
    (dict(warmup_epochs=-1), r"warmup_epochs must be >= 0 .*got -1"),
    (dict(momentum=1.0), r"momentum must lie in \[0, 1\), got 1.0"),
    (dict(weight_decay=-1e-4), r"weight_decay must be >= 0, got -0.0001"),
    (dict(precise_bn=-1), r"precise_bn must be an integer >= 0 \(0 = off\), got -1"),
    (dict(precise_bn=1.5), r"precise_bn must be an integer"),
])
def test_each_bad_value_is_named(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad).validate()


def test_malformed_metrics_line_names_file_and_line(capsys, tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write("\n{epoch: 2}\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 3: not valid JSON"):
        read_metrics(run)
    status, _, err = run_cli(capsys, "plot", run)
    one_line_error(status, err, "plot")
    assert f"{run / 'metrics.jsonl'}, line 3" in err


# ---- help texts ----------------------------------------------------------------------------------
def help_of(capsys, *command):
    with pytest.raises(SystemExit):
        cli.main([*command, "--help"])
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", ["train", "compare", "eval", "bench"])
def test_help_shows_each_default_once_and_readably(capsys, command):
    text = help_of(capsys, command)
    assert "(default: None)" not in text and "(default: {})" not in text
    assert "(default: '" not in text and "(0.5, 0.75)" not in text  # no Python reprs
    assert "``" not in text and ".." not in text.replace("...", "")
    options = text.split(" --")
    assert all(o.count("(default:") <= 1 for o in options), [o for o in options if o.count("(default:") > 1]


def test_help_defaults(capsys):
    text = help_of(capsys, "train")
    for shown in ("--milestones F,F step schedule", "(default: 0.5,0.75)", "(default: lm_resnet20)",
                  "(default: the preset's own)", "(default: on)", "(default: all)"):
        assert shown in text
    for f in __import__("dataclasses").fields(TrainConfig):  # every flag says its default once
        assert help_text(f).count("(default:") == 1, f.name
    text = help_of(capsys, "eval")
    for shown in ("(default: test)", "(default: 512)", "else all)", "(default: the run's)"):
        assert shown in text


def test_bench_script_errors_name_the_command(capsys):
    init = argparse.ArgumentParser.__init__
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "report", "--nonsense"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: odenets bench report")
    assert "odenets bench report: error: unrecognized arguments: --nonsense" in err
    assert argparse.ArgumentParser.__init__ is init and argparse.ArgumentParser().prog != "odenets bench report"


# ---- precise BatchNorm statistics -----------------------------------------------------------------
def test_recompute_gives_the_average_of_batch_statistics():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    model = nn.Sequential(conv, nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5)).eval()
    model[1].running_mean.fill_(100.0)  # deliberately wrong
    model[1].running_var.fill_(1e4)
    batches = [torch.randn(16, 3, 8, 8) + shift for shift in (0.0, 1.0, -2.0)]
    params = {k: v.clone() for k, v in model.named_parameters()}
    with torch.no_grad():
        feats = [conv(x).transpose(0, 1).flatten(1) for x in batches]  # (C, N*H*W) per batch
    mean = torch.stack([f.mean(1) for f in feats]).mean(0)
    var = torch.stack([f.var(1, unbiased=True) for f in feats]).mean(0)
    assert recompute_bn_stats(model, iter(batches)) == 3
    torch.testing.assert_close(model[1].running_mean, mean)
    torch.testing.assert_close(model[1].running_var, var)
    assert model[1].num_batches_tracked == 3 and model[1].momentum == 0.1
    assert not model.training  # mode restored
    assert all(torch.equal(params[k], v) for k, v in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())


def test_recompute_fills_every_slot_of_per_evaluation_norms():
    """rk4 calls each field 4 times per step: one slot of statistics per call. After a
    recompute on one large batch, eval mode reproduces train mode on that batch (up to the
    unbiased/biased variance factor n/(n-1))."""
    torch.manual_seed(0)
    flow = odenets.build(lambda: nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4),
                                               nn.Tanh()), "rk4", steps=2)
    norms = [m for m in flow.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.running_mean.shape == (4, 4) for m in norms)  # (slots, C)
    x = torch.randn(64, 4, 16, 16) + 0.5
    with torch.no_grad():
        train_out = flow.train()(x)
        assert (flow.eval()(x) - train_out).abs().max() > 0.05  # statistics of one update only
        assert recompute_bn_stats(flow, [x]) == 1
        torch.testing.assert_close(flow(x), train_out, atol=1e-3, rtol=0)
    slots = norms[0].running_mean
    assert not torch.allclose(slots[0], slots[1])  # each call has its own statistics


def test_recompute_without_batch_norm_or_batches():
    calls = []
    model = nn.Linear(3, 2)
    model.register_forward_hook(lambda *args: calls.append(1))
    assert recompute_bn_stats(model, [torch.ones(1, 3)]) == 0 and not calls
    bn = nn.BatchNorm1d(3)
    bn.running_mean.fill_(7.0)
    with pytest.raises(ValueError, match="no batches"):
        recompute_bn_stats(bn, [])
    assert torch.equal(bn.running_mean, torch.full((3,), 7.0)) and bn.momentum == 0.1


def test_precise_bn_training_changes_only_the_statistics(tmp_path):
    """Same weights with and without precise_bn (the recompute restores the RNG the dropout
    draws from); the saved statistics come from precise_bn batches."""
    args = dict(model_args={"dropout": 0.3}, epochs=2)
    plain = train(tiny_config(tmp_path, "plain", **args))
    precise = train(tiny_config(tmp_path, "precise", precise_bn=2, **args))
    assert precise["config"]["precise_bn"] == 2 and plain["config"]["precise_bn"] == 0
    assert json.loads((tmp_path / "precise" / "config.json").read_text())["precise_bn"] == 2
    a = load_checkpoint(tmp_path / "plain" / checkpoint.NAME)["model"]
    b = load_checkpoint(tmp_path / "precise" / checkpoint.NAME)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a if "running" not in k and "num_batches" not in k)
    assert not torch.equal(a["1.running_mean"], b["1.running_mean"])
    assert b["1.num_batches_tracked"] == 2
    assert plain["final"]["train_loss"] == precise["final"]["train_loss"]


def test_precise_bn_resume_is_exact(tmp_path):
    args = dict(model_args={"dropout": 0.3}, epochs=3, precise_bn=3)
    train(tiny_config(tmp_path, "full", **args))
    torch.manual_seed(0)  # what train() does before building its model (seed 0, rank 0)
    with pytest.raises(tiny_models.Crash):  # 8 steps per epoch (+3 recompute calls): epoch 2
        train(tiny_config(tmp_path, "part", **args), model=tiny_models.crash_at(8 + 3 + 5, dropout=0.3))
    assert load_checkpoint(tmp_path / "part" / checkpoint.NAME)["epoch"] == 1
    train(tiny_config(tmp_path, "part", **args), resume=True)
    full = load_checkpoint(tmp_path / "full" / checkpoint.NAME)
    part = load_checkpoint(tmp_path / "part" / checkpoint.NAME)
    assert all(torch.equal(full["model"][k], part["model"][k]) for k in full["model"])
    assert [r["test_loss"] for r in full["history"]] == [r["test_loss"] for r in part["history"]]


def test_compare_passes_precise_bn_through():
    from odenets.train import config_from_args  # compare's flags are generated from TrainConfig
    args = cli.build_parser().parse_args(["compare", "--models", "resnet20", "--precise-bn", "4"])
    args.model, args.run_dir = "resnet20", "unused"
    assert config_from_args(args).precise_bn == 4


def _ddp_worker(rank: int, world: int, port: int, out: str):
    worker_env(rank, world, port)
    torch.manual_seed(rank)
    model = tiny_models.tiny()
    cfg = TrainConfig(model="fixtures.tiny_models:tiny", dataset="synthetic", subset=128,
                      test_subset=32, batch_size=32, epochs=1, lr=0.05, progress=False,
                      device="cpu", precise_bn=2, run_dir=str(Path(out) / "run"))
    train(cfg, model=model)
    torch.save({k: v for k, v in model.state_dict().items() if "running" in k},
               Path(out) / f"rank{rank}.pt")


def test_ddp_ranks_evaluate_the_same_recomputed_statistics(tmp_path):
    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    saved = load_checkpoint(tmp_path / "run" / checkpoint.NAME)["model"]
    for k in r0:
        assert torch.equal(r0[k], r1[k]) and torch.equal(r0[k], saved[k]), k
