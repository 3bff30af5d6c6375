"""Every fenced Python block of README.md and docs/*.md runs as written.

Convention (for anyone writing docs):
- A block fenced as ```python (or ```py) is code: the test runs it. The blocks of one file run
  in order in one namespace, like a notebook, so a later block may use names an earlier one
  defined; each file starts from an empty namespace, in a temporary working directory.
- A block that is not meant to run gets another fence: ```text for output or pseudo-code,
  ```console / ```bash for shell commands. To keep Python highlighting on a block that cannot
  run (a sketch with placeholders), put the HTML comment ``<!-- not-run: reason -->`` on the
  line right before its fence.
- A block that needs an optional package (timm, torchvision, torchode, tensorboard, ...) is
  skipped when that import fails with ModuleNotFoundError, and only then; any other error fails.
New docs/*.md files are collected automatically.
"""
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
# packages the docs may use that odenets does not require: a block importing one is skipped
# where it is missing (ModuleNotFoundError names it, or a package it needs)
OPTIONAL = {"timm", "torchvision", "torchode", "torchdiffeq", "torchsde", "scipy", "matplotlib",
            "tensorboard", "submitit"}
FENCE = re.compile(r"(?P<marker><!--\s*not-run:[^>]*-->\s*\n)?^```(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)^```",
                   re.S | re.M)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, code) of every ```python / ```py block not marked ``<!-- not-run -->``."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start("code")) + 1, m.group("code")) for m in FENCE.finditer(text)
            if m.group("lang") in ("python", "py") and not m.group("marker")]


def test_collector_reads_fences_and_markers(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("a\n```python\nx = 1\n```\n```text\nnot code\n```\n<!-- not-run: sketch -->\n"
                   "```python\nundefined_name\n```\n```py\ny = x + 1\n```\n")
    assert python_blocks(doc) == [(3, "x = 1\n"), (13, "y = x + 1\n")]


def run_blocks(path: Path) -> dict:
    """Run the Python blocks of ``path`` in order in one namespace; skip the test only when a
    block needs a missing optional package."""
    namespace, skipped = {"__name__": "__doc_example__"}, []
    for line, code in python_blocks(path):
        source = "\n" * (line - 1) + code  # tracebacks point at the line in the .md file
        try:
            exec(compile(source, str(path), "exec"), namespace)
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] not in OPTIONAL:
                raise
            skipped.append(f"{path.name}:{line} needs {e.name}")
    if skipped:
        pytest.skip("; ".join(skipped) + " (optional, not installed)")
    return namespace


def test_python_fences_are_spelled_python():
    """A ```Python or ```python3 fence would silently escape this test."""
    odd = [f"{p.name}:{p.read_text().count(chr(10), 0, m.start()) + 1} ```{m.group('lang')}"
           for p in DOCS for m in FENCE.finditer(p.read_text())
           if m.group("lang").lower().startswith("py") and m.group("lang") not in ("python", "py")]
    assert not odd, f"use ```python (or a not-run marker): {odd}"


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_doc_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here, not into the tree
    torch.manual_seed(0)
    run_blocks(path)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_blocks(README)
    torch.testing.assert_close(namespace["u1"], torch.full((3,), torch.exp(torch.tensor(-1.0)).item()),
                               atol=1e-6, rtol=0)
    x = torch.randn(2, 16, 8, 8)
    for name in ("resnet_stage", "lm_stage", "poly_stage"):
        assert namespace[name](x).shape == x.shape, name
