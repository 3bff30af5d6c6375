"""`train(cfg)`: data, model, optimiser, the epoch loop, checkpoints and metrics of one run.

Reproducibility: weights are initialised after ``torch.manual_seed(seed + rank)``, then the
global RNG is re-seeded from (seed, rank) so that training noise does not depend on how much
randomness the initialisation used; the data order and augmentation of epoch e are functions of
(seed, e, rank); the torch RNG state (model noise such as dropout or stochastic depth) and the
states of generators the model's noise owns (a scheme's ``seed=``) are saved in every
checkpoint and restored on resume. A run resumed from its last checkpoint therefore replays
exactly what the killed run would have done, and on CPU reaches bit-identical weights.

With ``precise_bn=K`` the BatchNorm running statistics are recomputed from K training batches
before each evaluation (`precise_bn.recompute_bn_stats`) and averaged over ranks; the RNG states
are restored around it, so the weights are those of the same run without it.

``amp='auto'`` and ``compile='auto'`` are resolved by timing a few training steps at start-up
(`probe.choose`); the choice and the probe's times are in the summary (``speed``).

The file reads top to bottom: the boundary (`validate`), `_train` (the run in a dozen lines),
then its phases: setup, epoch, evaluate, checkpoint.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import data as datasets
from ..build import coefficients
from ..continuous import reset_nfe, total_nfe
from ..data import DatasetSpec, ImageData, Loader
from ..fields.shake import merge_branch_optimizer_state
from . import checkpoint, distributed, progress, rundir, tblog
from .config import TrainConfig
from .epoch import TrainingDivergedError, average_buffers, evaluate, precise_bn, train_epoch
from .model import build_model, check_model_name, check_solver_name, count_parameters
from .optim import build_optimizer, lr_factor
from .probe import choose as choose_speed


# -- the boundary: every input checked once, before any data is read ------------------------------
def validate(cfg: TrainConfig, *, model: nn.Module | None = None) -> DatasetSpec:
    """Check everything a run is given and return the dataset's `DatasetSpec`: the config's
    fields (`TrainConfig.validate`), then the names (`check_names`). Raises ValueError naming the
    bad value and the allowed ones. What runs after it trusts ``cfg``."""
    cfg.validate()
    return check_names(cfg, model=model)


def check_names(cfg: TrainConfig, *, model: nn.Module | None = None) -> DatasetSpec:
    """The dataset's `DatasetSpec`, after checking the dataset, model and solver names (model
    and solver only when no ready ``model`` replaces ``cfg.model``); unknown names raise
    ValueError listing the valid ones."""
    spec = datasets.get_spec(cfg.dataset)
    if model is None:
        check_model_name(cfg.model)
        if cfg.solver is not None:
            check_solver_name(cfg.solver)
    return spec


def train(cfg: TrainConfig, *, model: nn.Module | None = None, resume: bool = False) -> dict:
    """Run (or with ``resume``, continue) training as ``cfg`` says; returns the summary dict.

    ``model`` replaces ``cfg.model`` by a ready module (tests, notebooks). Raises ValueError on
    a bad config or name (`validate`), before any data is read; `TrainingDivergedError` if the
    loss becomes NaN/inf, or the test loss does at the end of an epoch (the update after the
    last checked step broke the weights); the last good checkpoint is kept.
    """
    return train_validated(cfg, validate(cfg, model=model), model=model, resume=resume)


def train_validated(cfg: TrainConfig, spec: DatasetSpec, *, model: nn.Module | None = None,
                    resume: bool = False) -> dict:
    """`train` for a ``cfg`` that `validate` has passed, ``spec`` being what it returned (the
    command line validates, checks a ``--resume`` against the run, then calls this)."""
    info, device = distributed.setup(cfg.device)
    finished = False
    try:
        with contextlib.ExitStack() as held:  # the run directory's lock, while training
            summary = _train(cfg, spec, info, device, model, resume, held)
        finished = True
        return summary
    finally:
        distributed.teardown(info, finished=finished)


def _train(cfg, spec, info, device, model, resume, held) -> dict:
    """The run: setup, then per epoch train, evaluate, checkpoint; the summary at the end."""
    run = _setup(cfg, spec, info, device, model, resume)
    if info.main:  # one process writes a run: lock it (until train returns), mark it ours
        held.enter_context(rundir.claim(run.dir, resume))
    start_epoch, history = _restore(run) if resume else (0, [])
    _start_run_dir(run, history)
    summary = _start_training(run, start_epoch)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            stats, curve = _train_epoch(run, epoch)
            record = _evaluate(run, epoch, stats, curve)
            _checkpoint(run, epoch, record, history)  # appends record once the checkpoint holds it
    except ValueError as e:  # e.g. the disk filled up while saving a checkpoint
        if info.main:  # epochs_done: the epochs the checkpoint holds
            with contextlib.suppress(OSError, ValueError):
                rundir.write_json(run.dir / rundir.SUMMARY, dict(
                    summary, status="failed", error=str(e), epochs_done=len(history),
                    history=history))
        raise
    except TrainingDivergedError as e:
        last = history[-1]["epoch"] if history else 0
        e.args = (f"{e.args[0]} Last good checkpoint: {run.ckpt_path} (epoch {last})" if last else
                  f"{e.args[0]} No checkpoint was written.",)
        if info.main:
            rundir.write_json(run.dir / rundir.SUMMARY, dict(summary, status="diverged", error=str(e),
                                                             epochs_done=last, history=history))
        raise
    finally:
        if run.bar is not None:
            run.bar.close()
        if run.tb is not None:
            run.tb.close()
    summary.update(status="finished", epochs_done=len(history), final=history[-1] if history else None,
                   history=history, **_best_on_validation(history),
                   train_seconds=sum(r["train_seconds"] for r in history), config=cfg.to_dict())
    if info.main:
        rundir.write_json(run.dir / rundir.SUMMARY, summary)
    return summary


# -- setup ------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """What the phases share: the config, this process, the data, the model and its optimiser."""

    cfg: TrainConfig
    info: distributed.Dist
    device: torch.device
    dir: Path
    train_data: ImageData
    val_data: ImageData | None
    test_data: ImageData
    raw: nn.Module  # the model itself: state dicts, coefficients, NFE counters
    optimizer: torch.optim.Optimizer
    train_loader: Loader
    val_loader: Loader | None
    test_loader: Loader
    ckpt_path: Path
    total_steps: int  # of the whole run (the schedule's length)
    eval_model: nn.Module | None = None  # `raw`, compiled (--compile); set by `_start_training`
    speed: dict | None = None  # amp and compile as chosen (`probe.choose`), or as a resumed run chose
    step_cfg: TrainConfig | None = None  # `cfg` with amp and compile as chosen
    train_model: nn.Module | None = None  # `eval_model`, in DDP with several processes
    tb: object = None  # TensorBoard log (--tensorboard), main process only
    bar: object = None  # progress bar (--progress), main process only
    log: object = None  # prints a line on the main process


def _setup(cfg, spec, info, device, model, resume) -> _Run:
    """Run directory (checked, not yet written), data, model, optimiser and loaders. The data
    are read first, so that a missing dataset fails before any model work."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    if cfg.tensorboard:
        tblog.summary_writer()  # missing package: fail before any work
    run_dir = Path(distributed.broadcast_object(cfg.run_dir or str(rundir.default_run_dir(cfg)), info))
    cfg.run_dir = str(run_dir)
    if info.main:  # fail fast; checked again under the run's lock (`rundir.claim`)
        rundir.check_run_dir(run_dir, resume)
    train_data, val_data = datasets.load_dataset(spec, "train", cfg.data_dir), None
    if cfg.val_split:  # the held-out images do not depend on the seed
        train_data, val_data = train_data.split(cfg.val_split, seed=0)
    train_data = train_data.subset(cfg.subset)  # --subset of what --val-split leaves
    test_data = datasets.load_dataset(spec, "test", cfg.data_dir, cfg.test_subset)
    torch.manual_seed(cfg.seed + info.rank)
    if model is None:
        model = build_model(cfg, train_data.num_classes, train_data.channels)
    torch.manual_seed(_training_seed(cfg.seed, info.rank))  # independent of what init consumed
    checkpoint.decorrelate_noise(model, info.rank)  # seeded noise: one stream per rank
    raw = model.to(device)
    if cfg.channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(raw, cfg)
    augment = spec.augment if cfg.augment else None
    loader_args = dict(device=device, seed=cfg.seed, rank=info.rank, world_size=info.world_size,
                       channels_last=cfg.channels_last)
    eval_batch = cfg.eval_batch_size * info.world_size
    train_loader = Loader(train_data, cfg.batch_size, train=True, augment=augment, **loader_args)
    return _Run(cfg, info, device, run_dir, train_data, val_data, test_data, raw, optimizer,
                train_loader=train_loader, test_loader=Loader(test_data, eval_batch, train=False, **loader_args),
                val_loader=(Loader(val_data, eval_batch, train=False, **loader_args)
                            if val_data is not None else None),
                ckpt_path=run_dir / checkpoint.NAME, total_steps=cfg.epochs * len(train_loader))


