"""Value checks: every bad option raises one ValueError that names where, the option, what is
allowed and what was given. Shared by the solver layer and `odenets` (which imports it; this
module imports nothing of odenets).

    checks.integer("lmm", "history", 5)           -> 5, or "lmm: history must be an integer >= 1, got 0"
    raise checks.unknown("solver", "rk5", names)  -> "unknown solver 'rk5' (did you mean 'rk4'?);
                                                      available: ..."
"""
from __future__ import annotations

import difflib
import math
import numbers


def is_int(value, minimum: int | None = None) -> bool:
    """True for an integer (any `numbers.Integral`, e.g. numpy.int64; never a bool) >= minimum."""
    return (not isinstance(value, bool) and isinstance(value, numbers.Integral)
            and (minimum is None or value >= minimum))


def is_real(value) -> bool:
    """True for a real number (int, float, numpy scalar; never a bool)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def integer(where: str, name: str, value, minimum: int = 1) -> int:
    """An integer >= ``minimum``, returned as int."""
    if not is_int(value, minimum):
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def real(where: str, name: str, value, low=None, high=None, closed=(True, True)) -> float:
    """A finite real number in [low, high] (ends open where ``closed`` says so), as float."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} must be a real number, got {value!r}") from None
    ok = math.isfinite(value)
    if low is not None:
        ok = ok and (value >= low if closed[0] else value > low)
    if high is not None:
        ok = ok and (value <= high if closed[1] else value < high)
    if not ok:
        lb, rb = ("[" if closed[0] else "("), ("]" if closed[1] else ")")
        if high is None or low is None:  # a half-line (or all reals): no "None" end shown
            rule = ("" if low is None and high is None
                    else f" >{'=' if closed[0] else ''} {low}" if high is None
                    else f" <{'=' if closed[1] else ''} {high}")
            raise ValueError(f"{where}: {name} must be a finite number{rule}, got {value!r}")
        raise ValueError(f"{where}: {name} must lie in {lb}{low}, {high}{rb}, got {value!r}")
    return value


def positive(where: str, name: str, value, allow_zero: bool = False, allow_inf: bool = False) -> float:
    """A real number > 0 (>= 0 with ``allow_zero``; +inf with ``allow_inf``)."""
    if isinstance(value, bool):
        value = None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} must be a positive real number, got {value!r}") from None
    ok = (value >= 0 if allow_zero else value > 0) and (math.isfinite(value) or (allow_inf and value > 0))
    if value != value or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{where}: {name} must be a finite real number {bound}, got {value!r}")
    return value


def in_range(where: str, name: str, value, low: float, high: float, open_low=True,
             open_high=False) -> float:
    """A real number in the interval (low, high] (ends as given)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = float("nan")
    return real(where, name, value, low, high, (not open_low, not open_high))


def boolean(where: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {name} must be True or False, got {value!r}")
    return value


def choice(where: str, name: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{where}: {name} must be one of {sorted(allowed)}, got {value!r}")
    return value


def function(where: str, name: str, value):
    if not callable(value):
        raise ValueError(f"{where}: {name} must be callable, got {value!r}")
    return value


def t_span(where: str, value) -> tuple[float, float]:
    """``(t0, t1)`` as two finite, distinct floats (real numbers, not strings such as '1')."""
    try:
        if isinstance(value, (str, bytes)) or not all(
                is_real(t) or getattr(t, "numel", lambda: 0)() == 1 for t in value):
            raise TypeError
        t0, t1 = (float(t) for t in value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{where}: t_span must be a pair (t0, t1) of real numbers, got "
                         f"{value!r}") from None
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 == t1:
        raise ValueError(f"{where}: t_span must be two distinct finite times, got {value!r}")
    return t0, t1


def unknown(kind: str, name, available, listed: str | None = None, cutoff: float = 0.6,
            note: str = "") -> ValueError:
    """The error for a name that is not one of ``available``: "unknown <kind> 'x' (did you mean
    ...?); available: a, b, c" (``listed`` replaces the list, e.g. a summary of a long one;
    ``note`` is appended). Returned, so call sites read ``raise checks.unknown(...)``."""
    names = sorted(str(n) for n in available)
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=cutoff)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    return ValueError(f"unknown {kind} {name!r}{hint}; available: "
                      f"{listed if listed is not None else ', '.join(names)}{note}")
