"""``odenets eval RUN_DIR``: accuracy of a run's last checkpoint on a dataset split."""
from __future__ import annotations

HELP = "evaluate a run's checkpoint (test accuracy and loss)"
ORDER = 35


def add_parser(subparsers):
    p = subparsers.add_parser("eval", help=HELP, description=HELP + ".")
    p.add_argument("run_dir", help="a run directory written by `odenets train`")
    p.add_argument("--split", default="test", choices=("test", "train"),
                   help="split to evaluate (default: test)")
    p.add_argument("--data-dir", default=None, help="dataset directory (default: the run's)")
    p.add_argument("--subset", type=int, default=None, help="evaluate on a fixed random subset of "
                   "this many examples (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto: "
                   "cuda if available)")
    p.add_argument("--batch-size", type=int, default=512, help="evaluation batch size "
                   "(default: 512)")
    p.add_argument("--model", default=None, metavar="MODULE:FUNCTION",
                   help="the run's model, when it is a 'module:function' factory: odenets "
                   "imports it only when named here (or with --trust-run-code)")
    p.add_argument("--trust-run-code", action="store_true",
                   help="import and call the 'module:function' model the run's config.json names")
    return p


def run(args) -> int:
    import json
    from pathlib import Path

    import torch

    from .. import data as datasets
    from ..train import distributed
    from ..train.epoch import evaluate
    from ..train.model import import_from_cwd, load_run_model
    run_dir = Path(args.run_dir)
    import_from_cwd(args.model)
    model, cfg, state = load_run_model(run_dir, model=args.model,
                                       trust_run_code=args.trust_run_code)
    device = distributed.resolve_device(args.device)
    split = datasets.load_dataset(cfg.dataset, args.split, args.data_dir or cfg.data_dir, args.subset)
    model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = datasets.Loader(split, args.batch_size, train=False, device=device,
                             channels_last=cfg.channels_last)
    result = evaluate(model, loader, cfg, distributed.Dist(), device)
    print(json.dumps(dict(run_dir=str(run_dir), epoch=state["epoch"], split=args.split, **result)))
    return 0
