"""``odenets export-pretrained RUN_DIR --name NAME``: a finished run's weights as a file that
ships with the package (`odenets.pretrained`): ``<NAME>.pt`` and its entry (sha256, dataset,
recipe, seed, test accuracy) in ``weights.json``, written to ``--out`` (default: the installed
``odenets/pretrained`` folder)."""
from __future__ import annotations

HELP = "turn a finished run's weights into a pretrained-weights file shipped with odenets"
ORDER = 90


def add_parser(subparsers):
    p = subparsers.add_parser("export-pretrained", help=HELP, description=HELP + ".")
    p.add_argument("run_dir", help="a finished run directory (odenets train --run-dir)")
    p.add_argument("--name", required=True, help="the preset the run trained, e.g. lm_resnet20")
    p.add_argument("--out", default=None,
                   help="folder of the weights file and weights.json (default: odenets/pretrained)")
    return p


def run(args) -> int:
    from ..pretrained import export
    path = export(args.run_dir, args.name, args.out)
    print(f"wrote {path} and its entry in {path.with_name('weights.json')}")
    return 0
