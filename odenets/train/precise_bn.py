"""Precise BatchNorm statistics: recompute the running statistics with the current weights.

During training each BatchNorm keeps an exponential moving average (momentum 0.1) of batch
statistics computed with *earlier* weights, so in short runs, and in networks that call a field
several times per step (``rk4_``, ``poly_``), eval mode normalises with statistics that lag the
network. `recompute_bn_stats` replaces them by the plain average over ``K`` batches of the
current network in train mode (as detectron2's PreciseBN and ``torch.optim.swa_utils.update_bn``):

    running_mean = 1/K sum_i mean_i,   running_var = 1/K sum_i var_i   (unbiased batch variances)

using torch's cumulative average (``momentum=None``) for the duration, then restoring each
module's momentum. Parameters are untouched. Per-evaluation norms (`odenets.evaluation_norm`,
buffers of shape (slots, C)) recompute every slot, each from its own call of the field.
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batch_norms(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm modules of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterable[torch.Tensor],
                       forward: Callable[[nn.Module, torch.Tensor], object] | None = None) -> int:
    """Reset the running statistics of every BatchNorm in ``model`` and set them to the
    cumulative average over ``batches`` (inputs), run in train mode without gradients through
    ``forward(model, x)`` (default ``model(x)``; e.g. to add autocast). Restores each module's
    momentum and ``model``'s train/eval mode. Returns the number of batches used (0, and no
    forward pass, when ``model`` has no BatchNorm with running statistics); no batches at all
    raise ValueError and leave the statistics as they were.

    Train-mode side effects other than the statistics (dropout and other noise draw random
    numbers) are the caller's to save and restore."""
    norms = batch_norms(model)
    if not norms:
        return 0
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        raise ValueError("recompute_bn_stats got no batches")
    forward = forward or (lambda module, x: module(x))
    momenta = [m.momentum for m in norms]
    training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    count = 0
    try:
        model.train()
        for x in itertools.chain((first,), batches):
            forward(model, x)
            count += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(training)
    return count
