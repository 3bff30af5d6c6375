"""Functional entry point: integrate any callable on a uniform grid."""
from __future__ import annotations

import torch

from .base import DivergenceError, check_int
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
    try:
        out, _ = scheme.solve(fields, u0, float(t0), dt, coefficients, None, return_path, training)
    except RuntimeError as error:
        _diagnose_shapes(scheme.name, fields[0], u0, float(t0), error)
        raise
    return out


def _diagnose_shapes(name, field, u0, t0, error):
    """After a failed solve: if the field does not return a tensor shaped like its input, say
    so (instead of torch's broadcasting error from inside the scheme)."""
    if isinstance(field, tuple) or isinstance(error, DivergenceError):
        return
    try:
        with torch.no_grad():
            out = field(t0, u0)
    except Exception:  # the field itself fails on u0: torch's own message is the right one
        return
    if not torch.is_tensor(out) or out.shape != u0.shape:
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"{name}: the field must return a tensor shaped like u (f(t, u) -> "
                         f"{tuple(u0.shape)}), but f(t0, u0) returned {got}") from error
