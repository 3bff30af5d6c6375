"""Pretrained weights without a network: a finished run exported (`odenets export-pretrained`)
into a registry folder loads through odenets.create and timm's create_model, sha256-checked;
a preset without weights names those that have them. The registry folder is a temporary one."""
import json

import pytest
import torch

import odenets
import odenets.pretrained as pretrained
from odenets.train import TrainConfig, train


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", folder)
    return folder


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "run"
    cfg = TrainConfig(model="resnet20", dataset="synthetic", subset=64, test_subset=32,
                      batch_size=32, epochs=1, lr=0.05, progress=False, device="cpu",
                      run_dir=str(run_dir), seed=3)
    train(cfg)
    return run_dir


def test_export_then_create_pretrained_offline(weights_dir, finished_run):
    from odenets.train.model import load_run_model
    path = pretrained.export(finished_run, "resnet20")
    entry = json.loads((weights_dir / "weights.json").read_text())["resnet20"]
    assert path == weights_dir / "resnet20.pt" and entry["seed"] == 3 and entry["epochs"] == 1
    assert entry["sha256"] == pretrained.sha256(path) and entry["test_acc"] is not None
    trained, _, _ = load_run_model(finished_run)
    model = odenets.create("resnet20", pretrained=True).eval()
    x = torch.randn(2, entry["in_channels"], 32, 32)
    torch.testing.assert_close(model(x), trained.eval()(x))
    assert model.pretrained_cfg["test_acc"] == entry["test_acc"]
    assert model.pretrained_cfg["seed"] == 3
    assert odenets.list_models(pretrained=True) == ["resnet20"]
    other = odenets.create("resnet20", pretrained=True, num_classes=7)  # fresh classifier
    assert other.num_classes == 7
    torch.testing.assert_close(other.state_dict()["stem.conv.weight"],
                               model.state_dict()["stem.conv.weight"])


def test_missing_weights_name_the_presets_that_have_them(weights_dir, finished_run):
    with pytest.raises(ValueError, match="presets with weights: none yet"):
        odenets.create("lm_resnet20", pretrained=True)
    pretrained.export(finished_run, "resnet20")
    with pytest.raises(ValueError, match="presets with weights: resnet20"):
        odenets.create("lm_resnet20", pretrained=True)
    with pytest.raises(ValueError, match="not preset 'lm_resnet20'"):
        pretrained.export(finished_run, "lm_resnet20")
    (weights_dir / "resnet20.pt").write_bytes(b"damaged")
    with pytest.raises(ValueError, match="sha256"):
        odenets.create("resnet20", pretrained=True)


def test_cli_and_timm_create_model(weights_dir, finished_run, capsys):
    from odenets.cli import main
    assert main(["export-pretrained", str(finished_run), "--name", "resnet20",
                 "--out", str(weights_dir)]) == 0
    assert "resnet20.pt" in capsys.readouterr().out
    from fixtures.timm_import import import_timm
    timm = import_timm()
    if timm is None:
        pytest.skip("timm does not import")
    odenets.register_timm()
    model = timm.create_model("odenets_resnet20", pretrained=True)
    reference = odenets.create("resnet20", pretrained=True)
    for a, b in zip(model.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b)
