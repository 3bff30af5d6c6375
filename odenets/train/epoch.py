"""One training epoch and one evaluation pass, with no per-step host synchronisation, and what
readies the model for evaluation (``--precise-bn`` statistics, buffers averaged over ranks).

Per-step losses and correct counts are kept in device tensors; the host reads them every
``log_every`` steps (progress bar, NaN check: the first non-finite loss names the step) and once
at the end of the epoch. With several processes the NaN decision and the epoch totals are all-reduced,
so every rank stops, or goes on, together.
"""
from __future__ import annotations

import itertools
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

from . import checkpoint, distributed
from .optim import lr_factor, set_lr
from .precise_bn import recompute_bn_stats
from .probe import autocast


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and step."""

    def __init__(self, message: str, epoch: int, step: int):
        super().__init__(message)
        self.epoch, self.step = epoch, step


def train_epoch(model, loader, optimizer, epoch: int, first_step: int, total_steps: int, cfg,
                info: distributed.Dist, device: torch.device, bar=None) -> dict:
    """Train on ``loader.epoch(epoch)``; ``first_step`` is the global step count so far (sets
    the learning rate). Returns train loss/accuracy/images/seconds for the epoch (all ranks).

    Per step, the loss and the number of correct predictions are copied into preallocated
    device tensors (training batches all have the same size), read back every ``log_every``
    steps."""
    model.train()
    steps, batch = len(loader), loader.local_batch
    step_loss = torch.zeros(steps, device=device)
    step_correct = torch.zeros(steps, device=device, dtype=torch.int64)
    start = time.perf_counter()
    for i, (x, y) in enumerate(loader.epoch(epoch)):
        set_lr(optimizer, cfg.lr * lr_factor(first_step + i, total_steps, cfg, steps))
        with autocast(device, cfg.amp):
            out = model(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            step_loss[i] = loss.detach()
            step_correct[i] = (out.argmax(1) == y).sum()
        if (i + 1) % cfg.log_every == 0 or i + 1 == steps:
            _check_finite(step_loss[: i + 1], epoch, info)
            if bar is not None:
                seen = (i + 1) * batch
                bar.set_postfix(loss=f"{step_loss[: i + 1].mean().item():.4f}",
                                acc=f"{step_correct[: i + 1].sum().item() / seen:.4f}",
                                img_s=f"{seen * info.world_size / (time.perf_counter() - start):.0f}",
                                refresh=False)
        if bar is not None:  # every step (no host sync): plain lines keep their interval
            bar.update(i + 1 - bar.n)
    totals = torch.stack([step_loss.double().sum() * batch, step_correct.sum().double(),
                          torch.tensor(float(steps * batch), device=device, dtype=torch.float64)])
    distributed.all_reduce(totals, info)
    seconds = time.perf_counter() - start
    loss_total, correct_total, count = totals.tolist()
    return dict(train_loss=loss_total / count, train_acc=correct_total / count,
                train_images=int(count), train_seconds=seconds, img_per_s=count / seconds,
                step_losses=step_loss, step_correct=step_correct)  # this rank's, on the device


def _check_finite(losses: torch.Tensor, epoch: int, info: distributed.Dist) -> None:
    """Raise `TrainingDivergedError` (on every rank) if any rank saw a non-finite loss; the step
    named is the first bad one over all ranks."""
    bad = ~torch.isfinite(losses)
    never = len(losses)
    first = torch.where(bad.any(), bad.to(torch.int64).argmax(), torch.tensor(never, device=losses.device))
    if info.enabled:
        dist.all_reduce(first, op=dist.ReduceOp.MIN)
    step = int(first.item())
    if step != never:
        raise TrainingDivergedError(
            f"training loss became NaN/inf at epoch {epoch + 1}, step {step + 1} (1-based); "
            "stopped. Lower --lr, add --warmup-epochs, or check the model.", epoch + 1, step + 1)


@torch.no_grad()
def evaluate(model, loader, cfg, info: distributed.Dist, device: torch.device, bar=None,
             desc: str = "eval") -> dict:
    """Mean cross-entropy and accuracy over ``loader`` (every rank's shard, all-reduced);
    ``bar`` (a `progress` bar, reset here and labelled ``desc``) advances one batch at a time."""
    model.eval()
    if bar is not None:
        bar.reset(total=len(loader))
        bar.set_description(desc)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.float64)
    count = torch.zeros((), device=device, dtype=torch.float64)
    for x, y in loader.epoch(0):
        with autocast(device, cfg.amp):
            out = model(x).float()
        loss_sum += F.cross_entropy(out, y, reduction="sum").double()
        correct += (out.argmax(1) == y).sum()
        count += len(y)
        if bar is not None:
            bar.update(1)
    totals = distributed.all_reduce(torch.stack([loss_sum, correct, count]), info)
    loss_total, correct_total, n = totals.tolist()
    return dict(loss=loss_total / max(n, 1), acc=correct_total / max(n, 1), images=int(n))


def precise_bn(model, loader, epoch, cfg, device) -> int:
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


@torch.no_grad()
def average_buffers(model: torch.nn.Module, info: distributed.Dist) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, so every rank
    evaluates and saves the same model."""
    if not info.enabled:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            distributed.all_reduce(buf, info)
            buf /= info.world_size
