"""``odenets compare``: train several models with one recipe and seed, print a table.

    odenets compare --models resnet20,lm_resnet20 --dataset fashion-mnist --epochs 2

Every model gets the same data, subset, schedule and seed; each run is a normal run directory
under ``--out``, and ``compare.json`` there holds the table. Without ``--subset`` the comparison
trains on a fixed 30,000-image subset of the training set (``--subset 0`` for all of it), so
the default finishes in a few minutes on a 2-core CPU.
"""
from __future__ import annotations

HELP = "train several models with the same recipe and seed and compare them"
ORDER = 15
DEFAULT_SUBSET = 30000  # images per epoch when --subset is not given (0 = the whole training set)
COLUMNS = ("model", "params", "test_acc", "best_acc", "train_s", "img_per_s")
DESCRIPTION = ("Train several models with the same recipe and seed, then print a table comparing "
               "them. Each run is a normal run directory under --out; compare.json there holds "
               "the table. The other options are those of `odenets train`.")


def add_parser(subparsers):
    from ..train.config import add_arguments
    p = subparsers.add_parser("compare", help=HELP, description=DESCRIPTION)
    p.add_argument("--models", required=True,
                   help="comma-separated model names (see `odenets list models`)")
    p.add_argument("--out", default=None, help="directory for the runs and compare.json "
                   "(default: runs/compare-TIME)")
    p.add_argument("--subset", type=int, default=DEFAULT_SUBSET, help="train on a fixed random "
                   "subset of this many training images, 0 = the whole training set (default: "
                   f"{DEFAULT_SUBSET})")
    add_arguments(p, skip=("model", "run_dir", "subset"))
    return p


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the comparison rows."""
    cells = [COLUMNS] + [(r["model"], f"{r['params']:,}", f"{r['test_acc']:.4f}",
                          f"{r['best_acc']:.4f}", f"{r['train_s']:.1f}", f"{r['img_per_s']:.0f}")
                         for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])


def run(args) -> int:
    import time
    from pathlib import Path

    import torch

    from ..train import config_from_args, train
    from ..train.checkpoint import NAME
    from ..train.rundir import write_json
    from ..train.model import import_from_cwd
    from .train import check_names
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in models:  # typed on the command line: import 'module:function' from ./ too
        import_from_cwd(name)
    if not models:
        raise ValueError("--models needs at least one model name")
    if len(set(models)) != len(models):
        raise ValueError(f"--models lists a model twice: {args.models}")
    if args.subset == 0:
        args.subset = None
    out = Path(args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}")
    configs = []
    for name in models:  # check every name before training anything
        args.model, args.run_dir = name, str(out / name.replace(":", "_"))
        cfg = config_from_args(args).validate()
        check_names(cfg)
        if (Path(cfg.run_dir) / NAME).exists():  # train() would refuse it, after earlier models
            raise ValueError(f"{cfg.run_dir} already holds a run; choose another --out")
        configs.append(cfg)
    rows = []
    for cfg in configs:
        if cfg.compile:  # a fresh compile cache per model: torch.compile allows a few recompiles
            torch._dynamo.reset()  # of one forward (every preset's), then silently runs eager
        summary = train(cfg)
        final = summary["final"]
        rows.append(dict(model=cfg.model, params=summary["params"], test_acc=final["test_acc"],
                         best_acc=summary["best_test_acc"], train_s=summary["train_seconds"],
                         img_per_s=final["img_per_s"],
                         run_dir=summary["run_dir"]))
    cfg = configs[0].to_dict()
    recipe = {k: v for k, v in cfg.items() if k not in ("model", "run_dir")}
    write_json(out / "compare.json", dict(rows=rows, recipe=recipe))
    epochs = f"{cfg['epochs']} epoch{'s' if cfg['epochs'] != 1 else ''}"
    print(f"{cfg['dataset']}, {epochs}, subset {cfg['subset'] or 'all'}, seed {cfg['seed']} "
          f"(img/s: last epoch's training throughput)")
    print(format_table(rows))
    print(f"runs and compare.json in {out}")
    return 0
