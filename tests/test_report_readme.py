"""benchmarks/report.py rewrites only the marked results section of README.md, and only from the
committed results directory."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import report  # noqa: E402


def test_other_results_directories_leave_the_readme_alone(tmp_path):
    before = report.README.read_text()
    report.main(["--results", str(tmp_path), "--out", str(tmp_path / "R.md")])
    assert report.README.read_text() == before
    assert (tmp_path / "R.md").exists()


def test_update_readme_replaces_only_the_marked_section(tmp_path):
    readme = tmp_path / "README.md"
    start, end = report.MARKERS
    readme.write_text(f"# title\n\nintro\n\n{start}\nold results\n{end}\n\n## after\n")
    report.update_readme(readme, report.RESULTS)
    text = readme.read_text()
    assert text.startswith("# title\n\nintro\n\n" + start) and text.endswith(end + "\n\n## after\n")
    assert "old results" not in text and "RESULTS.md" in text
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="markers"):
        report.update_readme(readme, report.RESULTS)


def test_readme_states_the_cross_solver_and_momentum_verdicts(tmp_path):
    import json
    cross = {"model": "preact_resnet20", "config": "converged", "seeds": [0],
             "eval_solvers": ["euler", "rk4"], "eval_steps": [1, 16],
             "verdict": "Verdict: K=1: 93.1% -> 53.4% (collapses)", "runs": [], "env": {}}
    momentum = {"models": {"ode_resnet20": {}, "hbode_resnet20": {}},
                "config": "pilot", "recipe": {"epochs": 3, "subset": 5120},
                "runs": [{"seed": 1}, {"seed": 0}],
                "comparisons": [{"metric": "test_acc", "verdict": "hb - ode = +1.00 points"}],
                "anchor_verdict": ["forward NFE/step: momentum/plain = 0.70 here"], "env": {}}
    (tmp_path / "cross_solver_converged_cpu.json").write_text(json.dumps(cross))
    (tmp_path / "momentum_flows_pilot_cpu.json").write_text(json.dumps(momentum))
    lines = (report.cross_solver_lines(report.load("cross_solver_converged_*.json", tmp_path))
             + report.momentum_lines(report.load("momentum_flows_*.json", tmp_path)))
    text = "\n".join(lines)
    assert "): K=1: 93.1% -> 53.4% (collapses)" in text and "Verdict:" not in text
    assert "3 epochs on 5120 training images, seeds 0, 1;" in text
    assert "- test_acc: hb - ode = +1.00 points" in text
    assert "- against the anchor: forward NFE/step: momentum/plain = 0.70 here" in text


def test_noise_injection_lines_follow_their_stated_rule():
    """Shown: the clean comparison and every comparison whose interval excludes 0 (not a fixed
    list of metrics chosen before the results)."""
    def cmp(metric, lo, hi):
        return dict(metric=metric, a="none", b="gauss_add_0.5", n=3, seeds=[0, 1, 2], diffs=[0.0] * 3,
                    mean_diff=(lo + hi) / 2, std=0.01, ci95=[lo, hi])
    payload = dict(depth=20, recipe=dict(dataset="fashion-mnist"), seeds=[0, 1, 2], comparisons=[
        cmp("clean", -0.01, 0.01), cmp("noise delta=0.3", 0.01, 0.03), cmp("pgd eps=0.02", -0.2, 0.3),
        cmp("fgsm eps=0.1", -0.05, -0.01)])
    text = "\n".join(report.noise_injection_lines([payload]))
    assert "seeds 0, 1, 2" in text and "every comparison whose interval excludes 0 (3 of 4" in text
    shown = [line.split(":")[0] for line in text.splitlines() if line.startswith("- ")]
    assert shown == ["- clean", "- noise delta=0.3", "- fgsm eps=0.1"]


def test_results_md_has_no_duplicate_section_and_puts_the_superseded_pilot_last(tmp_path):
    import shutil
    for name in ("momentum_flows_pilot_cpu.json", "momentum_flows_pilot_batchnorm_cpu.json"):
        shutil.copy(report.RESULTS / name, tmp_path / name)
    text = report.build_report(tmp_path)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert len(headings) == len(set(headings)), headings
    momentum = [h for h in headings if "Momentum" in h]
    assert len(momentum) == 2 and "superseded" not in momentum[0] and "superseded by" in momentum[1]


def test_plots_say_what_they_show(tmp_path, monkeypatch):
    """The momentum NFE plots name their normalisation; the depth-sweep plots their recipe
    (not just 'quick')."""
    import json
    pytest.importorskip("matplotlib")
    import compare_schemes
    import matplotlib.pyplot as plt
    import momentum_flows
    titles, close = [], plt.close

    def keep_titles(fig=None):
        if fig is not None and hasattr(fig, "axes"):
            titles.append(" | ".join([fig._suptitle.get_text() if fig._suptitle else ""]
                                     + [ax.get_title() for ax in fig.axes]))
        close(fig)
    monkeypatch.setattr(plt, "close", keep_titles)
    payload = json.loads((report.RESULTS / "momentum_flows_pilot_cpu.json").read_text())
    momentum_flows.plot(payload, tmp_path / "m")
    assert "per training step, summed over the 3 stage flows" in titles[-1]
    payload = json.loads((report.RESULTS / "compare_schemes_depth_cpu_cpu.json").read_text())
    compare_schemes.plot(payload, tmp_path / "c")
    assert all("epochs=3" in t for t in titles[1:]), titles
