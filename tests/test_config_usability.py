"""Usability fixes from the review: explicit data dirs, NetConfig type checks, the
transition_history rename, create()'s error list and timm aliases, `list --pattern`, `info`."""
import dataclasses
import json

import pytest
import torch

import odenets
from fixtures.datasets import write_fashion_mnist
from odenets import cli, data
from odenets.data import idx
from odenets.models import NetConfig, get_config


def run_cli(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- an explicit --data-dir is the only place searched -------------------------------------------
@pytest.fixture
def fmnist_elsewhere(tmp_path, monkeypatch):
    """Fashion-MNIST copies in $ODENETS_DATA and in the 'system' directory."""
    write_fashion_mnist(tmp_path / "env", n_train=30)
    write_fashion_mnist(tmp_path / "system", n_train=50)
    monkeypatch.setenv("ODENETS_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(idx, "SYSTEM_DIR", str(tmp_path / "system"))
    monkeypatch.setattr(idx, "dpkg_dir", lambda *a: [])
    return tmp_path


def test_explicit_data_dir_does_not_fall_back(fmnist_elsewhere, monkeypatch):
    empty = fmnist_elsewhere / "empty"
    empty.mkdir()
    with pytest.raises(data.DatasetNotFoundError) as e:
        data.load_dataset("fashion-mnist", data_dir=empty)
    message = str(e.value)
    assert f"not found in --data-dir {empty}" in message and "train-images-idx3-ubyte.gz" in message
    assert str(fmnist_elsewhere / "env") not in message and "no such directory" not in message
    with pytest.raises(data.DatasetNotFoundError, match="no such directory"):
        data.load_dataset("fashion-mnist", data_dir=fmnist_elsewhere / "missing")
    # without --data-dir: $ODENETS_DATA, then the system copy
    assert len(data.load_dataset("fashion-mnist")) == 30
    monkeypatch.delenv("ODENETS_DATA")
    assert len(data.load_dataset("fashion-mnist")) == 50


def test_train_with_a_wrong_data_dir_stops(capsys, fmnist_elsewhere):
    status, _, err = run_cli(capsys, "train", "--dataset", "fashion-mnist", "--data-dir", "/nonexistent",
                             "--epochs", "1", "--run-dir", str(fmnist_elsewhere / "run"))
    assert status == 2 and "Fashion-MNIST not found in --data-dir /nonexistent" in err


# -- NetConfig type checks -------------------------------------------------------------------------
@pytest.mark.parametrize("override,message", [
    (dict(tied="maybe"), r"tied must be True or False, got tied='maybe' \(str\)"),
    (dict(post_activation=1), r"post_activation must be True or False, got post_activation=1"),
    (dict(per_evaluation_norm="false"), r"per_evaluation_norm must be True or False"),
    (dict(widths=8), r"widths must be a tuple of integers >= 1, one per stage, got widths=8 \(int\)"),
    (dict(strides=1), r"strides must be a tuple of integers >= 1, one per stage"),
    (dict(depths="333"), r"depths must be a tuple of integers >= 1"),
    (dict(widths=(16, 32)), r"one entry per stage"),
    (dict(solver_options="abc"), r"solver_options must be a dict of options, .*got solver_options='abc'"),
    (dict(block_options=[("cardinality", 8)]), r"block_options must be a dict of options"),
    (dict(stem_width=0), r"stem_width must be None \(widths\[0\]\) or an integer >= 1"),
    (dict(solver=3), r"solver must be a solver name"),
    (dict(block="wide"), r"unknown block 'wide'; available: basic, bottleneck, preact, resnext"),
    (dict(shortcut="C"), r"unknown shortcut 'C'; available: A, B"),
    (dict(stem=None), r"stem must be a string, got stem=None"),
])
def test_bad_field_types_are_value_errors_naming_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        get_config("resnet20", **override)
    with pytest.raises(ValueError, match=message):
        odenets.create("resnet20", **override)


def test_lists_from_json_are_accepted():
    cfg = json.loads(json.dumps(dataclasses.asdict(get_config("resnet20"))))
    model = odenets.Network(NetConfig(**cfg))
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 10)


# -- transition_history (was `history`, which clashed with lmm's history=) -------------------------
def test_history_option_is_renamed():
    assert "transition_history" in {f.name for f in dataclasses.fields(NetConfig)}
    assert "history" not in {f.name for f in dataclasses.fields(NetConfig)}
    with pytest.raises(ValueError, match=r"'history' is now 'transition_history'.*solver_options"):
        odenets.create("lm_resnet20", history="restart")
    with pytest.raises(ValueError, match=r"unknown transition_history 3.*project, restart"):
        odenets.create("lm_resnet20", transition_history=3)
    model = odenets.create("lm_resnet20", transition_history="restart")
    assert all(t.history == "restart" for t in model.transitions)
    lmm = odenets.create("lmm3_resnet20", solver_options={"history": 3})  # the scheme's option
    assert lmm.flows[0].scheme.name == "lmm"


# -- create(): unknown names, timm's pretrained= and in_chans= -------------------------------------
def test_unknown_model_lists_all_presets_sorted():
    with pytest.raises(ValueError) as e:
        odenets.create("nonexistent")
    available = str(e.value).split("available: ")[1]
    parts = available.split(", ")
    assert parts == sorted(parts)
    for family in ("ab2_resnet", "shake_resnet", "sd_resnet", "rk4_resnet"):
        assert f"{family}{{20,32,44,56,110,164}}" in parts
    assert {"resnet{20,32,44,50,56,110,164}", "resnext29_8x64d", "lm_resnext29_16x64d"} <= set(parts)
    with pytest.raises(ValueError, match=r"unknown model 'lm_resnt20' \(did you mean 'lm_resnet20'"):
        odenets.create("lm_resnt20")


def test_timm_style_arguments(tmp_path, monkeypatch):
    monkeypatch.setattr("odenets.pretrained.WEIGHTS_DIR", tmp_path)  # whatever ships: none here
    assert odenets.create("resnet20", pretrained=False).stem.conv.in_channels == 3
    with pytest.raises(ValueError, match="no pretrained weights"):
        odenets.create("resnet20", pretrained=True)
    assert odenets.create("resnet20", in_chans=1).stem.conv.in_channels == 1
    with pytest.raises(ValueError, match="in_chans=1 .* and in_channels=2 disagree"):
        odenets.create("resnet20", in_chans=1, in_channels=2)


# -- odenets list --pattern ------------------------------------------------------------------------
def test_list_pattern_applies_to_every_kind(capsys):
    status, out, _ = run_cli(capsys, "list", "solvers", "--pattern", "rk*")
    assert status == 0 and out.split() == ["rk2", "rk4", "rk4_38"]
    status, out, err = run_cli(capsys, "list", "models", "--pattern", "zzz*")
    assert status == 1 and out == "" and "no models match 'zzz*'" in err
    status, out, _ = run_cli(capsys, "list", "--pattern", "cifar1*")
    assert status == 0 and "cifar10 " in out and "(none match 'cifar1*')" in out


# -- odenets info ------------------------------------------------------------------------------------
def test_info_names_the_solver_and_counts_continuous_evaluations(capsys):
    base = odenets.info("resnet20", input_size=(1, 3, 8, 8))
    assert base["solver"] == "euler" and base["evaluations"] == 9 and type(base["evaluations"]) is int
    assert odenets.info("lm_resnet20", input_size=(1, 3, 8, 8))["solver"] == "lm"
    ode = odenets.info("preact_resnet20", input_size=(1, 3, 8, 8), solver="dopri5")
    assert ode["solver"] == "dopri5" and ode["continuous_nfe"] >= 6 * 3   # >= one dopri5 step a stage
    assert ode["evaluations"] == 2 + ode["continuous_nfe"]                 # + the two transitions
    status, out, _ = run_cli(capsys, "info", "preact_resnet20", "--solver", "dopri5")
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert status == 0 and lines["solver"] == "dopri5"
    assert "by the continuous flows" in lines["evaluations"] and "depends on the input" in lines["evaluations"]
