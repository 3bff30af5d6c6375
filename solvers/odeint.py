"""``odeint`` with torchdiffeq's signature, defaults and grid semantics.

    ys = solvers.odeint(func, y0, t)                                   # dopri5, as torchdiffeq
    ys = solvers.odeint(func, y0, t, method="rk4", options={"step_size": 0.01})

``t`` is a 1-D tensor of output times, strictly increasing or strictly decreasing; the result
has shape ``(len(t), *y0.shape)`` with ``ys[0] = y0`` (a tuple of such tensors for a tuple
``y0``). ``func(t, y)`` gets ``t`` as a 0-dim tensor in ``t``'s dtype, as in torchdiffeq.

Fixed grids are stepped here, on torchdiffeq's grid (so the field is evaluated at the same
times, float32 grids included):

* no grid option: the grid is ``t`` itself;
* ``step_size=h``: torchdiffeq's ``_grid_constructor_from_step_size``: ``t_0 + k h`` for
  ``k < ceil((t_N - t_0) / h + 1)`` in ``t``'s dtype, its last point replaced by ``t_N``; an
  output time between two grid points is interpolated (``interp="linear"``, torchdiffeq's
  default, or ``"cubic"`` Hermite, which costs one more evaluation per such output);
* ``grid_constructor=fn``: ``fn(func, y0, t)`` returns the grid (torchdiffeq's option);
* ``steps=n`` (ours): ``n`` equal steps per interval of ``t``; ``max_step=h`` (ours):
  ``ceil(|t_{i+1} - t_i| / h)`` equal steps per interval (a ratio within rounding of ``t``'s
  dtype of a whole number counts as that number). Every requested time is then a grid point.

Method names (torchdiffeq -> scheme): ``euler`` -> euler, ``midpoint`` -> midpoint,
``heun2`` -> heun, ``rk4`` -> rk4_38 (torchdiffeq's "rk4" is Kutta's 3/8 rule; classical RK4
is ``method=solvers.get("rk4")``). Any other fixed-grid scheme name (``ab2``, ``lm``, ...) or a
`Scheme` object works too, its options in ``options``; a multistep scheme restarts its history
(one-step start) where the step size changes. Every other torchdiffeq method (dopri5, the
default, dopri8, bosh3, fehlberg2, adaptive_heun, heun3, the Adams methods, scipy_solver), an
``event_fn`` and ``perturb=True`` go to ``torchdiffeq.odeint`` with the options unchanged;
options neither solver knows raise a ValueError naming the allowed ones (torchdiffeq warns).

Gradients flow to ``y0``, to parameters the field uses, and to ``t``: dL/dt_i =
<dL/dy_i, f(t_i, y_i)> for i >= 1 and dL/dt_0 = -<a_0, f(t_0, y_0)> with a_0 the adjoint at
t_0 (the continuous-time derivatives, as torchdiffeq's adjoint gives; one extra field
evaluation per output time, made only when ``t`` requires grad).

``odeint_adjoint`` (torchdiffeq's signature) gives the same outputs with gradients that keep no
per-step graph: torchdiffeq's continuous adjoint for torchdiffeq's method names, the discrete
adjoint by recomputation (`solvers.adjoint`, the gradients above) for our schemes.
"""
from __future__ import annotations

import math

import torch

from . import adjoint, checks, peers
from .base import Scheme, clock_dtype
from .grid import advance, grid as make_grid
from .integrate import shape_checked
from .registry import SCHEMES, get

TORCHDIFFEQ_NAMES = {"euler": "euler", "midpoint": "midpoint", "heun2": "heun", "rk4": "rk4_38"}
GRID_OPTIONS = ("grid_constructor", "interp", "max_step", "step_size", "steps")


