"""``odenets eval RUN_DIR``: accuracy of a run's last checkpoint on a dataset split.

``--solver S [--steps N]`` re-unrolls the trained fields with another scheme (and, for tied
flows, another number of steps) first: is the trained network an ODE? (`odenets.resolve`)."""
from __future__ import annotations

from .compare import subset_arg

HELP = "evaluate a run's checkpoint (test accuracy and loss)"
ORDER = 35


def add_parser(subparsers):
    p = subparsers.add_parser("eval", help=HELP, description=HELP + ".")
    p.add_argument("run_dir", help="a run directory written by `odenets train`")
    p.add_argument("--split", default="test", choices=("test", "train"),
                   help="split to evaluate (default: test)")
    p.add_argument("--data-dir", default=None, help="dataset directory (default: the run's)")
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


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    import torch

    from .. import data as datasets
    from ..train import distributed
    from ..train.epoch import evaluate
    from ..train.model import import_from_cwd, load_run_model
    from ..train.progress import progress
    run_dir = Path(args.run_dir)
    import_from_cwd(args.model)
    model, cfg, state = load_run_model(run_dir, model=args.model,
                                       trust_run_code=args.trust_run_code)
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
    record = dict(run_dir=str(run_dir), epoch=state["epoch"], split=args.split, **resolved, **result)
    if args.json:
        print(json.dumps(record))
    else:
        images = f"{result['images']} images" + (f" ({which})" if subset else " (all)")
        solver = (f" solved with {resolved['solver']}" + (f", {resolved['steps']} steps" if resolved.get("steps") else "")
                  if resolved.get("solver") else "")
        print(f"{cfg.model} after epoch {state['epoch']} on {cfg.dataset} {args.split}{solver}, {images}: "
              f"accuracy {result['acc']:.4f}, loss {result['loss']:.4f}")
        for note in resolved.get("notes") or []:
            print(f"note: {note}")
    return 0
