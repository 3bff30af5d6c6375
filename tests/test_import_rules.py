"""The layering rules of the package (README, "Layout"), checked on the source and at run time:

* ``solvers`` is pure numerics: it imports no ``odenets`` module;
* fields (``odenets/fields``) know no scheme: they import no ``solvers`` module (nor the
  odenets modules that join fields to schemes);
* creating a fixed-grid preset imports no continuous-depth or plotting library (torchdiffeq,
  torchsde, torchode, scipy, matplotlib) and not ``odenets.continuous``.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def offending(folder: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        bad = sorted(m for m in imported_modules(path)
                     if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            out[str(path.relative_to(ROOT))] = bad
    return out


def test_solvers_import_no_odenets_module():
    assert offending("solvers", ("odenets",)) == {}


def test_fields_import_no_solver_module():
    assert offending("odenets/fields", ("solvers", "odenets.build", "odenets.flow",
                                        "odenets.momentum", "odenets.continuous")) == {}


def test_the_checker_sees_relative_imports(tmp_path):
    """The rule above must be able to fail: a relative ``..build`` import is resolved."""
    assert "odenets.build" in imported_modules(ROOT / "odenets" / "models" / "network.py")
    assert "solvers.checks" in imported_modules(ROOT / "odenets" / "build.py")


HEAVY = ("torchdiffeq", "torchsde", "torchode", "scipy", "matplotlib", "odenets.continuous")


@pytest.mark.parametrize("code", [
    "import solvers; solvers.integrate(lambda t, u: -u, __import__('torch').ones(2), steps=3)",
    "import odenets; [odenets.create(m) for m in ('resnet20', 'lm_resnet20', 'lmm3_resnet20', "
    "'sd_resnet20', 'shake_resnet20', 'rev_resnet20', 'poly_resnet20', 'rk2_resnet20')]",
])
def test_fixed_grid_work_imports_no_continuous_or_plotting_library(code):
    probe = (f"import sys\n{code}\n"
             f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY[:5]!r} "
             f"or m.startswith('odenets.continuous')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_solvers_alone_imports_no_odenets():
    out = subprocess.run([sys.executable, "-c", "import sys, solvers; "
                          "print([m for m in sys.modules if m.startswith('odenets')])"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr)


def test_readme_layout_names_every_module():
    """The README's layout section matches the tree: every solver file and every odenets module
    or subpackage is named there."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## Benchmarks")]
    names = [p.name for p in (ROOT / "solvers").glob("*.py") if p.name != "__init__.py"]
    names += [p.name if p.is_file() else p.name + "/" for p in (ROOT / "odenets").iterdir()
              if (p.suffix == ".py" and p.name not in ("__init__.py", "__main__.py"))
              or (p.is_dir() and (p / "__init__.py").exists())]
    missing = sorted(n for n in names if n not in layout)
    assert missing == []
    # file size rule of the layout: no library file over 400 lines
    long = {str(p.relative_to(ROOT)): n for p in [*ROOT.glob("solvers/*.py"), *ROOT.glob("odenets/**/*.py")]
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_openmp_wait_policy_is_passive_only_on_a_busy_machine():
    """Spinning OpenMP threads cost 4.5x the wall time beside busy processes and save 37% on an
    idle machine (levers_cpu.md): passive waiting only from a load of one core's worth, and
    never over the user's own choice."""
    from odenets._openmp import wait_policy
    assert wait_policy(0.3, {}) is None and wait_policy(None, {}) is None
    assert wait_policy(1.0, {}) == wait_policy(6.5, {}) == "PASSIVE"
    assert wait_policy(6.5, {"OMP_WAIT_POLICY": "ACTIVE"}) is None


@pytest.mark.parametrize("code,env", [
    ("import odenets", {}),                                     # odenets loads torch: by the load
    ("import odenets", {"OMP_WAIT_POLICY": "ACTIVE"}),          # the user's choice stays
    ("import torch, odenets", {}),                              # too late to matter: untouched
])
def test_openmp_wait_policy_is_set_before_torch_loads(code, env):
    import os
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    script = (f"import os; load = os.getloadavg()[0]; {code}; "
              "print(load, os.environ.get('OMP_WAIT_POLICY'))")
    load, got = subprocess.run([sys.executable, "-c", script], env={**base, **env, "PYTHONPATH": str(ROOT)},
                               capture_output=True, text=True, check=True).stdout.split()[-2:]
    if env:
        assert got == env["OMP_WAIT_POLICY"]
    elif code.startswith("import torch"):
        assert got == "None"
    else:  # the load read just before the import: the same side of the threshold (1.0) but for
        # a load crossing it within milliseconds
        assert got == ("PASSIVE" if float(load) >= 1.0 else "None")


def test_malloc_thresholds_only_without_the_users_choice():
    """Large freed blocks are kept (no page fault per state-sized tensor, odenets/_malloc.py)
    unless the user set glibc's malloc variables or ODENETS_MALLOC=system; a bad value is a
    one-line error naming the choices."""
    import platform

    from odenets._malloc import wanted
    glibc = platform.libc_ver()[0] == "glibc"
    assert wanted({}) == glibc and wanted({"ODENETS_MALLOC": "keep"}) == glibc
    assert not wanted({"ODENETS_MALLOC": "system"})
    assert not wanted({"MALLOC_TRIM_THRESHOLD_": "0"})
    assert not wanted({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"})
    with pytest.raises(ValueError, match="keep, system"):
        wanted({"ODENETS_MALLOC": "yes"})
    script = "import odenets, odenets._malloc as m; print(m.applied)"
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("MALLOC_") and k not in ("ODENETS_MALLOC", "GLIBC_TUNABLES")}
    for env, expected in (({}, glibc), ({"ODENETS_MALLOC": "system"}, False)):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env={**base, **env, "PYTHONPATH": str(ROOT)}, check=True)
        assert out.stdout.split()[-1] == str(expected)
