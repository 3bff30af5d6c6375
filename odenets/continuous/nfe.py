"""Counting field evaluations (NFE) of a continuous-depth solve, forward and backward apart.

The cost of an adaptive solve is its number of function evaluations (NFE), not a fixed depth;
it is what users of neural ODEs watch (Chen et al. 2018; Grathwohl et al. 2019). `CountedField`
wraps the user's field ``f`` as the ``func(t, u)`` that torchdiffeq/torchsde call, and counts

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
        self.nfe = {"forward": 0, "backward": 0, **({"vjp": 0} if self.count_vjp else {})}
        self._in_backward = False

    def reset(self) -> None:
        """Set all counters to zero."""
        for key in self.nfe:
            self.nfe[key] = 0

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
        self.nfe["vjp"] += 1

    def forward(self, t, u):
        self.nfe["backward" if self._in_backward else "forward"] += 1
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
