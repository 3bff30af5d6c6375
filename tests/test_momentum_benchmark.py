"""benchmarks/momentum_flows.py: the tiny configuration trains both presets, records NFE per
step, the learned damping and the anchor verdict, and a rerun skips finished runs."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import momentum_flows  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def fake_run(model, seed, recipe, options):
    hb = model.startswith("hb")
    return dict(model=model, seed=seed, test_acc=0.5 + 0.001 * seed + (0.02 if hb else 0.0),
                val_acc=None, best_test_acc=0.6, epochs=1, seconds=60.0 * (1 if hb else 2),
                train_seconds=1.0, params=1, damping=[[0.4], [0.5], [0.6]] if hb else [],
                nfe_forward=[20.0 if hb else 30.0], nfe_backward=[25.0 if hb else 70.0 + seed],
                curve=[])


def test_tiny_config_trains_both_presets_and_records_each_run(tmp_path):
    args = ["--config", "tiny", "--dataset", "synthetic", "--out-dir", str(tmp_path), "--seeds",
            "0", "--rtol", "1e-2", "--atol", "1e-2"]
    assert momentum_flows.main(args) == 0
    runs = json.loads((tmp_path / "momentum_flows_tiny_cpu.json").read_text())["runs"]
    assert [r["model"] for r in runs] == ["ode_resnet20", "hbode_resnet20"]
    for r in runs:  # adjoint on by default: both directions evaluate the fields
        assert r["nfe_forward"][-1] > 0 and r["nfe_backward"][-1] > 0, r
        assert 0.0 <= r["test_acc"] <= 1.0 and r["git_commit"]
    assert runs[0]["damping"] == [] and len(runs[1]["damping"]) == 3
    assert all(g[0] > 0 for g in runs[1]["damping"])
    assert "Against the anchor" in (tmp_path / "momentum_flows_tiny_cpu.md").read_text()


def test_campaign_resumes_and_states_the_anchor_verdict(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(momentum_flows, "train_run",
                        lambda m, s, r, o: calls.append((m, s)) or fake_run(m, s, r, o))
    args = ["--config", "tiny", "--dataset", "synthetic", "--out-dir", str(tmp_path)]
    momentum_flows.main(args + ["--seeds", "0"])
    momentum_flows.main(args + ["--seeds", "0-2"])  # seed 0 is done: only seeds 1 and 2 train
    assert calls == [(m, s) for s in range(3) for m in ("ode_resnet20", "hbode_resnet20")]
    saved = json.loads((tmp_path / "momentum_flows_tiny_cpu.json").read_text())
    assert len(saved["runs"]) == 6
    acc = next(c for c in saved["comparisons"] if c["metric"] == "test_acc")
    assert (acc["a"], acc["b"], acc["n"]) == ("ode_resnet20", "hbode_resnet20", 3)
    assert acc["mean_diff"] == pytest.approx(0.02)
    lines = saved["anchor_verdict"]
    assert len(lines) == 4
    assert lines[0] == ("forward NFE/step: momentum/plain = 0.67 here (20.0 vs 30.0; identical on "
                        "every seed (n=3)), 0.87 in the anchor: same direction")
    assert lines[3].startswith("test accuracy: momentum - plain = +2.00 points here (identical "
                               "on every seed (n=3)), +6.6 in the anchor: same direction")
    md = (tmp_path / "momentum_flows_tiny_cpu.md").read_text()
    assert "Against the anchor" in md and "0.40, 0.50, 0.60" in md


def test_anchor_verdict_pairs_seeds(monkeypatch, tmp_path):
    # a plain run without its momentum partner must not enter the ratios or the difference
    monkeypatch.setattr(momentum_flows, "train_run", fake_run)
    args = ["--config", "tiny", "--dataset", "synthetic", "--out-dir", str(tmp_path)]
    momentum_flows.main(args + ["--seeds", "0"])
    momentum_flows.main(args + ["--seeds", "1", "--models", "ode_resnet20"])
    path = tmp_path / "momentum_flows_tiny_cpu.json"
    saved = json.loads(path.read_text())
    saved["runs"][-1].update(test_acc=0.0, nfe_forward=[90.0])  # an outlier of the unpaired seed
    momentum_flows.summarise(saved, ["ode_resnet20", "hbode_resnet20"], saved["recipe_key"])
    lines = saved["anchor_verdict"]
    assert lines[0].startswith("forward NFE/step: momentum/plain = 0.67 here (20.0 vs 30.0; one "
                               "seed, no interval)")
    assert lines[3].startswith("test accuracy: momentum - plain = +2.00 points here (one seed, "
                               "no interval)")
    assert "finished, 0):" in momentum_flows.markdown(saved)  # no Python list


def test_pilot_config_cuts_the_converged_recipe_and_writes_its_own_file(monkeypatch, tmp_path):
    pilot = momentum_flows.make_recipe("pilot", "fashion-mnist")
    converged = momentum_flows.make_recipe("converged", "fashion-mnist")
    assert (pilot.epochs, pilot.subset, pilot.test_subset, pilot.val_split) == (2, 5120, 2000, 1000)
    assert (converged.epochs, converged.subset, converged.val_split) == (10, None, 5000)
    assert not pilot.compile and not converged.compile
    for key in ("lr", "batch_size", "schedule", "weight_decay", "label_smoothing"):
        assert getattr(pilot, key) == getattr(converged, key), key  # the converged recipe, cut
    assert momentum_flows.make_recipe("pilot", "fashion-mnist", subset=256, epochs=None).subset == 256
    monkeypatch.setattr(momentum_flows, "train_run", fake_run)
    momentum_flows.main(["--config", "pilot", "--dataset", "synthetic", "--out-dir", str(tmp_path),
                         "--seeds", "0"])
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["momentum_flows_pilot_cpu.json"]
    with pytest.raises(ValueError, match="unknown configuration 'fast'; available: converged, pilot"):
        momentum_flows.make_recipe("fast", "fashion-mnist")
