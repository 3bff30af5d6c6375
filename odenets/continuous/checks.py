"""Validation of continuous-solver options: every bad value raises a ValueError that names the
solver, the option and what is allowed (torchdiffeq only warns on unknown options; we raise).
The checks are `solvers.checks`'; this module adds the fixed-step grid rule."""
from __future__ import annotations

from solvers.base import DivergenceError
from solvers.checks import boolean, choice, function, in_range, integer, positive

__all__ = ["StepLimitError", "boolean", "choice", "function", "in_range", "integer", "positive",
           "step_limit", "steps_or_dt"]


class StepLimitError(DivergenceError):
    """An adaptive solver reached its step limit (``max_num_steps``) before the end time."""


def step_limit(solver: str, options: dict, rtol, atol, detail: str) -> StepLimitError:
    """The one-line error of a solve stopped by ``max_num_steps``, naming the option."""
    limit = options.get("max_num_steps", "its default")
    return StepLimitError(f"{solver}: the adaptive solver took max_num_steps={limit} steps without "
                          f"reaching the end time ({detail}); raise it (--solver-opt "
                          f"max_num_steps=N) or loosen the tolerances (rtol={rtol}, atol={atol})")


def steps_or_dt(solver: str, steps, dt, name: str, t0: float, t1: float) -> float:
    """The step size from exactly one of ``steps`` (uniform grid on [t0, t1]) and ``dt``."""
    if steps is not None and dt is not None:
        raise ValueError(f"{solver}: give steps or {name}, not both (steps={steps!r}, {name}={dt!r})")
    if steps is None and dt is None:
        raise ValueError(f"{solver}: a fixed-step method needs steps=N (uniform grid on "
                         f"[{t0}, {t1}]) or {name}=h")
    if steps is not None:
        return abs(t1 - t0) / integer(solver, "steps", steps)
    return positive(solver, name, dt)
