"""Pretrained weights without a network: a finished run exported (`odenets export-pretrained`)
into a registry folder loads through odenets.create and timm's create_model, sha256-checked;
a preset without weights names those that have them. The registry folder is a temporary one."""
import json

import pytest
import torch
import torch.nn.functional as F

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
                      run_dir=str(run_dir), seed=3, amp="off")  # no start-up probe: not under test
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


# -- campaign records (benchmarks/converged.py): <dir>/records/<run>__<key>.json + .pt ------------
RECIPE = dict(dataset="fashion-mnist", epochs=3, batch_size=128, lr=0.2, amp="off")


def fake_campaign(root, model="resnet20", seed=4, summary=True):
    """A campaign folder as the engine leaves it: one record, its weights (a freshly created
    preset for Fashion-MNIST shapes), and the summary ``<dir>.json`` holding the full recipe."""
    from odenets.campaign.records import save_weights, write_json
    torch.manual_seed(seed)
    net = odenets.create(model, in_channels=1, num_classes=10)
    stem = f"{model}__s{seed}__abc123"
    records = root / "converged_cpu" / "records"
    save_weights(records / f"{stem}.pt", net.state_dict())
    write_json(records / f"{stem}.json", dict(
        model=model, seed=seed, test_acc=0.91, val_acc=0.9, epochs=3, recipe="converged",
        recipe_key="abc123", amp_used="fp32", git_commit="eb7003c", git_dirty=False,
        weights=f"{stem}.pt"))
    if summary:
        write_json(root / "converged_cpu.json", dict(recipe=RECIPE, recipe_key="abc123", runs=[]))
    return records / f"{stem}.json", net


def test_export_from_campaign_record_loads_bit_exactly(weights_dir, tmp_path):
    record, net = fake_campaign(tmp_path)
    path = pretrained.export(record, "resnet20")
    entry = pretrained.registry()["resnet20"]
    assert path == weights_dir / "resnet20.pt" and entry["sha256"] == pretrained.sha256(path)
    assert entry["dataset"] == "fashion-mnist" and entry["recipe"] == RECIPE
    assert (entry["num_classes"], entry["in_channels"], entry["model_args"]) == (10, 1, {})
    assert (entry["seed"], entry["test_acc"], entry["val_acc"], entry["epochs"]) == (4, 0.91, 0.9, 3)
    assert (entry["recipe_key"], entry["precision"], entry["git_commit"]) == ("abc123", "fp32", "eb7003c")
    model = odenets.create("resnet20", pretrained=True)
    assert model.stem.conv.in_channels == 1 and model.num_classes == 10
    expected = net.state_dict()
    assert model.state_dict().keys() == expected.keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert model.pretrained_cfg["recipe_key"] == "abc123" and model.pretrained_cfg["val_acc"] == 0.9