def _start_training(run: _Run, start_epoch: int) -> dict:
    """Compile and wrap the model (after a checkpoint is restored), open the logs, print the
    opening line; returns the summary's fixed part."""
    cfg, info, raw = run.cfg, run.info, run.raw
    shape = (run.train_loader.local_batch, *run.train_data.images.shape[1:])
    run.speed, run.eval_model = choose_speed(raw, cfg, shape, run.train_data.num_classes, run.device,
                                             info, chosen=run.speed)
    run.step_cfg = dataclasses.replace(cfg, amp=run.speed["amp"], compile=run.speed["compile"])
    run.train_model = run.eval_model
    if info.enabled:
        run.train_model = distributed.wrap_ddp(run.eval_model, raw, run.train_data.images.shape[1:], cfg, info, run.device)
    run.tb = tblog.open_log(run.dir) if cfg.tensorboard and info.main else None
    run.bar = progress.progress(len(run.train_loader)) if cfg.progress and info.main else None
    run.log = (run.bar.write if run.bar is not None else print) if info.main else (lambda line: None)
    val_data = run.val_data
    if start_epoch == cfg.epochs:
        run.log(f"{run.dir}: run already complete ({start_epoch}/{cfg.epochs} epochs); pass --epochs N "
                f"(N > {start_epoch}) to extend it")
    else:
        run.log(f"{cfg.model}: {count_parameters(raw):,} parameters, {len(run.train_data)} training / "
                + (f"{len(val_data)} validation / " if val_data is not None else "") +
                f"{len(run.test_data)} test images of {cfg.dataset} on {run.device} x{info.world_size}, "
                f"{_epochs_text(start_epoch, cfg.epochs)}, run directory {run.dir}")
    return dict(model=cfg.model, dataset=cfg.dataset, params=count_parameters(raw),
                train_images=len(run.train_data), test_images=len(run.test_data),
                val_images=len(val_data) if val_data is not None else 0,
                device=str(run.device), world_size=info.world_size, torch=torch.__version__,
                speed=run.speed, command=" ".join(sys.argv), run_dir=str(run.dir))


