"""Shared pieces of the training benchmarks (compare_schemes.py, sde_noise.py).

    recipe = Recipe.preset("quick", dataset="fashion-mnist")
    row, model = train_one("lm_resnet20", seed=0, recipe=recipe)      # one run, model kept
    stats = mean_std([r["test_acc"] for r in rows])

Every run goes through `odenets.train.train` (same loader, optimiser, schedule and evaluation
as ``odenets train``) in a temporary run directory that is deleted afterwards, or, given
``work_dir`` (a resumable campaign's ``partial/<run>__<key>/``), in a persistent one that a
killed run continues from its last checkpoint (`_partial`). The model is
built here, after ``torch.manual_seed(seed)``, exactly as `train` would build it, so that
callers can evaluate it further (e.g. under input noise) once training is done.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _partial  # noqa: E402
import odenets  # noqa: E402
from odenets import atomic, data as datasets  # noqa: E402
from odenets.train import TrainConfig, train  # noqa: E402
from odenets.train.distributed import resolve_device  # noqa: E402
from odenets.train.epoch import autocast  # noqa: E402
from odenets.train.recipes import recipe_values  # noqa: E402
from odenets.train.model import build_model  # noqa: E402

CONFIGS = ("tiny", "quick", "full", "converged", "long")


@dataclass
class Recipe:
    """One training recipe shared by every model of a benchmark (the 'same budget')."""

    dataset: str = "fashion-mnist"     # dataset name (odenets list datasets)
    data_dir: str | None = None        # where the dataset files are (None: default places)
    epochs: int = 1                    # passes over the (sub)set
    subset: int | None = None          # training images per epoch (None: all)
    test_subset: int | None = None     # test images (None: all)
    batch_size: int = 128              # SGD batch
    lr: float = 0.1                    # peak learning rate
    schedule: str = "onecycle"         # odenets.train schedule name
    weight_decay: float = 5e-4         # L2 on conv/linear weights
    device: str = "auto"               # auto: cuda if available
    amp: str = "auto"                  # bf16 autocast if a start-up probe times it faster, else fp32
    compile: bool = False              # torch.compile the model
    augment: bool = True               # the dataset's crop/flip
    precise_bn: int = 0                # batches recomputing BatchNorm statistics before each evaluation
    warmup_epochs: float = 0.0         # linear warm-up (onecycle: 0 = 30% of the run)
    label_smoothing: float = 0.0       # of the cross-entropy loss
    val_split: int = 0                 # training images held out for validation (0: none)

    @classmethod
    def preset(cls, config: str, dataset: str = "fashion-mnist", **overrides) -> "Recipe":
        """The recipe of a named configuration.

        tiny:  smoke tests, a few seconds (64 images, 1 epoch).
        quick: the committed CPU results; one short pass over a fixed 2,560-image subset (batch 32,
               lr 0.05, cosine, no augmentation: what learns most in 80 steps), 1,000 test
               images, so a whole benchmark finishes in ~10 minutes on 2 CPU cores. BatchNorm
               statistics are recomputed on 16 batches before evaluation (after 80 steps the
               running averages lag the weights, most for fields called several times per step).
        full:  the GPU configuration: the whole training set, the paper's step schedule
               (lr 0.1, /10 at 50% and 75%), 160 epochs on CIFAR, 30 on Fashion-MNIST;
               BatchNorm statistics recomputed on 64 batches (8,192 images) before evaluation.
        converged: `odenets train --recipe converged` (odenets/train/recipes.py): resnet20 at
               >= 93% on the full Fashion-MNIST in ~10 CPU minutes; 5,000 validation images.
        long:  `odenets train --recipe long`: converged over 60 epochs instead of 10, nothing
               else changed (how far 10 epochs are from fully trained; issue 22, item 5).
        """
        if config not in CONFIGS:
            raise ValueError(f"unknown configuration {config!r}; available: {', '.join(CONFIGS)}")
        if config == "tiny":
            base = dict(epochs=1, subset=64, test_subset=64, batch_size=32, lr=0.05)
        elif config == "quick":
            base = dict(epochs=1, subset=2560, test_subset=1000, batch_size=32, lr=0.05,
                        schedule="cosine", augment=False, precise_bn=16)
        elif config in ("converged", "long"):
            fields = {f.name for f in dataclasses.fields(cls)}
            base = {k: v for k, v in recipe_values(config).items() if k in fields}
        else:
            cifar = dataset.startswith("cifar")
            base = dict(epochs=160 if cifar else 30, schedule="step", lr=0.1, weight_decay=1e-4,
                        precise_bn=64)
        recipe = cls(dataset=dataset, **base)
        return dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def configuration_label(config: str, recipe: dict) -> str:
    """``config``, followed by what the run changed of its preset recipe (``--epochs`` etc.):
    'quick', 'quick with epochs=3, subset=20000'."""
    try:
        preset = Recipe.preset(config, dataset=recipe["dataset"]).to_dict()
    except (KeyError, ValueError):
        return config
    changed = [f"{k}={recipe[k]}" for k in preset
               if k not in ("dataset", "data_dir", "device") and k in recipe and recipe[k] != preset[k]]
    return config + (f" with {', '.join(changed)}" if changed else "")


def run_description(payload: dict) -> str:
    """The line under a result's markdown title: device, torch, seeds, recipe and wall time."""
    env, recipe = payload["env"], payload["recipe"]
    return (f"Device: {env['device']} ({env['device_type']}), torch {env['torch']}; seeds "
            f"{payload['seeds']}; recipe: {recipe['epochs']} epoch(s), subset {recipe['subset'] or 'all'}, "
            f"test subset {recipe['test_subset'] or 'all'}, batch {recipe['batch_size']}, lr "
            f"{recipe['lr']} ({recipe['schedule']})"
            + (f", BatchNorm statistics recomputed on {recipe['precise_bn']} batches before "
               f"evaluation" if recipe.get("precise_bn") else "")
            + f"; total wall time {payload['wall_seconds']:.0f} s.")


