"""``odenets eval RUN_DIR`` or ``odenets eval --pretrained NAME``: accuracy of a run's last
checkpoint, or of the weights shipped with odenets for preset NAME (`odenets.pretrained`, no
training, no download), on a split of the run's (the weights') dataset.

``--solver S [--steps N]`` re-unrolls the trained fields with another scheme (and, for tied
flows, another number of steps) first: is the trained network an ODE? (`odenets.resolve`)."""
from __future__ import annotations

from .compare import subset_arg

HELP = "evaluate a run's checkpoint or a preset's pretrained weights (test accuracy and loss)"
ORDER = 35


def add_parser(subparsers):
    p = subparsers.add_parser("eval", help=HELP, description=HELP + ".")
    p.add_argument("run_dir", nargs="?", default=None,
                   help="a run directory written by `odenets train` (or give --pretrained)")
    p.add_argument("--pretrained", default=None, metavar="NAME",
                   help="evaluate preset NAME's weights shipped with odenets (no training, no "
                   "download; odenets.list_models(pretrained=True) lists them) instead of a run, "
                   "on the dataset they were trained on, in the precision they were trained in")
    p.add_argument("--split", default="test", choices=("test", "train"),
                   help="split to evaluate (default: test)")
    p.add_argument("--data-dir", default=None, help="dataset directory (default: the run's, "
                   "or the dataset's default for --pretrained)")
    p.add_argument("--subset", type=lambda text: subset_arg(text) or "all", default=None, metavar="N|all",
                   help="evaluate on a fixed random subset of this many examples, or 'all' "
                   "(default: the test subset the run was trained with, if any, else all)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto: "
                   "cuda if available)")
    p.add_argument("--batch-size", type=int, default=512, help="evaluation batch size "
                   "(default: 512)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON record")
    p.add_argument("--solver", default=None, help="re-unroll the trained fields with this scheme "
                   "(e.g. a ResNet trained as euler, evaluated with midpoint or rk4; or a "
                   "continuous solver such as dopri5 for tied flows); schemes with learnable "
                   "coefficients the run did not learn are refused (default: the run's)")
    p.add_argument("--steps", type=int, default=None, help="steps of every tied flow, on the same "
                   "time interval (untied flows keep their trained steps) (default: the trained)")
    p.add_argument("--solver-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option of --solver (repeatable), e.g. k=-0.05 to fix LM's k")
    p.add_argument("--model", default=None, metavar="MODULE:FUNCTION",
                   help="the run's model, when it is a 'module:function' factory: odenets "
                   "imports it only when named here (or with --trust-run-code)")
    p.add_argument("--trust-run-code", action="store_true",
                   help="import and call the 'module:function' model the run's config.json names")
    return p


def load(args):
    """``(model, cfg, epoch)``: the run directory's network and config, or preset
    ``--pretrained``'s shipped weights with a config for its registry dataset (precision as
    trained, channels_last, no test subset)."""
    from pathlib import Path

    from ..train.model import import_from_cwd, load_run_model
    if (args.run_dir is None) == (args.pretrained is None):
        given = "both" if args.run_dir is not None else "neither"
        raise ValueError(f"give a run directory or --pretrained NAME, exactly one of them "
                         f"({given} given)")
    if args.pretrained is not None:
        if args.model is not None or args.trust_run_code:
            raise ValueError("--model and --trust-run-code are for run directories, not "
                             f"--pretrained {args.pretrained}")
        import odenets
        from ..pretrained import entry
        from ..train import TrainConfig
        info = entry(args.pretrained)
        model = odenets.create(args.pretrained, pretrained=True)
        cfg = TrainConfig(model=args.pretrained, dataset=info["dataset"],
                          amp="bf16" if info.get("precision") == "bf16" else "off")
        return model, cfg, info.get("epochs")
    import_from_cwd(args.model)
    model, cfg, state = load_run_model(Path(args.run_dir), model=args.model,
                                       trust_run_code=args.trust_run_code)
    return model, cfg, state["epoch"]


def run(args) -> int:
    import json
    import sys

    import torch

    from .. import data as datasets
    from ..train import distributed
    from ..train.epoch import evaluate
    from ..train.progress import progress
    model, cfg, epoch = load(args)
    resolved = {}
    if args.solver is not None or args.steps is not None or args.solver_opt:
        from ..resolve import parse_options, with_solver
        model, notes = with_solver(model, args.solver, args.steps, **parse_options(args.solver_opt))
        resolved = dict(solver=args.solver or "trained", steps=args.steps or "trained", notes=notes)
    device = distributed.resolve_device(args.device)
    subset, which = args.subset, "--subset"
    if subset == "all":
        subset = None
    elif subset is None and args.split == "test" and cfg.test_subset:
        subset, which = cfg.test_subset, "the run's --test-subset; --subset all for the whole split"
    split = datasets.load_dataset(cfg.dataset, args.split, args.data_dir or cfg.data_dir, subset)
    model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = datasets.Loader(split, args.batch_size, train=False, device=device,
                             channels_last=cfg.channels_last)
    bar = progress(len(loader), out=sys.stderr)  # a bar on a terminal, else a line every 30 s
    try:
        result = evaluate(model, loader, cfg, distributed.Dist(), device, bar, f"eval {args.split}")
    finally:
        bar.close()
    where = dict(pretrained=args.pretrained) if args.pretrained else dict(run_dir=str(args.run_dir))
    record = dict(**where, epoch=epoch, split=args.split, **resolved, **result)
    if args.json:
        print(json.dumps(record))
    else:
        images = f"{result['images']} images" + (f" ({which})" if subset else " (all)")
        solver = (f" solved with {resolved['solver']}" + (f", {resolved['steps']} steps" if resolved.get("steps") else "")
                  if resolved.get("solver") else "")
        trained = f"pretrained ({epoch} epochs)" if args.pretrained else f"after epoch {epoch}"
        print(f"{cfg.model} {trained} on {cfg.dataset} {args.split}{solver}, {images}: "
              f"accuracy {result['acc']:.4f}, loss {result['loss']:.4f}")
        for note in resolved.get("notes") or []:
            print(f"note: {note}")
    return 0
