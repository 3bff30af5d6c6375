"""``odenets eval RUN_DIR``: accuracy of a run's last checkpoint on a dataset split."""
from __future__ import annotations

HELP = "evaluate a run's checkpoint (test accuracy and loss)"
ORDER = 35


def add_parser(subparsers):
    p = subparsers.add_parser("eval", help=HELP, description=HELP + ".")
    p.add_argument("run_dir", help="a run directory written by `odenets train`")
    p.add_argument("--split", default="test", choices=("test", "train"), help="split to evaluate")
    p.add_argument("--data-dir", default=None, help="dataset directory (default: the run's)")
    p.add_argument("--subset", type=int, default=None, help="evaluate on this many examples only")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=512, help="evaluation batch size")
    return p


def run(args) -> int:
    import json
    from pathlib import Path

    import torch

    from .. import data as datasets
    from ..train import checkpoint, distributed
    from ..train.config import TrainConfig
    from ..train.epoch import evaluate
    from ..train.model import build_model
    from ..train.rundir import CONFIG, read_json
    run_dir = Path(args.run_dir)
    cfg = TrainConfig.from_dict(read_json(run_dir / CONFIG))
    state = checkpoint.load(run_dir / checkpoint.NAME)
    device = distributed.resolve_device(args.device)
    split = datasets.load_dataset(cfg.dataset, args.split, args.data_dir or cfg.data_dir, args.subset)
    model = build_model(cfg, split.num_classes, split.channels)
    model.load_state_dict(state["model"])
    model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = datasets.Loader(split, args.batch_size, train=False, device=device,
                             channels_last=cfg.channels_last)
    result = evaluate(model, loader, cfg, distributed.Dist(), device)
    print(json.dumps(dict(run_dir=str(run_dir), epoch=state["epoch"], split=args.split, **result)))
    return 0
