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
    assert "3 epochs on 5120 training images, seeds [0, 1]" in text
    assert "- test_acc: hb - ode = +1.00 points" in text
    assert "- against the anchor: forward NFE/step: momentum/plain = 0.70 here" in text