def odeint(func, y0, t, *, rtol=1e-7, atol=1e-9, method=None, options: dict | None = None,
           event_fn=None):
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0``; returns ``y`` at every time of ``t``
    (see the module docstring). ``rtol``/``atol`` (finite, >= 0) matter to adaptive methods
    only. A torchdiffeq solve stopped by ``max_num_steps`` raises `solvers.DivergenceError`."""
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"odeint: options must be a dict, got {options!r}")
    options = dict(options or {})
    method = "dopri5" if method is None else method
    times = _check_inputs("odeint", func, y0, t, rtol, atol)
    if peers.odeint_delegated(method, options, event_fn, ours=_ours(method)):
        return peers.torchdiffeq_odeint(func, y0, _for_peer(t, times), rtol=rtol, atol=atol,
                                        method=method, options=options, event_fn=event_fn)
    return _fixed(func, y0, t, times, method, options, None)


def _fixed(func, y0, t, times, method, options: dict, params, check_leaves=False):
    """Our fixed grids: backpropagation through the steps (``params`` None) or the discrete
    adjoint by recomputation (`adjoint.solve`, gradients to ``y0`` and ``params``)."""
    grid = {k: options.pop(k) for k in GRID_OPTIONS if k in options}
    scheme = _scheme(method, options)
    if params is not None and scheme.stochastic:
        raise ValueError(f"odeint_adjoint: scheme {scheme.name!r} is stochastic: recomputing its "
                         f"steps would draw new noise; use solvers.odeint or solvers.sdeint")
    module = func
    tuple_state = isinstance(y0, tuple)
    if tuple_state:
        shapes = [y.shape for y in y0]
        func, y0 = _flat_func(func, shapes), torch.cat([y.reshape(-1) for y in y0])
    func = shape_checked(func, "odeint", "func", check_dtype=True)
    reverse = len(times) > 1 and bool(times[0] > times[1])
    field = _Reversed(func) if reverse else func
    tt = -times if reverse else times
    t_grad = torch.is_tensor(t) and t.requires_grad and torch.is_grad_enabled()
    start = _shift(func, y0, t, 0, -1) if t_grad else y0  # same value; carries dL/dt_0
    cubic = grid.get("interp", "linear") == "cubic"
    chunks = make_grid(field, y0, tt, grid)
    if params is None or not (torch.is_grad_enabled() and any(
            x.requires_grad for x in (start, *params))):  # no gradient asked: keep no states
        path = _solve(scheme, field, start, tt, chunks, cubic)
    else:
        out = adjoint.solve(scheme, field, start, tt, chunks, cubic, params, module,
                           check_leaves)
        path = list(out.unbind(0)) if t_grad else out
    if t_grad:
        path = [path[0]] + [_shift(func, y, t, i, 1) for i, y in enumerate(path) if i]
    out = torch.stack(path) if isinstance(path, list) else path
    if not tuple_state:
        return out
    sizes = [math.prod(s) for s in shapes]
    return tuple(part.reshape(len(times), *s) for part, s in zip(out.split(sizes, dim=1), shapes))


def odeint_adjoint(func, y0, t, *, rtol=1e-7, atol=1e-9, method=None, options=None,
                   event_fn=None, adjoint_rtol=None, adjoint_atol=None, adjoint_method=None,
                   adjoint_options=None, adjoint_params=None):
    """``torchdiffeq.odeint_adjoint`` (its signature and defaults): gradients without keeping
    every step's graph. ``func`` must be an ``nn.Module`` (or give ``adjoint_params``, the
    tensors gradients flow to besides ``y0`` and ``t``).

    * torchdiffeq's methods (dopri5, the default, ..., and its fixed-grid ``euler``,
      ``midpoint``, ``heun2``, ``rk4``) go to ``torchdiffeq.odeint_adjoint``: the continuous
      adjoint ODE solved backwards in time (memory flat in the steps; gradients those of the
      ODE, not of the discrete steps). Our ``steps=n`` / ``max_step=h`` grid options become a
      ``grid_constructor``.
    * our schemes (``method=solvers.get("rk4")``, ``"rk4_38"``, ``"ab2"``, ``"lm"``, ...: a `Scheme`
      or a registered name torchdiffeq does not have) run on ``odeint``'s grid with the discrete
      adjoint by recomputation (`solvers.adjoint`): the gradients of backpropagation through
      the steps (`odeint`'s, to rounding), with only the grid points' states (and multistep
      history) saved, O(steps) states and no per-step activations. Schemes with an exact
      ``inverse`` (leapfrog, damped_leapfrog; ``memory_efficient=False`` opts out) rebuild the
      states backwards instead: O(1) saved states (the field must be separable, as they
      require; on CPU an inexact rebuild raises `DivergenceError`). The field must be deterministic (it is
      evaluated again in backward); stochastic schemes, ``event_fn`` and ``adjoint_method`` /
      ``adjoint_options`` are refused; ``rtol``/``atol``/``adjoint_rtol``/``adjoint_atol`` are
      unused, as by torchdiffeq's fixed grids. Not twice differentiable."""
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"odeint_adjoint: options must be a dict, got {options!r}")
    options = dict(options or {})
    method = "dopri5" if method is None else method
    peer = not isinstance(method, Scheme) and method in peers.torchdiffeq_methods()
    if not peer and not (isinstance(method, Scheme) or method in SCHEMES):
        raise ValueError(f"odeint_adjoint: unknown method {method!r}; torchdiffeq's (continuous "
                         f"adjoint): {sorted(peers.torchdiffeq_methods())}; ours (discrete "
                         f"adjoint): {sorted(set(SCHEMES) - set(peers.torchdiffeq_methods()))} or "
                         f"any solvers.get(name)")
    times = _check_inputs("odeint_adjoint", func, y0, t, rtol, atol)
    t = _for_peer(t, times)
    if adjoint_params is not None:
        given = adjoint_params
        try:
            adjoint_params = tuple(adjoint_params)
        except TypeError:
            adjoint_params = None
        if adjoint_params is None or not all(torch.is_tensor(p) for p in adjoint_params):
            raise ValueError(f"odeint_adjoint: adjoint_params must be an iterable of tensors (e.g. "
                             f"tuple(func.parameters())), got {given!r}")
    if not peer:
        return _discrete(func, y0, t, times, method, options, event_fn, adjoint_method,
                         adjoint_options, adjoint_params)
    if "steps" in options or "max_step" in options:
        ours = {k: options.pop(k) for k in ("steps", "max_step") if k in options}
        options["grid_constructor"] = lambda f, y, tt: _grid_tensor(f, y, tt, ours)
    adjoint = dict(adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
                   adjoint_method=adjoint_method, adjoint_options=adjoint_options,
                   adjoint_params=adjoint_params)
    return peers.torchdiffeq_odeint(func, y0, t, rtol=rtol, atol=atol, method=method,
                                    options=options, event_fn=event_fn, adjoint=adjoint)


