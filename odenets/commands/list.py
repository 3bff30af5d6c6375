"""``odenets list``: the registered models, solvers and datasets.

Models are listed one per line with their scheme, parameter count and description
(``--names``: the bare names). Parameter counts (10 classes, 3 input channels) come from
``preset_params.json`` beside this file, since building all presets takes about a minute; a
preset missing there is built on the spot. After adding presets, regenerate the table with
``python -c "from odenets.commands.list import write_parameter_table; write_parameter_table()"``
(tests/test_run_outputs.py checks that it covers every preset and samples its counts).
"""
from __future__ import annotations

import json
from pathlib import Path

HELP = "list models (scheme, parameters, description), solvers and datasets"
ORDER = 20
KINDS = ("models", "solvers", "datasets")
PARAMS_FILE = Path(__file__).with_name("preset_params.json")


def add_parser(subparsers):
    p = subparsers.add_parser("list", help=HELP, description=HELP + ".")
    p.add_argument("kind", nargs="?", choices=KINDS, help="list only this kind (default: all)")
    p.add_argument("--pattern", default="*",
                   help="shell-style filter on the names of every kind, e.g. 'lm_*' or 'rk*'")
    p.add_argument("--names", action="store_true",
                   help="bare names only, one per line (no scheme, parameters or description)")
    return p


def count_parameters(name: str) -> int:
    """Parameters of preset ``name`` built for 10 classes and 3 input channels."""
    import odenets
    return sum(p.numel() for p in odenets.create(name, num_classes=10, in_channels=3).parameters())


def parameter_table() -> dict[str, int]:
    """``{preset: parameters}`` from `PARAMS_FILE` ({} if it is missing)."""
    return json.loads(PARAMS_FILE.read_text()) if PARAMS_FILE.is_file() else {}


def write_parameter_table(path=PARAMS_FILE) -> dict[str, int]:
    """Build every preset once and write its parameter count to ``path`` (about a minute)."""
    import odenets
    table = {name: count_parameters(name) for name in odenets.list_models()}
    Path(path).write_text(json.dumps(table, indent=1) + "\n")
    return table


def scheme_text(cfg) -> str:
    """'lm', 'lmm(history=3)', 'euler_maruyama(noise=bernoulli)': a preset's solver."""
    options = ", ".join(f"{k}={v}" for k, v in sorted((cfg.solver_options or {}).items()))
    return f"{cfg.solver}({options})" if options else str(cfg.solver)


def describe_models(names) -> list[str]:
    """One line per preset: name, scheme, parameters (10 classes), description; the columns
    are as wide as their longest entry, so no entry pushes the next column out of line."""
    from ..models.registry import DOCS, get_config
    table = parameter_table()
    names = list(names)
    schemes = [scheme_text(get_config(name)) for name in names]
    wide = max(map(len, names), default=0), max(map(len, schemes), default=0)
    lines = []
    for name, scheme in zip(names, schemes):
        params = table.get(name)
        if params is None:
            params = count_parameters(name)
        lines.append(f"{name:{wide[0]}s}  {scheme:{wide[1]}s}  {params / 1e6:7.3f}M  "
                     f"{DOCS.get(name, '')}")
    return lines


def run(args) -> int:
    """Print the names matching ``--pattern``; exit status 1 when none match."""
    import fnmatch
    import sys

    import odenets
    from ..data import DATASETS

    def match(names):
        return sorted(n for n in names if fnmatch.fnmatchcase(n, args.pattern))

    sections = {
        "models": (odenets.list_models(args.pattern) if args.names
                   else describe_models(odenets.list_models(args.pattern))),
        "solvers": match(odenets.available_solvers()),
        "datasets": (match(DATASETS) if args.names else
                     [f"{name:16s} {DATASETS[name].description}" for name in match(DATASETS)]),
    }
    kinds = [args.kind] if args.kind else list(KINDS)
    if not any(sections[kind] for kind in kinds):
        print(f"no {args.kind or 'models, solvers or datasets'} match {args.pattern!r}; "
              f"`odenets list{' ' + args.kind if args.kind else ''}` shows them all", file=sys.stderr)
        return 1
    for kind in kinds:
        if not args.kind:
            print(f"{kind}:" if kind != "models" or args.names else
                  "models (name, scheme, parameters with 10 classes, description):")
            if not sections[kind]:
                print(f"  (none match {args.pattern!r})")
        for line in sections[kind]:
            print(f"  {line}" if not args.kind else line)
    return 0
