"""``odenets compare``: train several models with one recipe and seed, print a table.

    odenets compare --models resnet20,lm_resnet20 --dataset fashion-mnist --epochs 2

Every model gets the same data, subset, schedule and seed; each run is a normal run directory
under ``--out``, and ``compare.json`` there holds the table. Without ``--subset`` the comparison
trains on a fixed 30,000-image subset of the training set (``--subset all`` for all of it), so
the default finishes in a few minutes on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..train import config_from_args
from ..train.checkpoint import NAME
from ..train.loop import train_validated, validate
from ..train.model import build_model, import_from_cwd
from ..train.progress import format_eta
from ..train.rundir import run_marker, write_json

HELP = "train several models with the same recipe and seed and compare them"
ORDER = 15
DEFAULT_SUBSET = 30000  # images per epoch when --subset is not given ("all": the whole training set)
COLUMNS = ("model", "params", "test_acc", "vs first", "train_s", "img_per_s")
CAVEAT = ("One seed and a short run: differences of about a point or less are inside seed noise "
          "and say nothing about the schemes. The converged, paired 5-seed comparison with 95% "
          "confidence intervals: python benchmarks/converged.py (results in the README).")


def subset_arg(text: str):
    """``--subset``: a positive number of images, or 'all' (None: the whole training set). 0 is
    an error, as in `odenets train`."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of images or 'all', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of images or 'all' (the whole "
                                         f"split), got {value}")
    return value
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
    p.add_argument("--subset", type=subset_arg, default=DEFAULT_SUBSET, metavar="N|all",
                   help="train on a fixed random subset of this many training images; 'all' = "
                   f"the whole training set (default: {DEFAULT_SUBSET})")
    add_arguments(p, skip=("model", "run_dir", "subset"))
    return p


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the comparison rows."""
    first = rows[0]["test_acc"] if rows else 0.0
    cells = [COLUMNS] + [(r["model"], f"{r['params']:,}", f"{r['test_acc']:.4f}",
                          "—" if i == 0 else f"{(r['test_acc'] - first) * 100:+.2f} pts",
                          f"{r['train_s']:.1f}", f"{r['img_per_s']:.0f}")
                         for i, r in enumerate(rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])


def overall_progress(done: int, models: int, epochs: int, elapsed: float) -> str:
    """'[model 2/3, epochs 3-4 of 6] 1:40 elapsed, about 3:20 left': where the comparison stands
    before model ``done`` (0-based) starts; time left = mean time per model so far x models left."""
    head = f"[model {done + 1}/{models}, epochs {done * epochs + 1}-{(done + 1) * epochs} of {models * epochs}]"
    if not done:
        return f"{head} (time left: known after the first model)"
    return f"{head} {format_eta(elapsed)} elapsed, about {format_eta(elapsed / done * (models - done))} left"


def untrained_coefficients(model) -> dict[str, list[int]]:
    """``{"<flow path>.<name>": [step, ...]}``: coefficient entries of ``model`` that never reach
    its output. An LM flow that starts without history (a network's first stage without a
    transition) takes a forward-Euler first step (u_{-1} = u_0), so its k_0 gets no gradient."""
    from ..flow import Flow
    stages = getattr(model, "stages", None)
    first = stages[0] if stages is not None and len(stages) else None
    flow = getattr(first, "flow", None)
    if isinstance(flow, Flow) and getattr(first, "transition", None) is None and flow.scheme.name == "lm":
        return {"stages.0.flow.k": [0]}
    return {}


def format_coefficients(rows: list[dict]) -> list[str]:
    """One line per model with learned scheme coefficients: their range and mean per name
    (LM-ResNet's k_n: k < 0 damps, k > 0 adds momentum; see docs), leaving out the entries
    ``row["untrained"]`` names (`untrained_coefficients`), which keep their initial value."""
    lines = []
    for r in rows:
        values, skipped = {}, []
        untrained = r.get("untrained") or {}
        for key, vals in (r.get("coefficients") or {}).items():
            vals = vals if isinstance(vals, list) else [vals]
            drop = set(untrained.get(key, ()))
            skipped += [f"{key.rsplit('.', 1)[-1]}_{i} of {key.rsplit('.', 1)[0]}" for i in sorted(drop)]
            values.setdefault(key.rsplit(".", 1)[-1], []).extend(
                v for i, v in enumerate(vals) if isinstance(v, (int, float)) and i not in drop)
        parts = [f"{name}_n in [{min(v):+.3f}, {max(v):+.3f}], mean {sum(v) / len(v):+.3f} "
                 f"over {len(v)} steps" for name, v in values.items() if v]
        if parts:
            note = f" ({', '.join(skipped)}: never trained, left out)" if skipped else ""
            lines.append(f"{r['model']}: learned " + "; ".join(parts) + note)
    return lines


def check_out(out: Path) -> None:
    """Raise ValueError if ``out`` is, or lies inside, a training run directory (`run_marker`):
    the comparison's runs and compare.json would land among another run's files."""
    for directory in (out, *out.absolute().parents):
        marker = run_marker(directory)
        if marker is not None:
            where = "is" if directory == out else f"lies inside {directory}, which is"
            raise ValueError(f"--out {out} {where} a training run directory (it holds {marker}); "
                             "pass a new or empty directory for the comparison, e.g. --out "
                             "runs/compare-NAME")


def run(args) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in models:  # typed on the command line: import 'module:function' from ./ too
        import_from_cwd(name)
    if not models:
        raise ValueError("--models needs at least one model name")
    if len(set(models)) != len(models):
        raise ValueError(f"--models lists a model twice: {args.models}")
    out = Path(args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}")
    check_out(out)
    configs, specs = [], []
    for name in models:  # check every name before training anything
        args.model, args.run_dir = name, str(out / name.replace(":", "_"))
        cfg = config_from_args(args)
        specs.append(validate(cfg))
        if (Path(cfg.run_dir) / NAME).exists():  # train() would refuse it, after earlier models
            raise ValueError(f"{cfg.run_dir} already holds a run; choose another --out")
        configs.append(cfg)
    rows, start = [], time.perf_counter()
    for i, (cfg, spec) in enumerate(zip(configs, specs)):
        print(overall_progress(i, len(configs), cfg.epochs, time.perf_counter() - start), flush=True)
        if cfg.compile:  # a fresh compile cache per model: torch.compile allows a few recompiles
            torch._dynamo.reset()  # of one forward (every preset's), then silently runs eager
        summary = train_validated(cfg, spec)
        final = summary["final"]
        with torch.random.fork_rng():  # the layout only: which coefficients are never trained
            untrained = untrained_coefficients(build_model(cfg, spec.num_classes, spec.input_size[0]))
        rows.append(dict(model=cfg.model, params=summary["params"], test_acc=final["test_acc"],
                         coefficients=final.get("coefficients") or {}, untrained=untrained,
                         train_s=summary["train_seconds"],
                         img_per_s=final["img_per_s"],
                         run_dir=summary["run_dir"]))
    cfg = configs[0].to_dict()
    recipe = {k: v for k, v in cfg.items() if k not in ("model", "run_dir")}
    write_json(out / "compare.json", dict(rows=rows, recipe=recipe))
    epochs = f"{cfg['epochs']} epoch{'s' if cfg['epochs'] != 1 else ''}"
    print(f"{cfg['dataset']}, {epochs}, subset {cfg['subset'] or 'all'}, seed {cfg['seed']} "
          f"(img/s: last epoch's training throughput)")
    print(format_table(rows))
    for line in format_coefficients(rows):
        print(line)
    print(CAVEAT)
    print(f"runs and compare.json in {out}")
    return 0
