"""``odenets list``: the registered models, solvers and datasets."""
from __future__ import annotations

HELP = "list models, solvers and datasets"
ORDER = 20
KINDS = ("models", "solvers", "datasets")


def add_parser(subparsers):
    p = subparsers.add_parser("list", help=HELP, description=HELP + ".")
    p.add_argument("kind", nargs="?", choices=KINDS, help="list only this kind (default: all)")
    p.add_argument("--pattern", default="*",
                   help="shell-style filter on the names of every kind, e.g. 'lm_*' or 'rk*'")
    return p


def run(args) -> int:
    """Print the names matching ``--pattern``; exit status 1 when none match."""
    import fnmatch
    import sys

    import odenets
    from ..data import DATASETS

    def match(names):
        return sorted(n for n in names if fnmatch.fnmatchcase(n, args.pattern))

    sections = {
        "models": odenets.list_models(args.pattern),
        "solvers": match(odenets.available_solvers()),
        "datasets": [f"{name:16s} {DATASETS[name].description}" for name in match(DATASETS)],
    }
    kinds = [args.kind] if args.kind else list(KINDS)
    if not any(sections[kind] for kind in kinds):
        print(f"no {args.kind or 'models, solvers or datasets'} match {args.pattern!r}; "
              f"`odenets list{' ' + args.kind if args.kind else ''}` shows them all", file=sys.stderr)
        return 1
    for kind in kinds:
        if not args.kind:
            print(f"{kind}:")
            if not sections[kind]:
                print(f"  (none match {args.pattern!r})")
        for line in sections[kind]:
            print(f"  {line}" if not args.kind else line)
    return 0
