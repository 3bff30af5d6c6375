"""benchmarks/lm_to_momentum.py: trained LM k_n -> mass and damping of u'' + gamma u' = f / m,
and the table in docs/momentum.md is what the script prints for the committed runs."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import lm_to_momentum  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def campaign(tmp_path, ks_per_seed, key="abc"):
    runs = [dict(model="lm_resnet20", seed=s, test_acc=0.9, recipe_key=key,
                 coefficients={"stages.0.flow.k": ks}) for s, ks in enumerate(ks_per_seed)]
    runs.append(dict(model="lm_resnet20", seed=9, test_acc=0.1, recipe_key="old",
                     coefficients={"stages.0.flow.k": [0.9, 0.9]}))  # another recipe: left out
    path = tmp_path / "c.json"
    path.write_text(json.dumps(dict(recipe_key=key, runs=runs)))
    return path


def test_mass_and_damping_follow_the_modified_equation(tmp_path):
    runs = lm_to_momentum.load_runs(campaign(tmp_path, [[0.5, 0.0], [0.0, 0.0]]), "lm_resnet20")
    assert [r["seed"] for r in runs] == [0, 1]
    first, second = lm_to_momentum.table_rows(runs, dt=1.0, unused={("stages.0.flow.k", 1)})
    # k = 0.5: m = (1 - k)/2 = 0.25, gamma = (1 + k)/m = 6; k = 0 (ResNet): m = 0.5, gamma = 2
    assert first["mass"] == pytest.approx([0.25, 0.5]) and first["gamma"] == pytest.approx([6.0, 2.0])
    assert first["gamma_at_mean_k"] == pytest.approx(2 * 1.25 / 0.75) and not first["unused"]
    assert second["unused"] and second["flow"] == "stages.0.flow"
    half = lm_to_momentum.table_rows(runs, dt=0.5)[0]  # gamma scales as 1 / dt, m as dt
    assert half["gamma"] == pytest.approx([12.0, 4.0]) and half["mass"] == pytest.approx([0.125, 0.25])
    md = lm_to_momentum.markdown([first, second], runs, "lm_resnet20")
    assert "| stages.0.flow | 0 | +0.250 ± 0.354 | 0.375 ± 0.177 | 4.00 ± 2.83 | [2.00, 6.00] | 3.33 |  |" in md
    assert "k unused (Euler start)" in md.splitlines()[-1]


def test_k_outside_the_stability_interval_is_reported_degenerate(tmp_path):
    runs = lm_to_momentum.load_runs(campaign(tmp_path, [[1.2], [0.1]]), "lm_resnet20")
    (row,) = lm_to_momentum.table_rows(runs)
    assert "gamma" not in row and "+1.200 outside (-1, 1)" in row["degenerate"]
    assert "no heavy-ball form" in lm_to_momentum.markdown([row], runs, "lm_resnet20")
    with pytest.raises(ValueError, match="no runs of 'resnet20'"):
        lm_to_momentum.load_runs(campaign(tmp_path, [[0.1]]), "resnet20")


def test_unused_k_is_the_euler_start_of_stage_0():
    assert lm_to_momentum.unused_coefficients("lm_resnet20") == {("stages.0.flow.k", 0)}


def test_the_docs_table_is_the_scripts_output(tmp_path, capsys):
    doc = tmp_path / "momentum.md"
    doc.write_text((ROOT / "docs" / "momentum.md").read_text())
    assert lm_to_momentum.main(["--doc", str(doc)]) == 0
    table = capsys.readouterr().out.strip()
    assert "stages.2.flow | 1 |" in table
    assert doc.read_text() == (ROOT / "docs" / "momentum.md").read_text(), \
        "docs/momentum.md is stale: run python benchmarks/lm_to_momentum.py --doc docs/momentum.md"