# -- epoch ------------------------------------------------------------------------------------------
def _train_epoch(run: _Run, epoch: int) -> tuple[dict, dict]:
    """Train epoch ``epoch`` (0-based); returns its stats (`epoch.train_epoch`) and its curve:
    per-step losses, correct counts and learning rates, and the field evaluations of
    continuous-depth flows (read here, before evaluation adds to them)."""
    cfg, steps = run.cfg, len(run.train_loader)
    if run.bar is not None:
        run.bar.reset(total=steps)
        run.bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
    reset_nfe(run.raw)
    first = epoch * steps
    stats = train_epoch(run.train_model, run.train_loader, run.optimizer, epoch, first,
                        run.total_steps, run.step_cfg, run.info, run.device, run.bar)
    lrs = [cfg.lr * lr_factor(first + i, run.total_steps, cfg, steps) for i in range(steps)]
    losses, correct = stats.pop("step_losses").tolist(), stats.pop("step_correct").tolist()
    if run.tb is not None:
        run.tb.steps(first, losses, lrs)
    return stats, dict(losses=losses, correct=correct, lrs=lrs, nfe=total_nfe(run.raw))


# -- evaluate ---------------------------------------------------------------------------------------
def _evaluate(run: _Run, epoch: int, stats: dict, curve: dict) -> dict:
    """The epoch's record: training stats, test (and validation) loss and accuracy after
    ``--precise-bn`` and the averaging of BatchNorm statistics over ranks, learning rate,
    scheme coefficients, training curve, NFE per step. A non-finite test loss raises
    `TrainingDivergedError`: the update after the last checked training loss broke the weights."""
    cfg, raw, steps = run.step_cfg, run.raw, len(run.train_loader)
    if cfg.precise_bn:
        precise_bn(raw, run.train_loader, epoch, cfg, run.device)
    average_buffers(raw, run.info)
    test = evaluate(run.eval_model, run.test_loader, cfg, run.info, run.device, run.bar,
                    f"epoch {epoch + 1}/{cfg.epochs} test")
    if not math.isfinite(test["loss"]):
        raise TrainingDivergedError(
            f"the weights became NaN/inf at the end of epoch {epoch + 1} (every training "
            f"loss was finite, the test loss is {test['loss']}); stopped. Lower --lr, add "
            "--warmup-epochs, or check the model.", epoch + 1, steps)
    record = dict(epoch=epoch + 1, **stats, test_loss=test["loss"], test_acc=test["acc"],
                  lr=run.optimizer.param_groups[0]["lr"], coefficients=coefficients(raw))
    if run.val_loader is not None:
        val = evaluate(run.eval_model, run.val_loader, cfg, run.info, run.device, run.bar,
                       f"epoch {epoch + 1}/{cfg.epochs} validation")
        record.update(val_loss=val["loss"], val_acc=val["acc"])
    record["train_curve"] = progress.epoch_curve(curve["losses"], curve["correct"],
                                                 run.train_loader.local_batch, epoch, curve["lrs"])
    if any(curve["nfe"].values()):
        record["nfe_per_step"] = {k: v / steps for k, v in curve["nfe"].items()}
    return record


