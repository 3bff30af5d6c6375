"""Validation of continuous-solver options: every bad value raises a ValueError that names the
solver, the option and what is allowed (torchdiffeq only warns on unknown options; we raise)."""
from __future__ import annotations

import math


def positive(solver: str, name: str, value, allow_zero: bool = False, allow_inf: bool = False) -> float:
    """A real number > 0 (>= 0 with ``allow_zero``; +inf with ``allow_inf``)."""
    if isinstance(value, bool):
        value = None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{solver}: {name} must be a positive real number, got {value!r}") from None
    ok = (value >= 0 if allow_zero else value > 0) and (math.isfinite(value) or (allow_inf and value > 0))
    if value != value or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{solver}: {name} must be a finite real number {bound}, got {value!r}")
    return value


def in_range(solver: str, name: str, value, low: float, high: float, open_low=True, open_high=False) -> float:
    """A real number in the interval (low, high] (ends as given)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = float("nan")
    ok = (value > low if open_low else value >= low) and (value < high if open_high else value <= high)
    if not ok:
        lb, rb = ("(" if open_low else "["), (")" if open_high else "]")
        raise ValueError(f"{solver}: {name} must lie in {lb}{low}, {high}{rb}, got {value!r}")
    return value


def integer(solver: str, name: str, value, minimum: int = 1) -> int:
    """An integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{solver}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def boolean(solver: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{solver}: {name} must be True or False, got {value!r}")
    return value


def choice(solver: str, name: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{solver}: {name} must be one of {sorted(allowed)}, got {value!r}")
    return value


def function(solver: str, name: str, value):
    if not callable(value):
        raise ValueError(f"{solver}: {name} must be callable, got {value!r}")
    return value


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