def _discrete(func, y0, t, times, method, options, event_fn, adjoint_method, adjoint_options,
              params):
    """``odeint_adjoint`` with one of our schemes: the discrete adjoint (`adjoint.solve`)."""
    extra = {k: v for k, v in (("event_fn", event_fn), ("adjoint_method", adjoint_method),
                                ("adjoint_options", adjoint_options)) if v is not None}
    if extra:
        raise ValueError(f"odeint_adjoint: {sorted(extra)} are not supported with our scheme "
                         f"{method!r} (discrete adjoint); use a torchdiffeq method")
    if params is None and not isinstance(func, torch.nn.Module):
        raise ValueError(f"odeint_adjoint: func must be an nn.Module to find its parameters, or "
                         f"give adjoint_params (e.g. ()), got {func!r}")
    return _fixed(func, y0, t, times, method, options,
                  tuple(func.parameters()) if params is None else params, params is None)


def _grid_tensor(func, y0, t, grid: dict) -> torch.Tensor:
    chunks = list(make_grid(func, y0, t, grid))
    return torch.cat([chunks[0]] + [c[1:] for c in chunks[1:]])


def _ours(method) -> bool:
    return isinstance(method, Scheme) or method in TORCHDIFFEQ_NAMES or method in SCHEMES


def _scheme(method, scheme_options) -> Scheme:
    allowed = f"grid options {list(GRID_OPTIONS)}"
    if isinstance(method, Scheme):
        if scheme_options:
            raise ValueError(f"odeint: unknown options {sorted(scheme_options)} for the built "
                             f"scheme {method!r}; allowed: {allowed}")
        return method
    name = TORCHDIFFEQ_NAMES.get(method, method)
    if scheme_options and method in TORCHDIFFEQ_NAMES:
        raise ValueError(f"odeint: unknown options {sorted(scheme_options)} for method "
                         f"{method!r}; allowed: {allowed} and torchdiffeq's 'perturb'")
    try:
        return get(name, **scheme_options)
    except ValueError as e:
        raise ValueError(f"odeint: bad options {sorted(scheme_options)} for method {method!r}: "
                         f"{e}; also allowed: {allowed}") from None


