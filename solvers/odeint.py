"""``odeint`` with torchdiffeq's signature and semantics, for the fixed-grid schemes.

    ys = solvers.odeint(func, y0, t, method="rk4", options={"step_size": 0.01})

``t`` is a 1-D tensor of output times, strictly increasing or strictly decreasing; the result
has shape ``(len(t), *y0.shape)`` with ``ys[0] = y0`` (a tuple of such tensors for a tuple
``y0``). Between two output times ``t_i, t_{i+1}`` the scheme takes ``n_i`` equal steps of
``h_i = (t_{i+1} - t_i) / n_i``: ``n_i = 1`` without options (torchdiffeq's grid is then ``t``
itself), ``options={"steps": n}`` for ``n`` per interval, ``options={"step_size": h}`` for
``n_i = ceil(|t_{i+1} - t_i| / h)``. So every requested time is a grid point: no interpolation
error (torchdiffeq steps on ``t_0 + k h`` and interpolates where ``t`` falls between). Where the
two grids coincide (``t_{i+1} - t_i`` a multiple of ``h``) the results agree to rounding.

Method names (torchdiffeq -> scheme): ``euler`` -> euler, ``midpoint`` -> midpoint,
``heun2`` -> heun, ``rk4`` -> rk4_38 (torchdiffeq's "rk4" is Kutta's 3/8 rule; classical RK4
is ``method=solvers.get("rk4")``). Any other fixed-grid scheme name (``ab2``, ``lm``,
``backward_euler``, ``euler_maruyama``...) or a `Scheme` object works too; adaptive methods
(dopri5, ...) are torchdiffeq's own. ``rtol``/``atol`` are accepted and, as in torchdiffeq's
fixed-grid solvers, unused.

Gradients flow to ``y0``, to parameters the field uses, and to ``t``: dL/dt_i =
<dL/dy_i, f(t_i, y_i)> for i >= 1 and dL/dt_0 = -<a_0, f(t_0, y_0)> with a_0 the adjoint at
t_0 (the continuous-time derivatives, as torchdiffeq's adjoint gives; they cost one extra field
evaluation per output time, made only when ``t`` requires grad).
"""
from __future__ import annotations

import math

import torch

from . import checks
from .base import Repeat, Scheme
from .registry import SCHEMES, TORCHDIFFEQ_ONLY, get

TORCHDIFFEQ_NAMES = {"euler": "euler", "midpoint": "midpoint", "heun2": "heun", "rk4": "rk4_38"}
GRID_OPTIONS = ("step_size", "steps")


