"""``odenets analyze``: stability regions, convergence orders and, for a trained run, its scheme."""
from __future__ import annotations

HELP = "stability regions and convergence orders of every scheme (PNG + tables); with --run, " \
       "also the run's learned LM/lmm coefficients"
ORDER = 45


def add_parser(subparsers):
    p = subparsers.add_parser("analyze", help=HELP, description=HELP + ".")
    p.add_argument("--out", default="analysis", help="directory for the figures and tables "
                   "(default: ./analysis)")
    p.add_argument("--run", default=None, metavar="RUN_DIR",
                   help="a run directory written by `odenets train`: add its learned roots and "
                   "modified-equation coefficients")
    p.add_argument("--model", default=None, metavar="MODULE:FUNCTION",
                   help="with --run: the run's model, when it is a 'module:function' factory "
                   "(odenets imports it only when named here or with --trust-run-code)")
    p.add_argument("--trust-run-code", action="store_true",
                   help="with --run: import and call the 'module:function' model the run's "
                   "config.json names")
    return p


def run(args) -> int:
    from pathlib import Path

    from ..analysis import write_report
    from ..plot import plot_roots
    model = None
    if args.run is not None:
        from ..train.model import import_from_cwd, load_run_model
        import_from_cwd(args.model)
        model, _, _ = load_run_model(args.run, model=args.model,
                                     trust_run_code=args.trust_run_code)
    paths = list(write_report(args.out, model=model).values())
    if model is not None:
        roots = plot_roots(model, Path(args.out) / "roots.png")
        paths += [roots] if roots else []
    for path in paths:
        print(path)
    return 0