def _check_inputs(where: str, func, y0, t, rtol, atol) -> torch.Tensor:
    """Check ``func``, ``y0`` (a floating-point tensor or a non-empty tuple of them), the
    tolerances (finite numbers >= 0) and ``t`` (`_check_t`), for our grids and torchdiffeq's
    alike; the checked times."""
    if isinstance(y0, tuple):
        if not y0 or not all(torch.is_tensor(y) and y.is_floating_point() for y in y0):
            raise ValueError(f"{where}: a tuple y0 must hold floating-point tensors, got "
                             f"{[y.dtype if torch.is_tensor(y) else type(y).__name__ for y in y0]}")
    elif not torch.is_tensor(y0) or not y0.is_floating_point():
        got = y0.dtype if torch.is_tensor(y0) else type(y0).__name__
        raise ValueError(f"{where}: y0 must be a floating-point tensor or a tuple of them, got {got}")
    if not callable(func):
        raise ValueError(f"{where}: func must be callable as func(t, y), got {func!r}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        values = tol.detach().flatten().tolist() if torch.is_tensor(tol) and not tol.is_complex() \
            else [tol] if checks.is_real(tol) else None
        if values is None or not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(f"{where}: {name} must be a finite number >= 0, got {tol!r}")
    return _check_t(t, y0[0] if isinstance(y0, tuple) else y0)


def _for_peer(t, times: torch.Tensor):
    """``t`` as torchdiffeq takes it: the tensor given (its gradient kept) when it is a
    floating-point tensor on the state's device, else the checked times."""
    ok = torch.is_tensor(t) and t.is_floating_point() and t.device == times.device
    return t if ok else times


def _check_t(t, y0) -> torch.Tensor:
    """``t`` as a detached 1-D tensor on ``y0``'s device (its own floating dtype, else the
    state's clock dtype): finite, strictly monotonic, with finite differences."""
    if torch.is_tensor(t) and t.is_complex() or isinstance(t, complex):
        raise ValueError(f"odeint: t must be real times, got {t!r}")
    try:
        if torch.is_tensor(t):
            tt = t.detach().to(y0.device)
            if not tt.is_floating_point():
                tt = tt.to(clock_dtype(y0))
        else:
            tt = torch.as_tensor(t, dtype=clock_dtype(y0), device=y0.device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"odeint: t must be a 1-D tensor of times, got {t!r}") from None
    if tt.dim() != 1 or len(tt) < 1 or tt.is_complex():
        raise ValueError(f"odeint: t must be a real 1-D tensor of at least one time, got shape "
                         f"{tuple(tt.shape)}")
    diffs = tt[1:] - tt[:-1]
    if not (bool(torch.isfinite(tt).all()) and bool(torch.isfinite(diffs).all())
            and (bool((diffs > 0).all()) or bool((diffs < 0).all()))):
        raise ValueError(f"odeint: t must be finite (with finite differences) and strictly "
                         f"increasing or strictly decreasing, got {tt.tolist()}")
    return tt


class _Reversed(torch.nn.Module):
    """torchdiffeq's reversal: solve on ``-t`` with ``-func(-s, y)``."""

    def __init__(self, func):
        super().__init__()
        self.func = func

    def forward(self, s, y):
        return -self.func(-s, y)


def _solve(scheme: Scheme, f, y0, t, chunks, cubic: bool) -> list:
    """Step over the grid; each output time ``t[j]`` in ``(t0, t1]`` is read off the step from
    ``t0`` to ``t1`` by torchdiffeq's interpolation (exact where ``t[j]`` is a grid point)."""
    values = {n: v for n, (v, _) in scheme.per_step_values(None, 1).items()}
    if scheme.stochastic:
        values["training"] = True
    out, j, y, state, last_dt = [y0], 1, y0, None, None
    t_list = t.tolist()
    for chunk in chunks:
        points, floats = chunk.unbind(0), chunk.tolist()
        for t0, t1, b in zip(points[:-1], points[1:], floats[1:]):
            dt = float(t1 - t0)
            if scheme.past_states and dt != last_dt:
                state = None  # a new step size: restart the multistep history
            k = j
            while k < len(t_list) and b >= t_list[k]:
                k += 1
            y, state, outs = advance(scheme, f, t0, t1, dt, y, state, values, t[j:k], cubic)
            out.extend(outs)
            j, last_dt = k, dt
    return out


def _flat_func(func, shapes):
    """torchdiffeq's tuple states: the field on one flat vector, each part's shape checked."""
    sizes = [math.prod(s) for s in shapes]

    def flat(t, y):
        parts = tuple(p.reshape(s) for p, s in zip(y.split(sizes), shapes))
        out = func(t, parts)
        if not isinstance(out, tuple) or len(out) != len(shapes):
            raise ValueError(f"odeint: for a tuple y0 of {len(shapes)} tensors func must return "
                             f"a tuple of {len(shapes)} tensors, got {type(out).__name__}")
        for i, (o, s) in enumerate(zip(out, shapes)):
            if not torch.is_tensor(o) or o.shape != s:
                got = tuple(o.shape) if torch.is_tensor(o) else type(o).__name__
                raise ValueError(f"odeint: func's output {i} must have y0[{i}]'s shape "
                                 f"{tuple(s)}, got {got}")
        return torch.cat([o.reshape(-1) for o in out])
    return flat


def _shift(func, y, t, i, sign):
    """``y + sign (t_i - t_i.detach()) f(t_i, y)``: ``y``'s value, with d/dt_i = sign f(t_i, y)
    (``f`` evaluated without a graph: the shift carries the time derivative only)."""
    ti = t[i].to(y.dtype)
    with torch.no_grad():
        slope = func(t[i].detach(), y.detach())
    return y + (sign * (ti - ti.detach())) * slope
