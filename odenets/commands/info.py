"""``odenets info MODEL``: parameters, field evaluations and MACs of a preset."""
from __future__ import annotations

HELP = "parameters, field evaluations and MACs of a model"
ORDER = 30
DEFAULT_DATASET = "cifar10"  # the shape odenets.info(name) assumes: (1, 3, 32, 32), 10 classes


def add_parser(subparsers):
    p = subparsers.add_parser("info", help=HELP, description=HELP + ".")
    p.add_argument("model", help="preset name (see `odenets list models`)")
    p.add_argument("--dataset", default=DEFAULT_DATASET,
                   help="take input shape and number of classes from this dataset (default: "
                   f"{DEFAULT_DATASET}, 3 x 32 x 32 and 10 classes, as `odenets.info` and "
                   "`odenets list`)")
    p.add_argument("--solver", default=None, help="replace the preset's scheme by this solver")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def run(args) -> int:
    import json

    import odenets
    from ..data import get_spec
    from ..train.model import check_model_name, check_solver_name
    spec = get_spec(args.dataset)
    check_model_name(args.model)
    options = dict(num_classes=spec.num_classes, in_channels=spec.input_size[0])
    if args.solver:
        check_solver_name(args.solver)
        options["solver"] = args.solver
    meta = odenets.info(args.model, input_size=(1, *spec.input_size), **options)
    meta["dataset"] = spec.name
    if args.json:
        print(json.dumps(meta, indent=2, default=str))
        return 0
    nfe = meta.pop("continuous_nfe")
    for key, value in meta.items():
        if key == "evaluations" and nfe:
            value = (f"{value} ({nfe} by the continuous flows, counted in one eval-mode forward "
                     f"on a seeded random input; "
                     f"an adaptive solver's count depends on the input)")
        elif key == "macs":
            value = f"{value:,} ({value / 1e6:.1f} M per image)"
        elif key == "params":
            value = f"{value:,} ({value / 1e6:.3f} M)"
        print(f"{key:12s} {value}")
    return 0