def odeint(func, y0, t, *, method=None, options: dict | None = None, rtol=None, atol=None):
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0`` on the fixed grid described in the module
    docstring; returns ``y`` at every time of ``t``. ``func`` gets ``t`` as a 0-dim tensor."""
    scheme = _scheme(method, options)
    tuple_state = isinstance(y0, tuple)
    if tuple_state:
        if not y0 or not all(torch.is_tensor(y) and y.is_floating_point() for y in y0):
            raise ValueError(f"odeint: a tuple y0 must hold floating-point tensors, got "
                             f"{[type(y).__name__ for y in y0]}")
        shapes = [y.shape for y in y0]
        func, y0 = _flat_func(func, shapes), torch.cat([y.reshape(-1) for y in y0])
    elif not torch.is_tensor(y0) or not y0.is_floating_point():
        got = y0.dtype if torch.is_tensor(y0) else type(y0).__name__
        raise ValueError(f"odeint: y0 must be a floating-point tensor or a tuple of them, got {got}")
    times = _check_t(t)
    steps = _steps_per_interval(times, options)
    t_grad = torch.is_tensor(t) and t.requires_grad and torch.is_grad_enabled()
    y = _shift(func, y0, t, 0, -1) if t_grad else y0  # same value; carries dL/dt_0
    path, state = [y0], None
    for i, n in enumerate(steps):
        dt = (times[i + 1] - times[i]) / n
        y, state = scheme.solve(Repeat(func, n), y, times[i], dt, None, state)
        path.append(_shift(func, y, t, i + 1, 1) if t_grad else y)
    out = torch.stack(path)
    if not tuple_state:
        return out
    sizes = [math.prod(s) for s in shapes]
    return tuple(part.reshape(len(times), *s) for part, s in zip(out.split(sizes, dim=1), shapes))


def _scheme(method, options) -> Scheme:
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"odeint: options must be a dict, got {options!r}")
    scheme_options = {k: v for k, v in (options or {}).items() if k not in GRID_OPTIONS}
    if method is None:
        raise ValueError(f"odeint: give method= (torchdiffeq's default, dopri5, is adaptive: "
                         f"use torchdiffeq.odeint for it); fixed-grid methods: "
                         f"{sorted(set(TORCHDIFFEQ_NAMES) | set(SCHEMES))}")
    if isinstance(method, Scheme):
        if scheme_options:
            raise ValueError(f"odeint: options {sorted(scheme_options)} given with an already "
                             f"built scheme {method!r}; allowed: {list(GRID_OPTIONS)}")
        return method
    if method in TORCHDIFFEQ_ONLY and method not in TORCHDIFFEQ_NAMES:
        raise ValueError(f"odeint: method {method!r} is adaptive (or has its own step control); "
                         f"solvers.odeint runs the fixed-grid methods "
                         f"{sorted(set(TORCHDIFFEQ_NAMES) | set(SCHEMES))}; use "
                         f"torchdiffeq.odeint(func, y0, t, method={method!r}) or "
                         f"odenets.build(field, solver={method!r})")
    name = TORCHDIFFEQ_NAMES.get(method, method)
    if name not in SCHEMES:
        raise ValueError(f"odeint: unknown method {method!r}; fixed-grid methods: "
                         f"{sorted(set(TORCHDIFFEQ_NAMES) | set(SCHEMES))} (torchdiffeq's 'rk4' "
                         f"is our 'rk4_38')")
    try:
        return get(name, **scheme_options)
    except ValueError as e:
        raise ValueError(f"odeint: bad options {sorted(scheme_options)} for method {method!r}: "
                         f"{e}; grid options: {list(GRID_OPTIONS)}") from None


def _check_t(t) -> list[float]:
    """The output times as floats (one host read of ``t``); 1-D, finite, strictly monotonic."""
    try:
        tt = torch.as_tensor(t.detach() if torch.is_tensor(t) else t, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"odeint: t must be a 1-D tensor of times, got {t!r}") from None
    if tt.dim() != 1 or len(tt) < 1:
        raise ValueError(f"odeint: t must be a 1-D tensor of at least one time, got shape "
                         f"{tuple(tt.shape)}")
    times = tt.cpu().tolist()
    diffs = [b - a for a, b in zip(times, times[1:])]
    if not all(map(math.isfinite, times)) or not (all(d > 0 for d in diffs)
                                                  or all(d < 0 for d in diffs)):
        raise ValueError(f"odeint: t must be finite and strictly increasing or strictly "
                         f"decreasing, got {times}")
    return times


def _steps_per_interval(times, options) -> list[int]:
    options = options or {}
    if "steps" in options and "step_size" in options:
        raise ValueError(f"odeint: give options steps or step_size, not both (got "
                         f"steps={options['steps']!r}, step_size={options['step_size']!r})")
    intervals = len(times) - 1
    if "steps" in options:
        n = options["steps"]
        if not checks.is_int(n, 1):
            raise ValueError(f"odeint: options['steps'] must be an integer >= 1 (steps per "
                             f"interval of t), got {n!r}")
        return [n] * intervals
    if "step_size" in options:
        h = options["step_size"]
        try:
            h = abs(float(h))
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"odeint: options['step_size'] must be a real number > 0, "
                             f"got {h!r}") from None
        if not (math.isfinite(h) and h > 0):
            raise ValueError(f"odeint: options['step_size'] must be a finite number > 0, got {h!r}")
        out = []
        for a, b in zip(times, times[1:]):
            ratio = abs(b - a) / h
            near = round(ratio)  # a whole number of steps up to rounding: no sliver step
            out.append(max(1, near if abs(ratio - near) <= 1e-9 * max(1.0, ratio)
                           else math.ceil(ratio)))
        return out
    return [1] * intervals


def _flat_func(func, shapes):
    """torchdiffeq's tuple states: the field on one flat vector."""
    sizes = [math.prod(s) for s in shapes]

    def flat(t, y):
        parts = tuple(p.reshape(s) for p, s in zip(y.split(sizes), shapes))
        out = func(t, parts)
        if not isinstance(out, tuple) or len(out) != len(shapes):
            raise ValueError(f"odeint: for a tuple y0 of {len(shapes)} tensors func must return "
                             f"a tuple of {len(shapes)} tensors, got {type(out).__name__}")
        return torch.cat([o.reshape(-1) for o in out])
    return flat


def _shift(func, y, t, i, sign):
    """``y + sign (t_i - t_i.detach()) f(t_i, y)``: ``y``'s value, with d/dt_i = sign f(t_i, y)
    (``f`` evaluated without a graph: the shift carries the time derivative only)."""
    ti = t[i].to(y.dtype)
    with torch.no_grad():
        slope = func(ti.detach(), y.detach())
    return y + (sign * (ti - ti.detach())) * slope
