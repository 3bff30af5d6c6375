"""BatchNorm with running statistics per field evaluation within a step.

A scheme that calls the field several times per step feeds it different inputs: RK4 evaluates
f at u_n, u_n + dt/2 k_1, u_n + dt/2 k_2, u_n + dt k_3; backward Euler's fixed-point iteration
(PolyNet) at v^(0) = u_n, v^(1), ...; Verlet calls F at z_n and z_{n+1}. In training each call
is normalised by its own batch statistics, so one shared running mean/var (an average over the
calls) does not match any of them, and eval mode computes a different network than training.
Here call j of a step (j = 0, 1, ...) updates and, in eval mode, uses its own slot j of the
running statistics:

    running_mean: (slots, C),  running_var: (slots, C);  weight, bias: (C,) shared

so the eval-mode network is the train-mode one with batch statistics replaced by population
statistics, call by call (as recurrent BatchNorm keeps statistics per time step, Cooijmans et
al. 2017). Parameters are unchanged; only buffers grow. A tied field (one module for every
step) keeps one slot per call and shares it across steps, as a tied Euler flow shares its one
set of statistics. `Flow` converts the norms of its fields
(``per_evaluation_norm=True``, the default, when the scheme calls a field more than once per
step) and tells them the call index before every call. ``nn.SyncBatchNorm.convert_sync_batchnorm``
does not know these modules (it would copy the (slots, C) statistics into a SyncBatchNorm); odenets'
DDP training keeps per-rank statistics, averaged over ranks before evaluation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# At most this many slots per norm: calls from the last slot's index on share it (later
# iterates of an iteration lie near its fixed point, see `solvers.backward_euler`), so
# ``iterations=10**9`` costs no more memory than 64.
MAX_SLOTS = 64


class CallIndex:
    """The index j of the current call of a field within its step, shared by the field's
    norms (which read slot j) and set by the flow's call wrappers before each call."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = 0


class _PerEvaluationStats:
    """Mixin over a `torch.nn` BatchNorm class: running statistics indexed by the call."""

    slots: int
    call_index: CallIndex

    def _setup_slots(self, slots: int, index: CallIndex):
        self.slots, self.call_index = slots, index
        for name in ("running_mean", "running_var"):
            buffer = getattr(self, name)
            if buffer is not None:
                setattr(self, name, buffer.detach().unsqueeze(0).repeat(slots, 1))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        j = min(self.call_index.value, self.slots - 1)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            if j == 0:  # counts batches, not calls: every slot is updated once per batch
                self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative average
                factor = 1.0 / float(self.num_batches_tracked)
        tracked = self.running_mean is not None and (not self.training or self.track_running_stats)
        return F.batch_norm(input,
                            self.running_mean[j] if tracked else None,
                            self.running_var[j] if tracked else None,
                            self.weight, self.bias,
                            self.training or self.running_mean is None, factor, self.eps)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint with one set of statistics (shape (C,)) fills every slot with it.
        for name in ("running_mean", "running_var"):
            value = state_dict.get(prefix + name)
            if value is not None and value.dim() == 1:
                state_dict[prefix + name] = value.unsqueeze(0).repeat(self.slots, 1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self):
        return f"{super().extra_repr()}, slots={self.slots}"


class EvaluationBatchNorm1d(_PerEvaluationStats, nn.BatchNorm1d):
    """`nn.BatchNorm1d` with running statistics per call of the field within a step."""


class EvaluationBatchNorm2d(_PerEvaluationStats, nn.BatchNorm2d):
    """`nn.BatchNorm2d` with running statistics per call of the field within a step."""


class EvaluationBatchNorm3d(_PerEvaluationStats, nn.BatchNorm3d):
    """`nn.BatchNorm3d` with running statistics per call of the field within a step."""


_CONVERT = {nn.BatchNorm1d: EvaluationBatchNorm1d, nn.BatchNorm2d: EvaluationBatchNorm2d,
            nn.BatchNorm3d: EvaluationBatchNorm3d}


def per_evaluation_norm(module: nn.Module, slots: int) -> CallIndex | None:
    """Replace every plain ``nn.BatchNorm{1,2,3}d`` inside ``module`` (in place) by its
    per-evaluation version with ``slots`` sets of running statistics (the current ones copied
    into each), sharing weight and bias. Returns the `CallIndex` the converted norms read,
    or None when ``module`` has no BatchNorm to convert. A module converted before (a trained
    field re-unrolled by another scheme, `odenets.resolve`) keeps its norms and slots: their
    index is returned, so the new flow counts their calls (call j reads slot min(j, slots - 1))."""
    done = [m for m in module.modules() if isinstance(m, _PerEvaluationStats)]
    if done:
        return done[0].call_index
    index = CallIndex()
    found = False
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            cls = _CONVERT.get(type(child))
            if cls is None:
                continue
            new = cls(child.num_features, child.eps, child.momentum, child.affine,
                      child.track_running_stats)  # its own tensors are replaced below
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            for name_ in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(new, name_, getattr(child, name_))
            new.train(child.training)
            new._setup_slots(slots, index)
            setattr(parent, name, new)
            found = True
    return index if found else None

