"""The long recipe (issue 22, item 5): the converged recipe with another length and recipe
key, in result files of its own that never enter the 10-epoch tables."""
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import converged  # noqa: E402
import report  # noqa: E402
from _campaign import recipe_key  # noqa: E402
from _train_common import Recipe  # noqa: E402

from odenets.train.recipes import RECIPES  # noqa: E402


def test_the_long_recipe_is_converged_with_another_length_and_key():
    assert {k: v for k, v in RECIPES["long"].items() if k != "epochs"} == \
        {k: v for k, v in RECIPES["converged"].items() if k != "epochs"}
    assert RECIPES["long"]["epochs"] > RECIPES["converged"]["epochs"]
    long, short = Recipe.preset("long").to_dict(), Recipe.preset("converged").to_dict()
    assert {k for k in long if long[k] != short[k]} == {"epochs"}
    assert recipe_key(long) != recipe_key(short)


def test_a_long_campaign_has_its_own_files_and_no_family_table(tmp_path, monkeypatch):
    trained = []

    def fake(name, seed, recipe, **kw):
        trained.append(recipe.epochs)
        return dict(test_acc=0.9, val_acc=0.9, epochs=recipe.epochs, train_images=64,
                    train_seconds=1.0, img_per_s=64.0, params=1, coefficients={}, curve=[]), None
    monkeypatch.setattr(converged, "train_one", fake)
    monkeypatch.setattr(converged, "model_meta", lambda n, d: dict(params=1))
    converged.main(["--config", "long", "--dataset", "synthetic", "--amp", "off", "--models",
                    "resnet20,lm_resnet20", "--seeds", "0", "--out-dir", str(tmp_path)])
    assert trained == [60, 60]
    saved = json.loads((tmp_path / "converged_long_cpu.json").read_text())
    assert saved["recipe_name"] == "long" and saved["recipe"]["epochs"] == 60
    assert len(saved["runs"]) == 2 and {r["recipe"] for r in saved["runs"]} == {"long"}
    assert not (tmp_path / "converged_cpu.json").exists()
    assert not list(tmp_path.glob("family_*"))  # the scheme table reads 10-epoch runs only
    (tmp_path / "converged_cpu.json").write_text((BENCH / "results" / "converged_cpu.json").read_text())
    readme = report.readme_section(tmp_path)
    short, long = readme.index("**Converged, paired seeds, fp32**"), readme.index("**Long recipe (60 epochs)")
    assert short < long and readme.count("recipe `long`") == 1  # its own block, after the 10-epoch one
