"""Converged, paired-seed comparisons: confidence intervals, paired initial weights, the
validation split, named recipes and the resumable campaign file."""
import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _stats  # noqa: E402
import converged  # noqa: E402

import odenets  # noqa: E402
from odenets import data as datasets  # noqa: E402
from odenets.train import TrainConfig, train  # noqa: E402
from odenets.train.config import add_arguments, config_from_args  # noqa: E402
from odenets.train.recipes import RECIPES  # noqa: E402


# ---- statistics ---------------------------------------------------------------------------------
def test_mean_ci_is_the_student_t_interval():
    s = _stats.mean_ci([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0 and s["n"] == 3
    half = 4.302653 / 3 ** 0.5
    assert s["ci95"] == pytest.approx([2 - half, 2 + half])
    assert _stats.mean_ci([0.5])["ci95"] == [None, None]
    assert _stats.t975(4) == pytest.approx(2.776445, abs=1e-6)


def test_paired_differences_use_common_seeds_only():
    cmp = _stats.paired({0: 0.90, 1: 0.91, 2: 0.92}, {0: 0.91, 1: 0.93, 5: 0.5}, "resnet20", "lm")
    assert cmp["seeds"] == [0, 1] and cmp["diffs"] == pytest.approx([0.01, 0.02])
    assert cmp["mean_diff"] == pytest.approx(0.015)
    assert cmp["ci95"][0] < 0.015 < cmp["ci95"][1]


def test_verdict_says_whether_the_interval_excludes_zero():
    same = _stats.paired({s: 0.9 for s in range(5)}, {s: 0.9 + (0.001 if s % 2 else -0.001) for s in range(5)},
                         "resnet20", "lm_resnet20")
    line = _stats.verdict(same)
    assert line.startswith("lm_resnet20 − resnet20 = -0.02 points, 95% CI [") and "not significant at n=5" in line
    better = _stats.paired({s: 0.90 for s in range(5)}, {s: 0.91 + 0.001 * s for s in range(5)}, "a", "b")
    assert _stats.significant(better) and "significant at n=5 (b better)" in _stats.verdict(better)
    assert "n=1" in _stats.verdict(_stats.paired({0: 0.9}, {0: 0.95}, "a", "b"))


# ---- paired initial weights ---------------------------------------------------------------------
@pytest.mark.parametrize("other", ["lm_resnet20", "lmm3_resnet20", "sd_resnet20"])
def test_same_seed_gives_the_same_initial_weights_to_shared_parts(other):
    torch.manual_seed(3)
    a = odenets.create("resnet20", num_classes=10, in_channels=1).state_dict()
    torch.manual_seed(3)
    b = odenets.create(other, num_classes=10, in_channels=1).state_dict()
    shared = [k for k in a if k in b]
    assert len(shared) == len(a)
    assert all(torch.equal(a[k], b[k]) for k in shared)
    torch.manual_seed(4)
    c = odenets.create("resnet20", num_classes=10, in_channels=1).state_dict()
    assert not torch.equal(a["stem.conv.weight"], c["stem.conv.weight"])


# ---- validation split ---------------------------------------------------------------------------
def test_split_holds_out_a_fixed_disjoint_set():
    data = datasets.load_dataset("synthetic", "train")
    rest, held = data.split(50)
    rest2, held2 = data.split(50)
    assert len(held) == 50 and len(rest) == len(data) - 50
    assert torch.equal(held.images, held2.images) and torch.equal(rest.labels, rest2.labels)
    rows = {tuple(x.flatten().tolist()) for x in held.images}
    assert not any(tuple(x.flatten().tolist()) in rows for x in rest.images[:200])
    with pytest.raises(ValueError, match="validation split must lie in"):
        data.split(len(data))


def test_training_with_a_validation_split_records_and_selects_on_it(tmp_path):
    cfg = TrainConfig(model="resnet20", dataset="synthetic", subset=64, test_subset=32, val_split=40,
                      epochs=2, batch_size=32, progress=False, run_dir=str(tmp_path / "r"),
                      amp="off")  # no start-up probe: not under test
    summary = train(cfg)
    assert summary["val_images"] == 40 and summary["train_images"] == 64
    assert all("val_acc" in r for r in summary["history"])
    best = max(summary["history"], key=lambda r: r["val_acc"])
    assert summary["best_epoch"] == best["epoch"] and summary["best_val_acc"] == best["val_acc"]
    assert "best_test_acc" not in summary  # nothing is chosen on the test set


def test_val_split_is_validated():
    with pytest.raises(ValueError, match="val_split must be an integer >= 0"):
        TrainConfig(val_split=-1).validate()


# ---- recipes ------------------------------------------------------------------------------------
def parse(argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


def test_recipe_sets_values_and_flags_win():
    cfg = config_from_args(parse(["--recipe", "converged", "--epochs", "3"]))
    assert cfg.epochs == 3 and cfg.recipe == "converged"
    for key, value in RECIPES["converged"].items():
        if key != "epochs":
            assert getattr(cfg, key) == value, key
    with pytest.raises(ValueError, match="unknown recipe 'fast'; available: converged, long, paper"):
        config_from_args(parse(["--recipe", "fast"]))


# ---- the campaign ---------------------------------------------------------------------------------
def fake_row(name, seed):
    acc = 0.90 + 0.001 * seed + (0.002 if name.startswith("lm") else 0.0)
    return dict(test_acc=acc, val_acc=acc - 0.01, epochs=1, train_images=64, train_seconds=1.0,
                img_per_s=64.0, params=1, coefficients={}, curve=[]), None


def test_campaign_accumulates_and_skips_finished_runs(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(converged, "train_one", lambda n, s, r, **kw: calls.append((n, s)) or fake_row(n, s))
    monkeypatch.setattr(converged, "model_meta", lambda n, d: dict(params=1))
    args = ["--config", "tiny", "--dataset", "synthetic", "--out-dir", str(tmp_path), "--amp", "off"]
    converged.main(args + ["--seeds", "0-1"])
    assert calls == [("resnet20", 0), ("lm_resnet20", 0), ("resnet20", 1), ("lm_resnet20", 1)]
    converged.main(args + ["--seeds", "0-2"])  # seeds 0 and 1 are done: only seed 2 trains
    assert calls[4:] == [("resnet20", 2), ("lm_resnet20", 2)]
    saved = json.loads((tmp_path / "converged_tiny_cpu.json").read_text())
    assert len(saved["runs"]) == 6
    for key in ("model", "seed", "test_acc", "val_acc", "epochs", "train_images", "seconds",
                "recipe", "git_commit"):
        assert key in saved["runs"][0], key
    (cmp,) = saved["comparisons"]
    assert (cmp["a"], cmp["b"], cmp["n"]) == ("resnet20", "lm_resnet20", 3)
    assert cmp["mean_diff"] == pytest.approx(0.002) and len(cmp["ci95"]) == 2
    md = (tmp_path / "converged_tiny_cpu.md").read_text()
    assert "lm_resnet20 − resnet20 = +0.20 points" in md
    assert (tmp_path / "converged_tiny_cpu_paired.png").exists()
    # the report leads with it (tiny files are skipped: renamed as a committed result would be)
    (tmp_path / "converged_cpu.json").write_text((tmp_path / "converged_tiny_cpu.json").read_text())
    import report
    assert "Converged, paired-seed comparison" in report.build_report(tmp_path)
    section = report.readme_section(tmp_path)
    assert section.index("**Converged, paired seeds, fp32**") < section.index("The paper's numbers")
    assert "- lm_resnet20 − resnet20 = +0.20 points" in section


def test_campaign_resolves_auto_precision_once_and_keys_it(monkeypatch, tmp_path):
    """amp='auto' is resolved by one probe for the whole campaign; the precision is in the
    recipe key, and a bf16 campaign has its own file, so no pair mixes two precisions."""
    from odenets.train import probe
    probed, amps = [], []
    monkeypatch.setattr(probe, "probe", lambda net, cfg, shape, k, dev, *a:
                        probed.append((type(net).__name__, cfg.amp, shape)) or
                        (dict(amp="bf16", compile=False, probe={}), net))
    monkeypatch.setattr(converged, "train_one",
                        lambda n, s, r, **kw: amps.append(r.amp) or fake_row(n, s))
    monkeypatch.setattr(converged, "model_meta", lambda n, d: dict(params=1))
    args = ["--config", "tiny", "--dataset", "synthetic", "--out-dir", str(tmp_path), "--seeds", "0"]
    converged.main(args)
    assert len(probed) == 1 and probed[0][1] == "auto" and probed[0][2][0] == 32
    assert amps == ["bf16", "bf16"]
    bf16 = json.loads((tmp_path / "converged_tiny_bf16_cpu.json").read_text())
    assert bf16["recipe"]["amp"] == "bf16" and not (tmp_path / "converged_tiny_cpu.json").exists()
    converged.main(args + ["--amp", "off"])  # explicit: no probe, the fp32 file, another key
    assert len(probed) == 1 and amps[2:] == ["off", "off"]
    fp32 = json.loads((tmp_path / "converged_tiny_cpu.json").read_text())
    assert fp32["recipe_key"] != bf16["recipe_key"] and len(fp32["runs"]) == 2


def test_campaign_baselines_pair_each_scheme_with_its_depth():
    models = ["resnet20", "lm_resnet20", "resnet32", "lm_resnet32", "lmm3_resnet20"]
    assert [converged.pair_baseline(m, models) for m in models] == \
        [None, "resnet20", None, "resnet32", "resnet20"]
    assert converged.parse_seeds("0-2,5") == [0, 1, 2, 5]


def test_preact_schemes_pair_with_their_preact_baseline():
    models = ["resnet20", "lm_resnet20", "preact_resnet20", "lm_preact_resnet20"]
    assert [converged.pair_baseline(m, models) for m in models] == \
        [None, "resnet20", "resnet20", "preact_resnet20"]
    # without preact_resnet20 in the list, lm_preact_resnet20 falls back to resnet20
    assert converged.pair_baseline("lm_preact_resnet20", ["resnet20", "lm_preact_resnet20"]) == "resnet20"
    assert converged.pair_baseline("resnet32", ["resnet20", "resnet32"]) is None
