"""``odenets train``: train a preset on a dataset; ``--resume RUN_DIR`` continues a run."""
from __future__ import annotations

HELP = "train a model (checkpoints, metrics and a summary go to the run directory)"
ORDER = 10


def add_parser(subparsers):
    from ..train.config import add_arguments
    p = subparsers.add_parser(
        "train", help=HELP, description=HELP + ". Multi-GPU: torchrun --nproc_per_node G -m "
        "odenets train ...")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last checkpoint, with its saved "
                   "config; flags given here override it (e.g. --epochs to extend the run), "
                   "except --model, --solver, --model-arg and --dataset")
    add_arguments(p)
    return p


def check_names(cfg) -> None:
    """Fail fast, before any data is read, on an unknown model, dataset or solver name."""
    from ..data import get_spec
    from ..train.model import check_model_name, check_solver_name
    get_spec(cfg.dataset)
    check_model_name(cfg.model)
    if cfg.solver is not None:
        check_solver_name(cfg.solver)


def run(args) -> int:
    import os
    from pathlib import Path

    from ..train import config_from_args, train
    from ..train.config import check_resume
    from ..train.rundir import CONFIG, read_json
    base = None
    if args.resume:
        base = read_json(Path(args.resume) / CONFIG)
        if getattr(args, "run_dir", None) not in (None, args.resume):
            raise ValueError("--run-dir cannot differ from --resume RUN_DIR")
        args.run_dir = args.resume
    cfg = config_from_args(args, base).validate()
    check_names(cfg)
    if base is not None:  # before any data is read
        check_resume(base, cfg, Path(args.resume) / CONFIG)
    summary = train(cfg, resume=bool(args.resume))
    final = summary.get("final") or {}
    if final and os.environ.get("RANK", "0") == "0":  # one line, not one per torchrun process
        done = summary["epochs_done"]
        print(f"{cfg.model} on {cfg.dataset}: test accuracy {final['test_acc']:.4f} after "
              f"{done} epoch{'s' if done != 1 else ''} ({summary['train_seconds']:.1f} s training); "
              f"run directory {summary['run_dir']}")
    return 0
