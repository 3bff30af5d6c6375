"""``odenets list``: the registered models, solvers and datasets."""
from __future__ import annotations

HELP = "list models, solvers and datasets"
ORDER = 20
KINDS = ("models", "solvers", "datasets")


def add_parser(subparsers):
    p = subparsers.add_parser("list", help=HELP, description=HELP + ".")
    p.add_argument("kind", nargs="?", choices=KINDS, help="list only this kind (default: all)")
    p.add_argument("--pattern", default="*", help="shell-style filter for model names, e.g. 'lm_*'")
    return p


def run(args) -> int:
    import odenets
    from ..data import DATASETS
    sections = {
        "models": odenets.list_models(args.pattern),
        "solvers": odenets.available_solvers(),
        "datasets": [f"{name:16s} {spec.description}" for name, spec in sorted(DATASETS.items())],
    }
    for kind in [args.kind] if args.kind else KINDS:
        if not args.kind:
            print(f"{kind}:")
        for line in sections[kind]:
            print(f"  {line}" if not args.kind else line)
    return 0
