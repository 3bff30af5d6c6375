"""``odenets export-pretrained RUN_DIR|RECORD.json --name NAME``: a finished run's (or a
campaign record's) weights as a file that ships with the package (`odenets.pretrained`):
``<NAME>.pt`` and its entry (sha256, dataset, recipe, seed, accuracies, precision, commit) in
``weights.json``, written to ``--out`` (default: the installed ``odenets/pretrained`` folder)."""
from __future__ import annotations

HELP = "turn a finished run's or campaign record's weights into a pretrained-weights file"
ORDER = 90


def add_parser(subparsers):
    p = subparsers.add_parser("export-pretrained", help=HELP, description=HELP + ".")
    p.add_argument("source", metavar="RUN_DIR|RECORD.json",
                   help="a finished run directory (odenets train --run-dir), or a campaign record "
                   "<dir>/records/<model>__s<seed>__<key>.json with its .pt beside it "
                   "(benchmarks/converged.py)")
    p.add_argument("--name", required=True, help="the preset the run trained, e.g. lm_resnet20")
    p.add_argument("--out", default=None,
                   help="folder of the weights file and weights.json (default: odenets/pretrained)")
    p.add_argument("--recipe-json", default=None, metavar="FILE",
                   help="for a campaign record: the full recipe (a recipe object, or a campaign "
                   "summary holding one under 'recipe') (default: the summary <dir>.json beside "
                   "the record's <dir>/)")
    return p


def run(args) -> int:
    from ..pretrained import export
    path = export(args.source, args.name, args.out, recipe_json=args.recipe_json)
    print(f"wrote {path} and its entry in {path.with_name('weights.json')}")
    return 0