def test_export_from_record_errors(weights_dir, tmp_path, capsys):
    from odenets.cli import main
    record, _ = fake_campaign(tmp_path)
    with pytest.raises(ValueError, match="record of model 'resnet20', not preset 'lm_resnet20'"):
        pretrained.export(record, "lm_resnet20")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable campaign record"):
        pretrained.export(bad, "resnet20")
    torch.save(["not", "a", "state dict"], tmp_path / "list.pt")
    (tmp_path / "list.pt").replace(record.with_suffix(".pt"))
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        pretrained.export(record, "resnet20")
    record.with_suffix(".pt").write_bytes(b"damaged")
    with pytest.raises(ValueError, match="not a readable weights file"):
        pretrained.export(record, "resnet20")
    record.with_suffix(".pt").rename(tmp_path / "elsewhere.pt")
    assert main(["export-pretrained", str(record), "--name", "resnet20"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("odenets export-pretrained: error: ") and "are missing" in err
    assert "\n" not in err and not (weights_dir / "weights.json").exists()
    # weights of another shape (3 input channels) never reach the registry
    other = tmp_path / "other"
    record, _ = fake_campaign(other)
    torch.save(odenets.create("resnet20").state_dict(), record.with_suffix(".pt"))
    with pytest.raises(ValueError, match="does not fit preset 'resnet20' built for fashion-mnist"):
        pretrained.export(record, "resnet20")
    assert not (weights_dir / "weights.json").exists()


def test_export_from_record_without_summary_needs_recipe_json(weights_dir, tmp_path, capsys):
    from odenets.cli import main
    record, _ = fake_campaign(tmp_path, summary=False)
    with pytest.raises(FileNotFoundError, match="pass --recipe-json"):
        pretrained.export(record, "resnet20")
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(RECIPE))
    assert main(["export-pretrained", str(record), "--name", "resnet20",
                 "--recipe-json", str(recipe)]) == 0
    assert pretrained.registry()["resnet20"]["recipe"] == RECIPE
    recipe.write_text(json.dumps(dict(recipe=RECIPE, recipe_key="other")))  # another campaign's
    with pytest.raises(ValueError, match="recipe key 'other'.*not its recipe"):
        pretrained.export(record, "resnet20", recipe_json=recipe)


def test_eval_pretrained_without_a_run(weights_dir, tmp_path, capsys):
    from odenets import data
    from odenets.cli import main
    record, net = fake_campaign(tmp_path)
    pretrained.export(record, "resnet20")
    args = ["eval", "--pretrained", "resnet20", "--subset", "64", "--device", "cpu", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pretrained"] == "resnet20" and result["images"] == 64 and result["epoch"] == 3
    split = data.load_dataset("fashion-mnist", "test", None, 64)  # the same subset, by hand
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (split.mean, split.std))
    with torch.no_grad():
        out = net.eval()((split.images.float() / 255 - mean) / std)
    assert result["acc"] == (out.argmax(1) == split.labels).float().mean().item()
    assert result["loss"] == pytest.approx(F.cross_entropy(out, split.labels).item(), rel=1e-4)
    assert main(args + ["--solver", "rk4"]) == 0  # re-solved on the same path as run dirs
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["solver"] == "rk4" and resolved["images"] == 64
    assert main(["eval", "--pretrained", "resnet20", "--subset", "64", "--device", "cpu"]) == 0
    assert "resnet20 pretrained (3 epochs) on fashion-mnist test" in capsys.readouterr().out


def test_eval_needs_exactly_one_of_run_dir_and_pretrained(weights_dir, tmp_path, capsys):
    from odenets.cli import main
    for args in (["eval"], ["eval", str(tmp_path), "--pretrained", "resnet20"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "give a run directory or --pretrained NAME, exactly one" in err
    assert main(["eval", "--pretrained", "lm_resnet20"]) == 2
    assert "no pretrained weights for 'lm_resnet20'" in capsys.readouterr().err


@pytest.mark.parametrize("name", pretrained.available())
def test_shipped_weights_are_trained_and_say_what_they_are(name):
    """Every shipped file loads offline (sha256 checked), its cfg names dataset, recipe, seed and
    test accuracy, and it classifies real Fashion-MNIST test images (fp32, eager) near that
    accuracy: a file that is untrained, damaged or built for other shapes fails here."""
    from odenets import data as datasets
    model = odenets.create(name, pretrained=True).eval()
    cfg = model.pretrained_cfg
    assert cfg["dataset"] == "fashion-mnist" and cfg["recipe"]["epochs"] >= 10
    assert isinstance(cfg["seed"], int) and 0.9 < cfg["test_acc"] <= 1.0
    loader = datasets.Loader(datasets.load_dataset("fashion-mnist", "test").subset(1000), 500,
                             train=False)
    correct = total = 0
    with torch.no_grad():
        for xb, yb in loader.epoch(0):
            correct += (model(xb).argmax(1) == yb).sum().item()
            total += len(yb)
    assert total == 1000 and correct / total > cfg["test_acc"] - 0.03
