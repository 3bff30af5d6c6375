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
    p.add_argument("--trust-run-code", action="store_true",
                   help="with --resume: import and call the 'module:function' model the run's "
                   "config.json names (otherwise it must be given again with --model)")
    add_arguments(p)
    return p


def run(args) -> int:
    import os
    from pathlib import Path

    from ..train import config_from_args
    from ..train.config import check_resume, read_config
    from ..train.loop import train_validated, validate
    from ..train.model import check_run_model, import_from_cwd
    from ..train.rundir import CONFIG
    base = None
    given = getattr(args, "model", None)  # only what the user typed (defaults are suppressed)
    if args.resume:
        base = read_config(Path(args.resume) / CONFIG).to_dict()
        if getattr(args, "run_dir", None) not in (None, args.resume):
            raise ValueError("--run-dir cannot differ from --resume RUN_DIR")
        args.run_dir = args.resume
    else:
        import_from_cwd(given)
    cfg = config_from_args(args, base)
    spec = validate(cfg)  # the one check of the config and its names; train_validated trusts them
    if base is not None:  # before any data is read or any code the run names is imported
        check_resume(base, cfg, Path(args.resume) / CONFIG)
        trust = getattr(args, "trust_run_code", False)
        check_run_model(base["model"], Path(args.resume) / CONFIG, given, trust)
        import_from_cwd(base["model"] if trust else given)
    summary = train_validated(cfg, spec, resume=bool(args.resume))
    final = summary.get("final") or {}
    if final and os.environ.get("RANK", "0") == "0":  # one line, not one per torchrun process
        done = summary["epochs_done"]
        print(f"{cfg.model} on {cfg.dataset}: test accuracy {final['test_acc']:.4f} after "
              f"{done} epoch{'s' if done != 1 else ''} ({summary['train_seconds']:.1f} s training); "
              f"run directory {summary['run_dir']}")
    return 0
