"""benchmarks/family.py: exact paired p-values, Holm's correction, the scheme table's baselines,
the seeds still needed, and the report files."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _stats  # noqa: E402
import family  # noqa: E402


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 8, 13])
@pytest.mark.parametrize("t", [0.0, 0.4, 1.0, 2.2, 4.302653, 9.0])
def test_t_p_value_is_exact(df, t):
    stats = pytest.importorskip("scipy.stats")
    assert _stats.t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), abs=1e-12)


def test_t_p_value_at_the_95_quantile():
    assert _stats.t_two_sided_p(4.302653, 2) == pytest.approx(0.05, abs=1e-6)
    with pytest.raises(ValueError, match="degrees of freedom"):
        _stats.t_two_sided_p(1.0, 0)


def test_holm_steps_down_and_keeps_order():
    adj = _stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert adj == {"a": pytest.approx(0.03), "c": pytest.approx(0.06), "b": pytest.approx(0.06),
                   "d": None}
    assert _stats.holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}


def _payload(acc: dict) -> dict:
    runs = [dict(model=m, seed=s, test_acc=a, seconds=600.0, recipe_key="k", device="cpu", threads=1)
            for m, per_seed in acc.items() for s, a in per_seed.items()]
    runs.append(dict(model="resnet20", seed=9, test_acc=0.1, seconds=1.0, recipe_key="other"))
    meta = {m: dict(params=1000, evaluations=9) for m in acc}
    return dict(runs=runs, recipe_key="k", recipe=dict(dataset="fashion-mnist"), meta=meta)


def test_scheme_table_pairs_and_corrects():
    payload = _payload({"resnet20": {0: 0.930, 1: 0.931, 2: 0.929},
                        "lm_resnet20": {0: 0.935, 1: 0.937, 2: 0.934},
                        "preact_resnet20": {0: 0.920, 1: 0.921, 2: 0.919},
                        "lm_preact_resnet20": {0: 0.921, 1: 0.920, 2: 0.921}})
    rows = {r["model"]: r for r in family.scheme_table(payload)}
    assert rows["resnet20"]["comparison"] is None and rows["resnet20"]["test_acc"]["n"] == 3
    assert rows["lm_preact_resnet20"]["comparison"]["a"] == "preact_resnet20"
    assert rows["preact_resnet20"]["comparison"]["a"] == "resnet20"
    lm = rows["lm_resnet20"]["comparison"]
    assert lm["diffs"] == pytest.approx([0.005, 0.006, 0.005])
    assert lm["p_holm"] >= lm["p"] and "lm_resnet20 better" in lm["verdict"]
    # within 0.3 points after 3 seeds: 5 wanted; the baseline follows the largest need
    assert rows["lm_preact_resnet20"]["seeds_needed"] == 5
    missing = family.missing_runs(payload)
    assert missing["lm_preact_resnet20"] == [3, 4] and missing["resnet20"] == [3, 4]
    assert "lm_resnet20" not in missing and missing["rk4_resnet20"] == [0, 1, 2]
    assert family.continue_command(missing).split()[3].startswith("resnet20,")
    # the command keeps the campaign's precision (its runs pair only with runs of the same one)
    assert family.build(payload)["continue"].endswith("--amp off")
    assert family.build(payload)["precision"] == "fp32"
    payload["recipe"]["amp"] = "bf16"
    assert family.build(payload)["continue"].endswith("--amp bf16")
    assert "in bf16" in family.markdown(family.build(payload))


def test_zero_variance_difference_is_not_called_significant():
    payload = _payload({"resnet20": {0: 0.93, 1: 0.93}, "sd_resnet20": {0: 0.94, 1: 0.94}})
    row = [r for r in family.scheme_table(payload) if r["model"] == "sd_resnet20"][0]
    assert row["comparison"]["verdict"].startswith("identical on every seed (n=2)")


def test_report_files(tmp_path):
    payload = _payload({"resnet20": {0: 0.930, 1: 0.931}, "lm_resnet20": {0: 0.933, 1: 0.932},
                        "resnet32": {0: 0.935}, "lm_resnet32": {0: 0.936}})
    src = tmp_path / "converged_cpu.json"
    src.write_text(json.dumps(payload))
    assert family.main(["--campaign", str(src), "--out-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "family_cpu.json").read_text())
    assert [s["depth"] for s in report["depth"]] == [20, 32]
    assert report["depth"][1]["comparison"]["verdict"] == "n=1: no interval yet"
    text = (tmp_path / "family_cpu.md").read_text()
    assert "| lm_resnet20 |" in text and "Still to run" in text
    for name in report["plots"]:
        assert (tmp_path / name).stat().st_size > 10_000


def test_precision_check_pairs_fp32_and_bf16_runs_by_seed(tmp_path):
    import precision
    fp32 = _payload({"resnet20": {0: 0.930, 1: 0.931, 2: 0.929, 3: 0.930}})
    bf16 = _payload({"resnet20": {0: 0.931, 1: 0.931, 2: 0.930},
                     "lm_resnet20": {0: 0.93}})  # not in the fp32 campaign: no row
    (row,) = precision.compare(fp32, bf16)
    assert row["comparison"]["seeds"] == [0, 1, 2] and row["comparison"]["n"] == 3
    assert row["comparison"]["mean_diff"] == pytest.approx(0.0006667, abs=1e-6)
    assert row["rule"] == "keeps accuracy"
    bf16["runs"] = [dict(r, test_acc=r["test_acc"] - 0.01) for r in bf16["runs"]]
    assert precision.compare(fp32, bf16)[0]["rule"] == "costs accuracy"
    bf16["runs"] = [r for r in bf16["runs"] if r["seed"] == 0]
    assert precision.compare(fp32, bf16)[0]["rule"].startswith("undecided (n=1")
    (tmp_path / "converged_cpu.json").write_text(json.dumps(fp32))
    (tmp_path / "converged_bf16_cpu.json").write_text(json.dumps(bf16))
    assert precision.main(["--out-dir", str(tmp_path)]) == 0
    assert "| resnet20 | 1 |" in (tmp_path / "precision_cpu.md").read_text()