def default_dataset(dataset: str | None, data_dir: str | None) -> str:
    """Fashion-MNIST unless ``--data-dir`` is given (then CIFAR-10), or what ``--dataset`` says."""
    if dataset:
        datasets.get_spec(dataset)  # ValueError listing the datasets
        return dataset
    return "cifar10" if data_dir else "fashion-mnist"


def model_meta(name: str, dataset: str, **overrides) -> dict:
    """Parameters, field evaluations per forward and MACs per image of preset ``name``."""
    spec = datasets.get_spec(dataset)
    meta = odenets.info(name, input_size=(1, *spec.input_size), num_classes=spec.num_classes,
                        **overrides)
    return {k: meta[k] for k in ("params", "coefficients", "blocks", "evaluations", "macs")}


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when given (ValueError unless a positive integer)."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)


def train_one(name: str, seed: int, recipe: Recipe, overrides: dict | None = None, keep_model=False,
              work_dir: str | None = None):
    """Train preset ``name`` (with `NetConfig` ``overrides``) once; returns ``(row, model)``.

    row: test_acc, train_seconds (training epochs only), wall_seconds (data, training and
    evaluation), img_per_s (training images / training seconds), params, seed, curve (per
    epoch), amp_used ('bf16' or 'fp32': what ``amp`` resolved to on this device),
    compile_used, and, for models with continuous flows, nfe_per_step (per epoch: forward and
    backward field evaluations per training step). ``model`` is the
    trained module (eval mode, on the training device) when ``keep_model``, else None.

    With ``work_dir`` the run checkpoints there after every epoch and continues from the last
    checkpoint when called again (`_partial.prepare`); the caller removes ``work_dir`` once the
    result is stored. The row then also holds ``resumed_from_epoch``, ``pieces`` (each
    ``from_epoch``, ``to_epoch``, ``seconds``) and ``discarded``; ``wall_seconds`` is this
    piece's, and ``train_seconds`` (from the per-epoch history) covers every piece.
    """
    overrides = dict(overrides or {})
    spec = datasets.get_spec(recipe.dataset)
    tmp = None if work_dir else Path(tempfile.mkdtemp(prefix="odenets-bench-"))
    run_dir = Path(work_dir) / _partial.RUN if work_dir else tmp / "run"
    cfg = TrainConfig(**recipe.to_dict(), model=name, seed=seed, run_dir=str(run_dir),
                      progress=False, model_args=overrides, log_every=50)
    start = time.perf_counter()
    if recipe.compile:  # drop earlier runs' compiled code: dynamo's limit of 8 compilations per code
        from torch import _dynamo  # object (every preset's forward) would silently run later ones eager
        _dynamo.reset()
    try:
        torch.manual_seed(seed)
        model = build_model(cfg, spec.num_classes, spec.input_size[0])
        resume, pieces = (_partial.prepare(work_dir, cfg, model, f"{name} seed {seed}")
                          if work_dir else (False, None))
        summary = train(cfg, model=model, resume=resume)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - start
    final = summary["final"]
    images = final["train_images"] * summary["epochs_done"]
    row = dict(seed=seed, test_acc=final["test_acc"], test_loss=final["test_loss"],
               val_acc=final.get("val_acc"), epochs=summary["epochs_done"],
               train_images=final["train_images"],
               curve=[dict(epoch=r["epoch"], train_loss=r["train_loss"], val_acc=r.get("val_acc"),
                           test_acc=r["test_acc"]) for r in summary["history"]],
               train_acc=final["train_acc"], train_seconds=summary["train_seconds"],
               wall_seconds=wall, img_per_s=images / summary["train_seconds"],
               params=summary["params"], coefficients=final.get("coefficients") or {},
               amp_used="bf16" if isinstance(autocast(resolve_device(recipe.device), recipe.amp),
                                             torch.autocast) else "fp32",
               compile_used=bool(recipe.compile))
    if any("nfe_per_step" in r for r in summary["history"]):  # continuous flows: NFE per epoch
        row["nfe_per_step"] = [r.get("nfe_per_step", {}) for r in summary["history"]]
    if pieces is not None:
        row.update(_partial.finish(pieces, summary["epochs_done"], wall))
    model.eval()
    return row, (model if keep_model else None)


