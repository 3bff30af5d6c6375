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


def test_tiny_config_runs_records_and_resumes(monkeypatch, tmp_path):
    args = ["--config", "tiny", "--dataset", "synthetic", "--out-dir", str(tmp_path)]
    assert momentum_flows.main(args + ["--seeds", "0", "--epochs", "1"]) == 0
    path = tmp_path / "momentum_flows_tiny_cpu.json"
    runs = json.loads(path.read_text())["runs"]
    assert [r["model"] for r in runs] == ["ode_resnet20", "hbode_resnet20"]
    for r in runs:  # adjoint on by default: both directions evaluate the fields
        assert r["nfe_forward"][-1] > 0 and r["nfe_backward"][-1] > 0, r
        assert 0.0 <= r["test_acc"] <= 1.0 and r["git_commit"]
    assert runs[0]["damping"] == [] and len(runs[1]["damping"]) == 3
    assert all(g[0] > 0 for g in runs[1]["damping"])

    monkeypatch.setattr(momentum_flows, "train_run",
                        lambda m, s, r, o: pytest.fail(f"finished run {m} seed {s} retrained"))
    momentum_flows.main(args + ["--seeds", "0", "--epochs", "1"])  # nothing left to train
    monkeypatch.setattr(momentum_flows, "train_run", fake_run)
    momentum_flows.main(args + ["--seeds", "0-2", "--epochs", "1"])
    saved = json.loads(path.read_text())
    assert len(saved["runs"]) == 6
    acc = next(c for c in saved["comparisons"] if c["metric"] == "test_acc")
    assert (acc["a"], acc["b"], acc["n"]) == ("ode_resnet20", "hbode_resnet20", 3)
    lines = saved["anchor_verdict"]
    assert len(lines) == 4 and lines[0].startswith("forward NFE/step: momentum/plain")
    md = (tmp_path / "momentum_flows_tiny_cpu.md").read_text()
    assert "Against the anchor" in md and "hbode_resnet20" in md
