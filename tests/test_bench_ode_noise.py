"""The cross-solver ("is it an ODE?") and noise-injection benchmarks in tiny configurations:
well-formed results, resumable records, paired comparisons, verdicts."""
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import cross_solver  # noqa: E402
import sde_noise  # noqa: E402

from odenets import cli  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
CROSS = ["--config", "tiny", "--dataset", "synthetic", "--train-steps", "1", "--eval-steps", "1,3",
         "--eval-solvers", "euler,rk4", "--eval-subset", "32", "--amp", "off"]  # no per-run amp probe


def test_cross_solver_tiny_and_resumable(tmp_path, capsys):
    out = cross_solver.main([*CROSS, "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "cross_solver_tiny_cpu.json").read_text())
    assert saved["runs"] == out["runs"] and not saved["partial"]
    (run,) = saved["runs"]
    assert run["train_steps"] == 1 and set(run["eval"]) == {"euler", "rk4"}
    assert set(run["eval"]["rk4"]) == {"1", "3"}
    assert run["eval"]["euler"]["1"] == run["trained_acc"]  # the training grid itself
    assert saved["summary"]["1"]["finest"] == dict(solver="rk4", steps="3", acc=run["eval"]["rk4"]["3"])
    assert saved["verdict"].startswith("Verdict")
    assert (tmp_path / saved["plots"][0]).stat().st_size > 1000
    assert "| 1 | 1 |" in (tmp_path / "cross_solver_tiny_cpu.md").read_text()
    capsys.readouterr()
    # resumable: the same command trains nothing; two K values add only the new one
    again = cross_solver.main([*CROSS, "--out-dir", str(tmp_path)])
    assert again["runs"] == saved["runs"] and "skipped" in capsys.readouterr().out
    more = cross_solver.main([*CROSS[:4], "--train-steps", "1,2", *CROSS[6:], "--out-dir", str(tmp_path)])
    assert [r["train_steps"] for r in more["runs"]] == [1, 2] and more["runs"][0] == run
    with pytest.raises(ValueError, match="another setup.*eval_steps"):
        cross_solver.main([*CROSS[:6], "--eval-steps", "1,2", *CROSS[8:], "--out-dir", str(tmp_path)])
    # odenets bench cross reaches the script
    assert cli.main(["bench", "cross", *CROSS, "--out-dir", str(tmp_path)]) == 0


def test_cross_solver_verdicts():
    def summary(**drops):  # K -> points lost at the finest grid
        return {k[1:]: dict(trained=dict(mean=0.9, n=1), finest=dict(acc=0.9 - d / 100, solver="rk4", steps="64"),
                            drop_points=d, kind=cross_solver._kind(d, 0.9, 0.1)) for k, d in drops.items()}
    text = cross_solver.verdict(summary(k1=30.0, k16=0.5), "euler")
    assert "Coarse training grids (K = 1) collapse" in text and "consistent with Ott et al." in text
    assert "K=1 (n=1, no interval): 90.0%" in text and "[" not in text and "report" not in text
    assert "Every trained network behaves as an ODE" in cross_solver.verdict(summary(k4=1.0, k16=0.0), "euler")
    assert cross_solver._kind(0.0, 0.12, 0.1) == "untrained"
    with pytest.raises(ValueError, match="unknown fixed-grid scheme 'dopri5'"):
        cross_solver.main([*CROSS[:8], "--eval-solvers", "euler,dopri5"])


def sde_args(out_dir, seeds="0"):
    return ["--config", "tiny", "--dataset", "synthetic", "--seeds", seeds, "--variants",
            "gauss_add_0.1", "--additive-sigmas", "0.1", "--input-noise", "0,0.2",
            "--attack-eps", "0.05", "--pgd-steps", "2", "--attack-subset", "16", "--sd-samples",
            "0", "--amp", "off", "--out-dir", str(out_dir)]  # --amp off: no per-run probe


def test_sde_noise_attacks_pairs_and_resumes(tmp_path, capsys):
    first = sde_noise.main(sde_args(tmp_path))
    assert [(r["variant"], r["seed"]) for r in first["runs"]] == [("none", 0), ("gauss_add_0.1", 0)]
    for r in first["runs"]:
        assert set(r["attacks"]) == {"fgsm", "pgd"} and set(r["attacks"]["pgd"]) == {"0", "0.05"}
        assert r["attacks"]["pgd"]["0"] == r["attacks"]["fgsm"]["0"]  # both: clean attacked images
    capsys.readouterr()
    out = sde_noise.main(sde_args(tmp_path, "0,1"))  # seed 0 is kept, only seed 1 trains
    assert out["runs"][:2] == first["runs"] and len(out["runs"]) == 4
    assert capsys.readouterr().out.count("already in") == 2
    saved = json.loads((tmp_path / "sde_noise_tiny_cpu.json").read_text())
    assert saved["attacks"] == dict(names=["fgsm", "pgd"], eps=["0.05"], pgd_steps=2, images=16)
    acc = saved["variants"]["none"]["accuracy"]["0"]
    assert acc["n"] == 2 and acc["ci95"][0] is not None
    metrics = {c["metric"] for c in saved["comparisons"]}
    assert metrics == {"clean", "noise delta=0.2", "fgsm eps=0.05", "pgd eps=0.05"}
    clean = next(c for c in saved["comparisons"] if c["metric"] == "clean")
    runs = {(r["variant"], r["seed"]): r["accuracy"]["0"] for r in saved["runs"]}
    assert clean["n"] == 2 and clean["diffs"] == [runs["gauss_add_0.1", s] - runs["none", s] for s in (0, 1)]
    text = (tmp_path / "sde_noise_tiny_cpu.md").read_text()
    assert "Liu et al. 2019" in text and "- pgd eps=0.05: gauss_add_0.1 − none" in text
    assert "95% CI" in text and (tmp_path / saved["plots"][0]).stat().st_size > 1000


def test_sde_noise_converged_plan_and_bad_options():
    args = sde_noise.parse_args(["--config", "converged"])
    assert list(sde_noise.make_plan(args)) == ["none", "gauss_add_0.1", "gauss_add_0.5", "gauss_field_0.5"]
    with pytest.raises(ValueError, match="unknown variant"):
        sde_noise.make_plan(sde_noise.parse_args(["--variants", "gauss_add_9"]))
    with pytest.raises(ValueError, match="unknown attack"):
        sde_noise.main(["--tiny", "--dataset", "synthetic", "--attacks", "cw"])
