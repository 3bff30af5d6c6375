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
