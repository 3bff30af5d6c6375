"""SGD with Nesterov momentum, decoupled parameter groups and per-step learning-rate schedules.

Weight decay (L2, added to the gradient as in ``torch.optim.SGD``) applies to conv/linear
weights only. No decay on:
  * normalisation layers' affine parameters and every bias (parameters with ``ndim <= 1``);
  * scheme coefficients (e.g. LM's k_n): decaying their raw value would pull k_n towards the
    middle of its bounds, a prior the paper does not use;
  * anything the model lists in ``model.no_weight_decay()`` (timm's convention; names as in
    ``named_parameters``).

Schedules give the factor ``lr(s) / lr`` at optimiser step ``s`` of ``S`` in total (the state of
a schedule is the step count alone, so resuming needs no scheduler object):
  step      factor = gamma ** #{m in milestones : s >= m S}   (the paper: 0.1 at 50% and 75%)
  cosine    factor = (1 + cos(pi s / S)) / 2
  onecycle  linear 0.04 -> 1 over the warm-up (default 30% of S), then linear 1 -> 0
  constant  factor = 1
``step`` and ``cosine`` use a linear warm-up 0 -> 1 over ``warmup_epochs`` if it is non-zero.
"""
from __future__ import annotations

import math

import torch
from torch import nn

COEFFICIENT_PARTS = ("raw", "coefficients", "coeffs")  # odenets.Flow keeps k_n as flow.raw.k


def is_no_decay(name: str, param: torch.Tensor, norm_params: set, listed: set) -> bool:
    """Whether parameter ``name`` is exempt from weight decay (see the module docstring)."""
    parts = name.split(".")
    return (param.ndim <= 1 or id(param) in norm_params or name in listed
            or any(p in COEFFICIENT_PARTS for p in parts[:-1]))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: ``decay`` (weight_decay) and ``no_decay`` (0), each with a ``names`` list."""
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    norm_params = {id(p) for m in model.modules() if isinstance(m, norm_types) for p in m.parameters()}
    listed = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = ([], []), ([], [])
    for name, p in model.named_parameters():
        if p.requires_grad:
            group = no_decay if is_no_decay(name, p, norm_params, listed) else decay
            group[0].append(p)
            group[1].append(name)
    return [dict(params=decay[0], names=decay[1], weight_decay=weight_decay, group="decay"),
            dict(params=no_decay[0], names=no_decay[1], weight_decay=0.0, group="no_decay")]


def build_optimizer(model: nn.Module, cfg) -> torch.optim.SGD:
    """SGD(lr, momentum, nesterov) over `param_groups`."""
    groups = [g for g in param_groups(model, cfg.weight_decay) if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0)


def lr_factor(step: int, total: int, cfg, steps_per_epoch: int) -> float:
    """The schedule's factor at optimiser step ``step`` (0-based) of ``total``."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "onecycle":
        peak = warmup if warmup > 0 else max(1, int(0.3 * total))
        if step < peak:
            return 0.04 + 0.96 * step / peak
        return max(0.0, (total - step) / max(1, total - peak))
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "step":
        return cfg.gamma ** sum(step >= m * total for m in cfg.milestones)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    return 1.0


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate (a Python float: no device sync)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
