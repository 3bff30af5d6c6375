"""``odenets plot RUN_DIR``: loss/accuracy curves and learned coefficients to PNG files."""
from __future__ import annotations

HELP = "plot a run's loss/accuracy curves and learned k_n per block (PNG)"
ORDER = 40


def add_parser(subparsers):
    p = subparsers.add_parser("plot", help=HELP, description=HELP + ".")
    p.add_argument("run_dir", help="a run directory written by `odenets train`")
    p.add_argument("--out", default=None, help="directory for the PNG files (default: RUN_DIR)")
    return p


def run(args) -> int:
    from ..plot import plot_run
    for path in plot_run(args.run_dir, args.out):
        print(path)
    return 0
