"""``odenets bench schemes|speed|sde|report [ARGS...]``: run a benchmark script of benchmarks/.

    odenets bench schemes --quick        # benchmarks/compare_schemes.py --quick
    odenets bench speed --device cuda    # benchmarks/speed.py --device cuda
    odenets bench sde --quick            # benchmarks/sde_noise.py --quick
    odenets bench overhead               # benchmarks/solver_overhead.py (per-step solver cost)
    odenets bench cross --config quick   # benchmarks/cross_solver.py: is it an ODE?
    odenets bench report                 # benchmarks/report.py (rewrites results/RESULTS.md;
                                         # --readme: also README.md's results section)

Everything after the benchmark's name goes to the script's own parser (``odenets bench schemes
--help`` shows its flags). The scripts live in the source checkout's ``benchmarks/`` directory
(found next to the ``odenets`` package, or named by ``$ODENETS_BENCHMARKS``); they are loaded by
path and their ``main(argv)`` is called.
"""
from __future__ import annotations

import argparse
import contextlib

HELP = ("run a benchmark: schemes (accuracy per parameter/FLOP/second), speed, sde, cross "
        "(cross-solver evaluation), overhead, report")
ORDER = 60
SCRIPTS = {"schemes": "compare_schemes.py", "speed": "speed.py", "sde": "sde_noise.py",
           "cross": "cross_solver.py", "overhead": "solver_overhead.py", "report": "report.py"}


def add_parser(subparsers):
    p = subparsers.add_parser("bench", help=HELP, description=HELP[0].upper() + HELP[1:] + ". "
                              "NAME is a script of the source checkout's benchmarks/ directory.",
                              epilog="Options after NAME belong to the script, e.g. "
                              "`odenets bench schemes --help`.")
    p.add_argument("name", metavar="NAME", help=f"one of {', '.join(SCRIPTS)}")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark script")
    return p


def benchmarks_dir():
    """The benchmarks/ directory of the source checkout (ValueError if there is none)."""
    import os
    from pathlib import Path
    env = os.environ.get("ODENETS_BENCHMARKS")
    where = Path(env) if env else Path(__file__).resolve().parents[2] / "benchmarks"
    if not (where / "_common.py").is_file():
        raise ValueError(f"no benchmarks directory at {where}: `odenets bench` needs a source checkout "
                         "(pip install -e .) or ODENETS_BENCHMARKS=/path/to/benchmarks")
    return where


def load_script(name: str):
    """Import benchmark ``name`` (a key of SCRIPTS) from its file; returns the module."""
    import importlib.util
    import sys
    from pathlib import Path
    if name not in SCRIPTS:
        raise ValueError(f"unknown benchmark {name!r}; available: {', '.join(SCRIPTS)}")
    where = benchmarks_dir()
    if str(where) not in sys.path:
        sys.path.insert(0, str(where))
    module_name, path = SCRIPTS[name][:-3], where / SCRIPTS[name]
    cached = sys.modules.get(module_name)
    if cached is not None and Path(getattr(cached, "__file__", None) or "").resolve() == path.resolve():
        return cached
    if cached is not None:  # another package's module of that name: leave it alone
        module_name = f"_odenets_bench_{module_name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _named_parsers(prog: str):
    """Argument parsers made without a ``prog`` inside this context are called ``prog`` (the
    scripts' parsers would take ``__main__.py`` from sys.argv[0]; sys.argv itself is left alone
    because the scripts record it as their command line)."""
    init = argparse.ArgumentParser.__init__

    def named(self, *args, **kwargs):
        if not args:
            kwargs.setdefault("prog", prog)
        init(self, *args, **kwargs)

    argparse.ArgumentParser.__init__ = named
    try:
        yield
    finally:
        argparse.ArgumentParser.__init__ = init


def run(args) -> int:
    module = load_script(args.name)
    with _named_parsers(f"odenets bench {args.name}"):
        result = module.main(list(args.args))
    exit_status = getattr(module, "exit_status", None)  # the script's own rule, as run directly
    return exit_status(result) if exit_status is not None else 0
