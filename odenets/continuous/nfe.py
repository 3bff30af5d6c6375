"""Counting field evaluations (NFE) of a continuous-depth solve, forward and backward apart.

The cost of an adaptive solve is its number of function evaluations (NFE), not a fixed depth;
it is what users of neural ODEs watch (Chen et al. 2018; Grathwohl et al. 2019). `CountedField`
wraps the user's field ``f`` as the ``func(t, u)`` that torchdiffeq/torchsde call, and counts

Counters live in a tensor buffer (``counts``), so a compiled flow does not recompile as they
grow; ``nfe`` reads them as a dict of ints.

* ``nfe["forward"]``:  field evaluations during the forward solve;
* ``nfe["backward"]``: field evaluations made *during* backward, i.e. the adjoint solve
  (``adjoint=True`` re-integrates the field backwards in time); 0 for direct backpropagation,
  which reuses the evaluations stored in forward;
* ``nfe["vjp"]`` (only with ``count_vjp=True``, as a tensor hook per evaluation costs ~10 us):
  vector-Jacobian products through field outputs: one per stored evaluation on the path to
  the output for direct backprop, one per adjoint evaluation with the adjoint, plus any the
  solver takes itself (Milstein differentiates g).

A call counts as *backward* once the output of the solve has received its gradient (a hook on
that output sets a flag); the next forward clears the flag. Counters accumulate until
`reset` is called.
"""
from __future__ import annotations

import torch
from torch import nn

from ..time_aware import takes_time


class CountedField(nn.Module):
    """``func(t, u)`` for the solver libraries: calls ``field(u)``, or ``field(t, u)`` when the
    field takes time (``time_aware = True``, or a ``forward(self, t, y)`` signature: see
    `odenets.time_aware.takes_time`), and counts the calls (see the module docstring)."""

    def __init__(self, field, count_vjp: bool = False):
        super().__init__()
        if not callable(field):
            raise ValueError(f"the field must be a callable nn.Module computing f(u) (or f(t, u) with "
                             f"time_aware = True), got {type(field).__name__}")
        self.field = field  # registered as a submodule when it is an nn.Module
        self.time_aware = takes_time(field)
        self.count_vjp = bool(count_vjp)
        self._keys = ("forward", "backward", "vjp") if self.count_vjp else ("forward", "backward")
        # counters in a tensor, not Python ints: torch.compile would guard on an int's value and
        # recompile the flow on every call; an in-place add on a buffer is part of the graph
        self.register_buffer("counts", torch.zeros(len(self._keys), dtype=torch.int64),
                             persistent=False)
        self._in_backward = False

    @property
    def nfe(self) -> dict:
        """``{"forward": n, "backward": n[, "vjp": n]}`` as Python ints (one read of the
        counters)."""
        return dict(zip(self._keys, self.counts.tolist()))

    def reset(self) -> None:
        """Set all counters to zero."""
        self.counts.zero_()

    def begin_forward(self) -> None:
        """Mark the start of a forward solve: later calls count as forward."""
        self._in_backward = False

    def watch(self, out: torch.Tensor) -> torch.Tensor:
        """Hook the output of a solve: when its gradient arrives, backward has begun."""
        if out.requires_grad:
            out.register_hook(self._enter_backward)
        return out

    def _enter_backward(self, grad):
        self._in_backward = True

    def _count_vjp(self, grad):
        self.counts[2] += 1

    def forward(self, t, u):
        self.counts[1 if self._in_backward else 0] += 1
        out = self.field(t, u) if self.time_aware else self.field(u)
        if not torch.is_tensor(out) or out.shape != u.shape:
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"the field must return a tensor of the state's shape {tuple(u.shape)}, "
                             f"got {got}")
        if self.count_vjp and out.requires_grad:
            out.register_hook(self._count_vjp)
        return out


def total_nfe(model: nn.Module) -> dict:
    """Sum of the counters of every continuous flow inside ``model`` (for training logs)."""
    total = {"forward": 0, "backward": 0}
    for module in model.modules():
        if isinstance(module, CountedField):
            for key, value in module.nfe.items():
                total[key] = total.get(key, 0) + value
    return total


def reset_nfe(model: nn.Module) -> None:
    """Zero the counters of every continuous flow inside ``model``."""
    for module in model.modules():
        if isinstance(module, CountedField):
            module.reset()


class CountsNFE:
    """Mixin of a continuous flow whose field is ``self.func`` (a `CountedField`): its ``nfe``
    counts and ``reset_nfe()``."""

    @property
    def nfe(self) -> dict:
        return self.func.nfe

    @nfe.setter
    def nfe(self, value) -> None:
        """``flow.nfe = 0`` resets the counters (torchdiffeq examples' ``block.nfe = 0``)."""
        check_reset(value)
        self.func.reset()

    def reset_nfe(self) -> None:
        self.func.reset()


def check_reset(value) -> None:
    if isinstance(value, bool) or value != 0:
        raise ValueError(f"nfe can only be set to 0 (a reset of the counters), got {value!r}")
