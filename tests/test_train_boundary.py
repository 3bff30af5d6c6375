"""Validate once, at the boundary: on its way to the first training step, ``odenets train`` (and
``odenets.train.train``) checks the config once and looks the dataset name up once; what runs
after the boundary trusts the validated config."""
import collections

import pytest

import odenets.data
from odenets import cli
from odenets.data import registry
from odenets.train import TrainConfig, loop, train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--model", "fixtures.tiny_models:tiny", "--dataset", "synthetic", "--subset", "256",
        "--test-subset", "128", "--batch-size", "32", "--no-progress"]


@pytest.fixture
def calls(monkeypatch):
    """Counts of `TrainConfig.validate` ('config') and of dataset-name look-ups ('dataset':
    `get_spec`, wherever it is called from)."""
    counts = collections.Counter()

    def count(kind, owner, name):
        real = getattr(owner, name)

        def counted(*args, **kwargs):
            counts[kind] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(owner, name, counted)

    count("config", TrainConfig, "validate")
    count("dataset", registry, "get_spec")
    count("dataset", odenets.data, "get_spec")
    return counts


def test_cli_validates_config_and_dataset_once(calls, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "1", "--run-dir", str(run)]) == 0
    assert "test accuracy" in capsys.readouterr().out  # it trained
    assert (calls["config"], calls["dataset"]) == (1, 1)
    calls.clear()  # --resume: the run's config.json is checked as it is read, then the merged config
    assert cli.main(["train", "--resume", str(run), "--epochs", "2", "--trust-run-code"]) == 0
    assert "after 2 epochs" in capsys.readouterr().out
    assert (calls["config"], calls["dataset"]) == (2, 1)


def test_train_validates_config_and_dataset_once(calls, tmp_path):
    cfg = TrainConfig(model="fixtures.tiny_models:tiny", dataset="synthetic", subset=256,
                      test_subset=128, batch_size=32, epochs=1, progress=False,
                      run_dir=str(tmp_path / "run"))
    assert train(cfg)["epochs_done"] == 1
    assert (calls["config"], calls["dataset"]) == (1, 1)


def test_train_checks_names_before_reading_data(tmp_path, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("data were read before the names were checked")

    monkeypatch.setattr(odenets.data, "load_dataset", no_data)
    for bad, expected in ((dict(model="lm_resnet2"), "unknown model 'lm_resnet2'"),
                          (dict(solver="eulr"), "unknown solver 'eulr'"),
                          (dict(dataset="synthetc"), "unknown dataset 'synthetc'")):
        cfg = TrainConfig(**{"dataset": "synthetic", **bad, "run_dir": str(tmp_path / "run")})
        with pytest.raises(ValueError, match=expected):
            train(cfg)
    assert not (tmp_path / "run").exists()


def test_train_validated_trusts_its_config(calls, tmp_path):
    """After the boundary nothing checks again: `train_validated` with the spec `validate`
    returned runs without calling either check."""
    cfg = TrainConfig(model="fixtures.tiny_models:tiny", dataset="synthetic", subset=256,
                      test_subset=128, batch_size=32, epochs=1, progress=False,
                      run_dir=str(tmp_path / "run"))
    spec = loop.validate(cfg)
    calls.clear()
    assert loop.train_validated(cfg, spec)["epochs_done"] == 1
    assert (calls["config"], calls["dataset"]) == (0, 0)
