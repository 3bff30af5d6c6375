"""Functional entry point: integrate any callable on a uniform grid."""
from __future__ import annotations

import torch

from .base import check_int
from .registry import get


def integrate(f, u0: torch.Tensor, steps: int, scheme="euler", t0: float = 0.0, t1: float = 1.0,
              return_path: bool = False, coefficients: dict | None = None, training: bool = True,
              **options):
    """Integrate ``du/dt = f(t, u)`` from ``t0`` to ``t1`` in ``steps`` uniform steps.

    ``f`` is a callable ``f(t, u)`` (torchdiffeq's convention), a pair ``(f1, f2)`` for two-field
    schemes (leapfrog, shake noise), or a *list* of ``steps`` such fields, one per step (untied
    networks). ``scheme`` is a registry name or a `Scheme`; ``options`` go to `solvers.get`.
    ``coefficients`` overrides the scheme's per-step coefficients (scalars or per-step
    sequences, e.g. ``{"k": torch.full((steps,), 0.3)}``). Stochastic schemes draw noise when
    ``training`` and use its mean otherwise.

    Returns ``u(t1)``, or with ``return_path`` a tensor of shape ``(steps + 1, *u0.shape)`` holding
    ``u`` at every grid point (``u0`` first).
    """
    scheme = get(scheme, **options)
    steps = check_int("steps", steps, scheme.name)
    if not torch.is_tensor(u0):
        raise ValueError(f"{scheme.name}: u0 must be a tensor, got {type(u0).__name__}")
    if not u0.is_floating_point():
        raise ValueError(f"{scheme.name}: u0 must be a floating-point tensor, got {u0.dtype}")
    if isinstance(f, list):
        if len(f) != steps:
            raise ValueError(f"{scheme.name}: got {len(f)} per-step fields for steps={steps}")
        fields = f
    else:
        fields = [f] * steps
    for field in (f if isinstance(f, list) else (f,)):
        parts = field if isinstance(field, tuple) else (field,)
        if not all(callable(p) for p in parts):
            raise ValueError(f"{scheme.name}: the field must be callable f(t, u), got {field!r}")
    dt = (float(t1) - float(t0)) / steps
    out, _ = scheme.solve(fields, u0, float(t0), dt, coefficients, None, return_path, training)
    return out