def mean_std(values) -> dict:
    """``{"mean", "std", "n", "values"}`` (sample standard deviation; 0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        return dict(mean=None, std=None, n=0, values=[])
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return dict(mean=statistics.fmean(values), std=std, n=len(values), values=values)


def pm(stats: dict, scale: float = 100.0, digits: int = 2) -> str:
    """'mean ± std' of a `mean_std` dict (accuracies shown in percent by default)."""
    if stats.get("mean") is None:
        return "—"
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"


def significant(a: dict, b: dict, z: float = 2.0) -> bool:
    """Whether two `mean_std` results differ by more than ``z`` standard errors of the difference."""
    if a["n"] < 2 or b["n"] < 2:
        return False
    se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    return abs(a["mean"] - b["mean"]) > z * se if se > 0 else a["mean"] != b["mean"]


def markdown_table(headers, rows) -> str:
    """A GitHub markdown table; ``rows`` are sequences of cells (converted with str)."""
    lines = ["| " + " | ".join(map(str, headers)) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def parse_list(text: str, kind=str) -> list:
    """'a,b,c' -> [kind(a), kind(b), kind(c)] (ValueError naming the bad item)."""
    out = []
    for item in (t.strip() for t in str(text).split(",")):
        if not item:
            continue
        try:
            out.append(kind(item))
        except ValueError:
            raise ValueError(f"bad list item {item!r} in {text!r} (expected {kind.__name__})") from None
    if not out:
        raise ValueError(f"empty list {text!r}")
    return out


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, stem: Path, suffix: str) -> list[str]:
    """Lay out, save as ``<stem>_<suffix>.png`` (110 dpi) and close ``fig``: [its file name]."""
    fig.tight_layout()
    out = stem.parent / f"{stem.name}_{suffix}.png"
    try:
        atomic.save_figure(fig, out, dpi=110)  # a full disk leaves no 0-byte PNG
    finally:
        pyplot().close(fig)
    return [out.name]


MARKERS = "os^vDP<>pXh*d8H"


def model_styles(names) -> dict:
    """One distinct (colour, marker) per name, in order: matplotlib's ten colours, then the
    lighter halves of tab20, each with its own marker (15 names before a marker repeats)."""
    from matplotlib import colormaps
    tab20 = colormaps["tab20"].colors
    colors = [tab20[i] for i in range(0, 20, 2)] + [tab20[i] for i in range(1, 20, 2)]
    return {name: (colors[i % len(colors)], MARKERS[i % len(MARKERS)])
            for i, name in enumerate(dict.fromkeys(names))}


def plain_axis(axis) -> None:
    """Tick labels as plain numbers (no offset or 1e7 multiplier at the axis end)."""
    from matplotlib.ticker import ScalarFormatter
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)


def save_results(payload: dict, name: str, device, out_dir, plot, markdown) -> Path:
    """Write ``<name>_<device>.json`` (in ``out_dir`` or benchmarks/results/), its plots (names
    stored in ``payload["plots"]``) and markdown beside it; print the markdown. Plots that cannot
    be drawn (no matplotlib, as on a bare GPU image) are left out (``payload["plot_error"]``),
    never the results."""
    from _common import result_path, write_json
    path = result_path(name, device, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.with_suffix("")
    try:
        payload["plots"] = plot(payload, stem)
    except Exception as e:
        traceback.print_exc()
        payload["plots"], payload["plot_error"] = [], f"{type(e).__name__}: {e}"
    write_json(path, payload)
    stem.with_suffix(".md").write_text(markdown(payload) + "\n")
    print(markdown(payload))
    print(f"wrote {path}, {stem.name}.md and {', '.join(payload['plots']) or 'no plots'}")
    return path