# -- checkpoint -------------------------------------------------------------------------------------
def _restore(run: _Run) -> tuple[int, list]:
    """``(start_epoch, history)`` of a resumed run from its checkpoint, with the model,
    optimiser and RNG states restored; ``(0, [])`` if the run stopped before its first one."""
    cfg, info, run_dir, ckpt_path = run.cfg, run.info, run.dir, run.ckpt_path
    steps = len(run.train_loader)
    if not ckpt_path.exists():
        print(f"odenets: {run_dir} has no checkpoint yet (the run stopped during its first epoch); "
              "starting it from the beginning", file=sys.stderr)
        return 0, []
    if info.main:  # temp files of a run killed while saving (we hold the lock)
        for name in (checkpoint.NAME, rundir.CONFIG, rundir.SUMMARY, rundir.METRICS):
            checkpoint.remove_stale_temps(run_dir / name)
    state = checkpoint.load(ckpt_path, keys=checkpoint.KEYS)  # CPU: RNG states stay on CPU
    checkpoint.load_model_state(run.raw, state["model"], ckpt_path)
    try:
        run.optimizer.load_state_dict(merge_branch_optimizer_state(state["optimizer"], run.optimizer))
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ValueError(f"{ckpt_path}: its optimizer state does not fit this model's "
                         f"optimizer: {checkpoint._first_line(e)}") from None
    if not isinstance(state["history"], list) or not all(isinstance(r, dict) for r in state["history"]):
        raise ValueError(f"{ckpt_path}: 'history' must be a list of per-epoch records")
    start_epoch, history = state["epoch"], list(state["history"])
    was = state.get("schedule") if isinstance(state.get("schedule"), dict) else {}
    if start_epoch > cfg.epochs:
        raise ValueError(f"{run_dir} has {start_epoch} epochs, more than --epochs {cfg.epochs}: "
                         f"a run cannot be shortened; pass --epochs N (N > {start_epoch}) to "
                         "extend it")
    moved = (was.get("total"), was.get("step")) != (run.total_steps, start_epoch * steps)
    if info.main and moved and start_epoch < cfg.epochs:
        print(f"odenets: note: the {cfg.schedule} schedule now spans {run.total_steps} steps, resuming "
              f"at step {start_epoch * steps} (the checkpoint was at step "
              f"{was.get('step')} of {was.get('total')}): --epochs, --batch-size or --subset "
              "changed, so the learning rates from here differ from the original run's",
              file=sys.stderr)
    run.speed = state.get("speed")  # 'auto' settings keep the choice the run made
    rng = state["rng"]  # and the model's own noise generators (seed= of a stochastic scheme)
    try:
        checkpoint.set_rng_state(rng[info.rank] if len(rng) == info.world_size else rng[0],
                                 run.raw, ckpt_path)
    except (KeyError, TypeError, IndexError, RuntimeError) as e:
        raise ValueError(f"{ckpt_path}: its RNG state cannot be restored: "
                         f"{checkpoint._first_line(e)}") from None
    return start_epoch, history


