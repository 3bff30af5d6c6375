"""``odeint``'s fixed grid (torchdiffeq's grid semantics; see `solvers.odeint`'s docstring),
one step of it with the output times it passes (`advance`), and torchdiffeq's interpolation."""
from __future__ import annotations

import math

import torch

from . import checks

MAX_STEPS = 10 ** 9  # more steps than anyone can mean: refused before any work
CHUNK = 4096  # grid points made at a time: memory does not grow with the step count

def grid(func, y0, t, grid: dict):
    """The grid as a generator of chunks (1-D tensors in ``t``'s dtype, consecutive chunks
    sharing their boundary point), from the grid options (module docstring)."""
    given = [k for k in ("grid_constructor", "max_step", "step_size", "steps") if k in grid]
    if len(given) > 1:
        raise ValueError(f"odeint: give one of the grid options {given}, not several")
    interp = grid.get("interp", "linear")
    if interp not in ("linear", "cubic"):
        raise ValueError(f"odeint: interp must be 'linear' or 'cubic', got {interp!r}")
    if not given or len(t) < 2:
        return [t]
    kind, value = given[0], grid[given[0]]
    if kind == "grid_constructor":
        return [_constructed(func, y0, t, value)]
    if kind == "steps":
        n = checks.integer("odeint", "options['steps'] (steps per interval of t)", value)
        return _per_interval(t, [n] * (len(t) - 1))
    h = _positive(kind, value)
    if kind == "max_step":
        return _per_interval(t, [_count(b - a, h, t.dtype) for a, b in zip(t[:-1], t[1:])])
    start, end = t[0], t[-1]
    niters = float(torch.ceil((end - start) / h + 1))  # torchdiffeq's expression, in t's dtype
    _check_count(niters - 1, kind, value)
    return _chunks(t, int(niters), lambda k0, k1: torch.arange(
        k0, k1, dtype=t.dtype, device=t.device) * h + start)


def _positive(kind, value) -> float:
    try:
        if not (checks.is_real(value) or (torch.is_tensor(value) and value.numel() == 1)):
            raise TypeError
        h = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"odeint: options[{kind!r}] must be a real number > 0, "
                         f"got {value!r}") from None
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"odeint: options[{kind!r}] must be a finite number > 0, got {value!r}")
    return h


def _check_count(n, kind, value):
    if not math.isfinite(n) or n > MAX_STEPS:
        raise ValueError(f"odeint: options[{kind!r}]={value!r} asks for {n:.3g} steps; at most "
                         f"{MAX_STEPS:.0e} are allowed: use a larger step")


def _count(span, h, dtype) -> int:
    """``ceil(|span| / h)``, a ratio within rounding of ``dtype`` of a whole number counting as
    that number (float32 times: 0.1 / 0.01 is 10.0000001, 10 steps, not 11)."""
    ratio = abs(float(span)) / h
    _check_count(ratio, "max_step", h)
    near = round(ratio)
    tol = 16 * torch.finfo(dtype).eps * max(1.0, ratio)
    return max(1, near if abs(ratio - near) <= tol else math.ceil(ratio))


def _per_interval(t, counts):
    _check_count(sum(counts), "steps", counts[0])

    def chunks():
        for i, n in enumerate(counts):
            a, b = t[i], t[i + 1]
            yield from _chunks(t[i:i + 2], n + 1, lambda k0, k1: a + torch.arange(
                k0, k1, dtype=t.dtype, device=t.device) * ((b - a) / n))
    return chunks()


def _chunks(t, points, make):
    """``make(k0, k1)`` for consecutive ranges of at most CHUNK points, the last point
    replaced by ``t[-1]`` (as torchdiffeq does)."""
    for k0 in range(0, points - 1, CHUNK):
        k1 = min(points, k0 + CHUNK + 1)
        chunk = make(k0, k1)
        if k1 == points:
            chunk[-1] = t[-1]
        yield chunk


def _constructed(func, y0, t, constructor):
    grid = constructor(func, y0, t) if callable(constructor) else None
    if not torch.is_tensor(grid) or grid.dim() != 1 or len(grid) < 2 or not (
            bool(grid[0] == t[0]) and bool(grid[-1] == t[-1]) and bool((grid.diff() > 0).all())):
        raise ValueError(f"odeint: options['grid_constructor'] must be a callable fn(func, y0, "
                         f"t) returning an increasing 1-D tensor from t[0] to t[-1], got "
                         f"{grid if grid is not None else constructor!r}")
    return grid.to(t.dtype)


def interp(f, t0, t1, y0, y1, t, cubic):
    """torchdiffeq's ``_linear_interp`` (and ``_cubic_hermite_interp``, which evaluates
    ``f(t1, y1)`` for every output, as torchdiffeq does)."""
    if cubic:
        f1 = f(t1, y1)
        f0 = f.value if f.value is not None else f(t0, y0)
        h, dt = (t - t0) / (t1 - t0), t1 - t0
        return ((1 + 2 * h) * (1 - h) * (1 - h) * y0 + h * (1 - h) * (1 - h) * dt * f0
                + h * h * (3 - 2 * h) * y1 + h * h * (h - 1) * dt * f1)
    if t == t0:
        return y0
    if t == t1:
        return y1
    return y0 + (t - t0) / (t1 - t0) * (y1 - y0)


class First:
    """``f`` that keeps its value at ``(t0, y0)`` when the step evaluates it there (for the
    cubic interpolation, as torchdiffeq reuses its step's ``f0``)."""

    def __init__(self, f, t0, y0):
        self.f, self.t0, self.y0, self.value = f, t0, y0, None

    def __call__(self, s, u):
        out = self.f(s, u)
        if self.value is None and s is self.t0 and u is self.y0:
            self.value = out
        return out


def advance(scheme, f, t0, t1, dt: float, y, state, values: dict, out_t, cubic: bool):
    """One step of ``scheme`` from ``(t0, y)`` to ``t1`` (0-dim tensors; ``dt = float(t1 - t0)``):
    ``(y1, state1, [y(s) for s in out_t])``, the outputs (times in ``(t0, t1]``) read off the
    step by `interp`. ``values``: the scheme's per-step keyword values."""
    kwargs = dict(values)
    if scheme.nodes:
        dt_t = t1 - t0
        kwargs["stage_t"] = tuple(t0 if c == 0 else t1 if c == 1 else t0 + dt_t * c
                                  for c in scheme.nodes)
    first = First(f, t0, y) if cubic else f
    y1, state = scheme.step(first, t0, dt, y, state, **kwargs)
    return y1, state, [interp(first, t0, t1, y, y1, s, cubic) for s in out_t]
