"""Validation of continuous-solver options: every bad value raises a ValueError that names the
solver, the option and what is allowed (torchdiffeq only warns on unknown options; we raise).
The checks are `solvers.checks`'; this module adds the fixed-step grid rule."""
from __future__ import annotations

from solvers.checks import boolean, choice, function, in_range, integer, positive

__all__ = ["boolean", "choice", "function", "in_range", "integer", "positive", "steps_or_dt"]


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
