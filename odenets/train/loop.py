"""`train(cfg)`: data, model, optimiser, the epoch loop, checkpoints and metrics of one run.

Reproducibility: weights are initialised after ``torch.manual_seed(seed + rank)``, then the
global RNG is re-seeded from (seed, rank) so that training noise does not depend on how much
randomness the initialisation used; the data order and augmentation of epoch e are functions of
(seed, e, rank); the torch RNG state (model noise such as dropout or stochastic depth) and the
states of generators the model's noise owns (a scheme's ``seed=``) are saved in every
checkpoint and restored on resume. A run
resumed from its last checkpoint therefore replays exactly what the killed run would have done,
and on CPU reaches bit-identical weights.

With ``precise_bn=K`` the BatchNorm running statistics are recomputed from K training batches
before each evaluation (`precise_bn.recompute_bn_stats`) and averaged over ranks; the RNG states
are restored around it, so the weights are those of the same run without it.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import sys
from pathlib import Path

import torch
from torch import nn

from .. import data as datasets
from . import checkpoint, distributed, progress, rundir, tblog
from .config import TrainConfig
from .epoch import TrainingDivergedError, autocast, evaluate, train_epoch
from .precise_bn import recompute_bn_stats
from ..continuous import reset_nfe, total_nfe
from ..build import coefficients
from .model import build_model, count_parameters
from .optim import build_optimizer, lr_factor


def train(cfg: TrainConfig, *, model: nn.Module | None = None, resume: bool = False) -> dict:
    """Run (or with ``resume``, continue) training as ``cfg`` says; returns the summary dict.

    ``model`` replaces ``cfg.model`` by a ready module (tests, notebooks). Raises
    `TrainingDivergedError` if the loss becomes NaN/inf, or the test loss does at the end of an
    epoch (the update after the last checked step broke the weights); the last good checkpoint
    is kept.
    """
    cfg.validate()
    spec = datasets.get_spec(cfg.dataset)
    info, device = distributed.setup(cfg.device)
    finished = False
    try:
        with contextlib.ExitStack() as held:  # the run directory's lock, while training
            summary = _train(cfg, spec, info, device, model, resume, held)
        finished = True
        return summary
    finally:
        distributed.teardown(info, finished=finished)


def _train(cfg, spec, info, device, model, resume, held):
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    if cfg.tensorboard:
        tblog.summary_writer()  # missing package: fail before any work
    run_dir = Path(distributed.broadcast_object(cfg.run_dir or str(rundir.default_run_dir(cfg)), info))
    cfg.run_dir = str(run_dir)
    ckpt_path = run_dir / checkpoint.NAME
    if info.main:  # fail fast; checked again under the run's lock (`rundir.claim`)
        rundir.check_run_dir(run_dir, resume)
    # data first: a missing dataset should fail before any model work
    train_data, val_data = _train_val(cfg)
    test_data = datasets.load_dataset(cfg.dataset, "test", cfg.data_dir, cfg.test_subset)
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
    train_loader = datasets.Loader(train_data, cfg.batch_size, train=True, augment=augment, **loader_args)
    test_loader = datasets.Loader(test_data, cfg.eval_batch_size * info.world_size, train=False, **loader_args)
    val_loader = (datasets.Loader(val_data, cfg.eval_batch_size * info.world_size, train=False,
                                  **loader_args) if val_data is not None else None)
    total_steps = cfg.epochs * len(train_loader)

    if info.main:  # one process writes a run: lock it (until train returns), mark it ours
        held.enter_context(rundir.claim(run_dir, resume))
    start_epoch, history = 0, []
    if resume and not ckpt_path.exists():
        print(f"odenets: {run_dir} has no checkpoint yet (the run stopped during its first epoch); "
              "starting it from the beginning", file=sys.stderr)
    elif resume:
        if info.main:  # temp files of a run killed while saving (we hold the lock)
            for name in (checkpoint.NAME, rundir.CONFIG, rundir.SUMMARY, rundir.METRICS):
                checkpoint.remove_stale_temps(run_dir / name)
        state = checkpoint.load(ckpt_path, keys=checkpoint.KEYS)  # CPU: RNG states stay on CPU
        checkpoint.load_model_state(raw, state["model"], ckpt_path)
        try:
            optimizer.load_state_dict(state["optimizer"])
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
        moved = (was.get("total"), was.get("step")) != (total_steps, start_epoch * len(train_loader))
        if info.main and moved and start_epoch < cfg.epochs:
            print(f"odenets: note: the {cfg.schedule} schedule now spans {total_steps} steps, resuming "
                  f"at step {start_epoch * len(train_loader)} (the checkpoint was at step "
                  f"{was.get('step')} of {was.get('total')}): --epochs, --batch-size or --subset "
                  "changed, so the learning rates from here differ from the original run's",
                  file=sys.stderr)
        rng = state["rng"]  # and the model's own noise generators (seed= of a stochastic scheme)
        try:
            checkpoint.set_rng_state(rng[info.rank] if len(rng) == info.world_size else rng[0],
                                     raw, ckpt_path)
        except (KeyError, TypeError, IndexError, RuntimeError) as e:
            raise ValueError(f"{ckpt_path}: its RNG state cannot be restored: "
                             f"{checkpoint._first_line(e)}") from None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if info.main:
            rundir.write_json(run_dir / rundir.CONFIG, cfg.to_dict())
            rundir.rewrite_metrics(run_dir, history)
    except OSError as e:
        raise ValueError(f"cannot write the run directory {run_dir} (--run-dir): "
                         f"{e.strerror or e}") from None

    eval_model = torch.compile(raw) if cfg.compile else raw
    train_model = eval_model
    if info.enabled:
        train_model = _ddp(eval_model, raw, train_data.images.shape[1:], cfg, info, device)
    tb = tblog.open_log(run_dir) if cfg.tensorboard and info.main else None
    bar = _progress_bar(cfg, info, len(train_loader))
    log = (bar.write if bar is not None else print) if info.main else (lambda line: None)
    if start_epoch == cfg.epochs:
        log(f"{run_dir}: run already complete ({start_epoch}/{cfg.epochs} epochs); pass --epochs N "
            f"(N > {start_epoch}) to extend it")
    else:
        log(f"{cfg.model}: {count_parameters(raw):,} parameters, {len(train_data)} training / "
            + (f"{len(val_data)} validation / " if val_data is not None else "") +
            f"{len(test_data)} test images of {cfg.dataset} on {device} x{info.world_size}, "
            f"{_epochs_text(start_epoch, cfg.epochs)}, run directory {run_dir}")
    summary = dict(model=cfg.model, dataset=cfg.dataset, params=count_parameters(raw),
                   train_images=len(train_data), test_images=len(test_data),
                   val_images=len(val_data) if val_data is not None else 0,
                   device=str(device), world_size=info.world_size, torch=torch.__version__,
                   command=" ".join(sys.argv), run_dir=str(run_dir))
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if bar is not None:
                bar.reset(total=len(train_loader))
                bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
            reset_nfe(raw)
            stats = train_epoch(train_model, train_loader, optimizer, epoch, epoch * len(train_loader),
                                total_steps, cfg, info, device, bar)
            first = epoch * len(train_loader)
            lrs = [cfg.lr * lr_factor(first + i, total_steps, cfg, len(train_loader))
                   for i in range(len(train_loader))]
            step_losses, step_correct = stats.pop("step_losses").tolist(), stats.pop("step_correct").tolist()
            if tb is not None:
                tb.steps(first, step_losses, lrs)
            nfe = total_nfe(raw)  # continuous-depth flows: field evaluations this epoch
            if cfg.precise_bn:
                _precise_bn(raw, train_loader, epoch, cfg, device)
            _average_buffers(raw, info)
            test = evaluate(eval_model, test_loader, cfg, info, device)
            if not math.isfinite(test["loss"]):  # the update after the last checked loss broke it
                raise TrainingDivergedError(
                    f"the weights became NaN/inf at the end of epoch {epoch + 1} (every training "
                    f"loss was finite, the test loss is {test['loss']}); stopped. Lower --lr, add "
                    "--warmup-epochs, or check the model.", epoch + 1, len(train_loader))
            record = dict(epoch=epoch + 1, **stats, test_loss=test["loss"], test_acc=test["acc"],
                          lr=optimizer.param_groups[0]["lr"], coefficients=coefficients(raw))
            if val_loader is not None:
                val = evaluate(eval_model, val_loader, cfg, info, device)
                record.update(val_loss=val["loss"], val_acc=val["acc"])
            record["train_curve"] = progress.epoch_curve(step_losses, step_correct, train_loader.local_batch,
                                                         epoch, lrs)
            if any(nfe.values()):
                record["nfe_per_step"] = {k: v / len(train_loader) for k, v in nfe.items()}
            history.append(record)
            rng = distributed.all_gather_object(checkpoint.rng_state(raw), info)
            if info.main:
                checkpoint.save_atomic(dict(
                    version=1, epoch=epoch + 1, model=raw.state_dict(), optimizer=optimizer.state_dict(),
                    schedule=dict(name=cfg.schedule, step=(epoch + 1) * len(train_loader), total=total_steps),
                    rng=rng, history=history, config=cfg.to_dict()), ckpt_path)
                rundir.append_metrics(run_dir, record)
                rundir.write_metrics_csv(run_dir, history)
                if tb is not None:
                    tb.epoch(record)
                log(f"epoch {epoch + 1}: train loss {stats['train_loss']:.4f} acc "
                    f"{stats['train_acc']:.4f} | "
                    + (f"val acc {record['val_acc']:.4f} | " if val_loader is not None else "") +
                    f"test loss {test['loss']:.4f} acc "
                    f"{test['acc']:.4f} | {stats['img_per_s']:.0f} img/s"
                    + _nfe_text(record.get("nfe_per_step")))
    except ValueError as e:  # e.g. the disk filled up while saving a checkpoint
        if info.main:
            with contextlib.suppress(OSError):
                rundir.write_json(run_dir / rundir.SUMMARY, dict(
                    summary, status="failed", error=str(e), epochs_done=len(history),
                    history=history))
        raise
    except TrainingDivergedError as e:
        last = history[-1]["epoch"] if history else 0
        e.args = (f"{e.args[0]} Last good checkpoint: {ckpt_path} (epoch {last})" if last else
                  f"{e.args[0]} No checkpoint was written.",)
        if info.main:
            rundir.write_json(run_dir / rundir.SUMMARY, dict(summary, status="diverged", error=str(e),
                                                             epochs_done=last, history=history))
        raise
    finally:
        if bar is not None:
            bar.close()
        if tb is not None:
            tb.close()
    summary.update(status="finished", epochs_done=len(history), final=history[-1] if history else None,
                   history=history,
                   **_best_on_validation(history),
                   train_seconds=sum(r["train_seconds"] for r in history), config=cfg.to_dict())
    if info.main:
        rundir.write_json(run_dir / rundir.SUMMARY, summary)
    return summary


def _ddp(model, raw, image_shape, cfg, info, device) -> nn.Module:
    """``model`` in DistributedDataParallel; with ``find_unused_parameters=True`` only when a
    probe step of ``raw`` (on a copy, see `distributed.unused_parameters`) leaves a parameter
    without a gradient on some rank, or cannot be run."""
    example = torch.randn((2, *image_shape), generator=torch.Generator().manual_seed(0))
    example = example.to(device, memory_format=torch.channels_last if cfg.channels_last
                         else torch.contiguous_format)
    try:
        unused = distributed.unused_parameters(raw, example)
        more = ", ..." if len(unused) > 4 else ""
        why = (f"{len(unused)} parameter(s) get no gradient in a training step "
               f"({', '.join(unused[:4])}{more})")
    except Exception as e:  # e.g. a model that cannot be deep-copied: take the safe setting
        unused = None
        why = f"the probe for parameters without a gradient failed ({type(e).__name__}: {e})"
    find_unused = distributed.any_rank(unused is None or bool(unused), info, device)
    if find_unused and info.main:
        print(f"odenets: {cfg.model}: {why}: DDP runs with find_unused_parameters=True",
              file=sys.stderr)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def _precise_bn(model, loader, epoch, cfg, device) -> int:
    """Recompute ``model``'s BatchNorm statistics from the first ``cfg.precise_bn`` batches of
    this rank's training epoch (augmented, under the training autocast); the torch RNG and the
    model's noise generators are restored afterwards, so the training run is the same with or
    without it. The caller averages the buffers over ranks."""
    state = checkpoint.rng_state(model)
    batches = (x for x, _ in itertools.islice(loader.epoch(epoch), cfg.precise_bn))

    def forward(module, x):
        with autocast(device, cfg.amp):
            return module(x)

    try:
        return recompute_bn_stats(model, batches, forward)
    finally:
        checkpoint.set_rng_state(state, model)


def _train_val(cfg):
    """The training images (``--subset`` of what ``--val-split`` leaves) and the validation
    split (None without ``--val-split``); the held-out images do not depend on the seed."""
    train_data = datasets.load_dataset(cfg.dataset, "train", cfg.data_dir)
    val_data = None
    if cfg.val_split:
        train_data, val_data = train_data.split(cfg.val_split, seed=0)
    return train_data.subset(cfg.subset), val_data


def _best_on_validation(history: list) -> dict:
    """The epoch with the highest validation accuracy and its accuracies (chosen on validation,
    never on test); empty without a validation set."""
    scored = [r for r in history if "val_acc" in r]
    if not scored:
        return {}
    best = max(scored, key=lambda r: r["val_acc"])
    return dict(best_epoch=best["epoch"], best_val_acc=best["val_acc"],
                test_acc_at_best_val=best["test_acc"])


def _nfe_text(nfe: dict | None) -> str:
    """' | NFE/step fwd 14.0 bwd 20.0' (no 'bwd' when the backward evaluated no field: no
    adjoint), '' without continuous-depth flows."""
    if not nfe:
        return ""
    return f" | NFE/step fwd {nfe['forward']:.1f}" + (f" bwd {nfe['backward']:.1f}" if nfe["backward"] else "")


def _epochs_text(start: int, epochs: int) -> str:
    """'epoch 3 of 3', 'epochs 2..5' (1-based, the ones this call trains)."""
    return f"epoch {epochs} of {epochs}" if start + 1 == epochs else f"epochs {start + 1}..{epochs}"


def _training_seed(seed: int, rank: int) -> int:
    return (seed * 1_000_003 + 7919 * (rank + 1)) % (2 ** 63)


def _progress_bar(cfg, info, total):
    """A bar on a terminal, plain periodic lines elsewhere (`progress.progress`)."""
    if not (cfg.progress and info.main):
        return None
    return progress.progress(total)


@torch.no_grad()
def _average_buffers(model: nn.Module, info: distributed.Dist) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, so every rank
    evaluates and saves the same model."""
    if not info.enabled:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            distributed.all_reduce(buf, info)
            buf /= info.world_size
