"""Observed order of convergence of every deterministic scheme on a test ODE.

Global error at ``t1 = 1`` against the exact solution, for ``steps = 8, 16, ..., 128``; the
observed order is minus the least-squares slope of ``log(error)`` against ``log(steps)``
(diffrax's ``test_ode_order`` does the same). Test problems:

* ``u' = lam u``, ``u(0) = 1``, ``lam = -1``: exact ``exp(lam t)``;
* LM with fixed ``k`` is consistent with ``(1 + k) u' = f`` (docs/schemes.md §2), so its
  reference is ``exp(lam t / (1 + k))``; likewise ``lmm`` with ``rho'(1) u' = f`` (its
  ``effective_step_factor``);
* leapfrog needs a partitioned system: the harmonic oscillator ``y' = -z``, ``z' = y``,
  ``(y, z)(0) = (1, 0)``, exact ``(cos t, sin t)``; error = max over both components.
"""
from __future__ import annotations

import math

import torch

import solvers
from solvers.leapfrog import Leapfrog

from .stability import deterministic_schemes, for_each_scheme

DEFAULT_STEPS = (8, 16, 32, 64, 128)


def _effective_factor(scheme) -> float:
    """rho'(1) for multistep schemes that integrate ``rho'(1) u' = f`` (1 otherwise)."""
    factor = getattr(scheme, "effective_step_factor", None)
    if factor is None:
        return 1.0
    return float(torch.as_tensor(factor()).reshape(-1)[0])


def test_problem(scheme, lam: float = -1.0, t1: float = 1.0):
    """``(field, u0, exact)`` of the test problem used for ``scheme`` (float64)."""
    if isinstance(scheme, Leapfrog):
        def field(t, u):
            return torch.stack((-u[1], u[0]))
        u0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
        exact = torch.tensor([math.cos(t1), math.sin(t1)], dtype=torch.float64)
        return field, u0, exact
    scale = _effective_factor(scheme)

    def field(t, u):
        return lam * u
    u0 = torch.ones(1, dtype=torch.float64)
    return field, u0, torch.full((1,), math.exp(lam * t1 / scale), dtype=torch.float64)


def observed_order(steps, errors) -> float:
    """Minus the least-squares slope of ``log(errors)`` against ``log(steps)``."""
    x = torch.log(torch.as_tensor(steps, dtype=torch.float64))
    y = torch.log(torch.as_tensor(errors, dtype=torch.float64))
    x = x - x.mean()
    return float(-(x * (y - y.mean())).sum() / (x * x).sum())


def convergence(scheme, options=None, steps=DEFAULT_STEPS, lam: float = -1.0, t1: float = 1.0) -> dict:
    """Errors and observed order of one scheme: a dict with ``name``, ``label``, ``steps``,
    ``errors``, ``order`` (observed), ``expected`` (the scheme's declared order)."""
    built = solvers.get(scheme, **(options or {})) if isinstance(scheme, str) else scheme
    if built.stochastic:
        raise ValueError(f"{built.name}: convergence here is for deterministic schemes; "
                         f"{built.name} is stochastic")
    try:
        steps = [int(n) for n in steps]
    except (TypeError, ValueError):
        raise ValueError(f"steps must be a sequence of positive step counts, got {steps!r}") from None
    if len(steps) < 2 or any(n < 1 for n in steps):
        raise ValueError(f"steps must hold at least two positive step counts, got {steps!r}")
    field, u0, exact = test_problem(built, lam, t1)
    errors = []
    with torch.no_grad():
        for n in steps:
            u1 = solvers.integrate(field, u0, n, scheme=built, t0=0.0, t1=t1)
            errors.append(float((u1 - exact).abs().max()))
    label = built.name + (" (" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")" if options else "")
    return dict(name=built.name, label=label, steps=steps, errors=errors,
                order=observed_order(steps, errors), expected=built.order)


def convergence_all(schemes=None, steps=DEFAULT_STEPS, lam: float = -1.0, t1: float = 1.0,
                    skip_errors: bool = False) -> list[dict]:
    """`convergence` for every deterministic registered scheme (aliases once), or the given
    names / ``(name, options)`` pairs; ``skip_errors`` warns and skips a scheme that cannot run
    on the test problems (instead of raising)."""
    entries = deterministic_schemes() if schemes is None else list(schemes)
    return for_each_scheme(entries, lambda name, options: convergence(name, options, steps, lam, t1),
                           "convergence", skip_errors)


def convergence_table(results: list[dict]) -> str:
    """A markdown table: scheme, declared order, observed order, error at the finest grid."""
    lines = ["| scheme | order | observed order | error at N=%d |" % results[0]["steps"][-1],
             "|---|---|---|---|"] if results else []
    for r in results:
        lines.append(f"| {r['label']} | {r['expected']:g} | {r['order']:.2f} | {r['errors'][-1]:.2e} |")
    return "\n".join(lines) + "\n"