def _start_run_dir(run: _Run, history: list) -> None:
    """Create the run directory; write its config.json and the metrics of ``history``."""
    try:
        run.dir.mkdir(parents=True, exist_ok=True)
        if run.info.main:
            rundir.write_json(run.dir / rundir.CONFIG, run.cfg.to_dict())
            rundir.rewrite_metrics(run.dir, history)
    except OSError as e:
        raise ValueError(f"cannot write the run directory {run.dir} (--run-dir): "
                         f"{e.strerror or e}") from None


def _checkpoint(run: _Run, epoch: int, record: dict, history: list) -> None:
    """Save the checkpoint after epoch ``epoch`` (atomically; RNG states of every rank), then
    append ``record`` to ``history`` (unchanged if the save fails), the metrics, TensorBoard."""
    cfg, steps = run.cfg, len(run.train_loader)
    rng = distributed.all_gather_object(checkpoint.rng_state(run.raw), run.info)
    if run.info.main:
        checkpoint.save_atomic(dict(
            version=1, epoch=epoch + 1, model=run.raw.state_dict(), optimizer=run.optimizer.state_dict(),
            schedule=dict(name=cfg.schedule, step=(epoch + 1) * steps, total=run.total_steps),
            rng=rng, history=history + [record], config=cfg.to_dict(), speed=run.speed), run.ckpt_path)
    history.append(record)
    if not run.info.main:
        return
    rundir.append_metrics(run.dir, record)
    rundir.write_metrics_csv(run.dir, history)
    if run.tb is not None:
        run.tb.epoch(record)
    run.log(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f} acc "
            f"{record['train_acc']:.4f} | "
            + (f"val acc {record['val_acc']:.4f} | " if run.val_loader is not None else "") +
            f"test loss {record['test_loss']:.4f} acc "
            f"{record['test_acc']:.4f} | {record['img_per_s']:.0f} img/s"
            + _nfe_text(record.get("nfe_per_step")))


# -- helpers ----------------------------------------------------------------------------------------
def _best_on_validation(history: list) -> dict:
    """The epoch with the highest validation accuracy and its accuracies (chosen on validation,
    never on test); empty without a validation set."""
    scored = [r for r in history if "val_acc" in r]
    best = max(scored, key=lambda r: r["val_acc"]) if scored else None
    return dict(best_epoch=best["epoch"], best_val_acc=best["val_acc"],
                test_acc_at_best_val=best["test_acc"]) if best else {}


def _nfe_text(nfe: dict | None) -> str:
    """' | NFE/step fwd 14.0 bwd 20.0' (no 'bwd' without backward field calls); '' if no flow."""
    if not nfe:
        return ""
    return f" | NFE/step fwd {nfe['forward']:.1f}" + (f" bwd {nfe['backward']:.1f}" if nfe["backward"] else "")


def _epochs_text(start: int, epochs: int) -> str:  # 'epoch 3 of 3', 'epochs 2..5' (1-based)
    return f"epoch {epochs} of {epochs}" if start + 1 == epochs else f"epochs {start + 1}..{epochs}"


def _training_seed(seed: int, rank: int) -> int:
    return (seed * 1_000_003 + 7919 * (rank + 1)) % (2 ** 63)
