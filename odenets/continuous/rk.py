"""torchdiffeq's adaptive Runge-Kutta methods with the stages kept as a list of tensors.

torchdiffeq 0.2.5 stores the stages k_1..k_s of a step in one tensor of shape
``(*y.shape, s)`` and forms every stage input as ``y0 + sum(k[..., :i] * (dt b_i), -1)``:
each stage costs a strided copy of f into k, a temporary of i state-sized slices and a
reduction over a trailing dimension of length <= 7, about 9x the memory traffic of
``y0 + dt sum_j b_ij k_j`` written as a chain of axpys (measured: 7.4 vs 0.8 ms for five terms
on a 2 MiB state, one CPU core). On small CPU activations that arithmetic, not the field,
was most of a dopri5 solve (ode_resnet20's stage-0 flow), and it grows with the state:
the heavy-ball flow's state (u, v) is twice u.

Here the same step is taken with the same formulas and the same float32 coefficients
``dt b_ij``, but each combination is ``y0 + c_1 k_1 + c_2 k_2 + ...`` accumulated in one
fresh tensor (zero coefficients skipped), the stages are never copied, ``t_dtype`` is read
off the dtype (torchdiffeq takes ``y0.abs()`` every step for it), the interpolating
polynomial of a step is evaluated at an output time as one combination of (y0, y1, k_1..k_s)
(`interpolation_weights`; torchdiffeq fits ``y_mid`` and five coefficient tensors and evaluates
them, ~30 elementwise passes), and the RMS error ratio runs in cache-sized blocks (the same
operations per element and the same reduction, bit for bit). Results equal torchdiffeq's to
rounding (the summation order of a combination differs); the step-size control, the
asserts, ``step_t``/``jump_t``, callbacks and perturbation are torchdiffeq's own (no ``event_fn``).
`odeint_adjoint` is torchdiffeq's adjoint with these solves, forward and backward (the
augmented state (t, y, a, params) flattened into one vector, as torchdiffeq does). Where
``dt`` carries a gradient (torchdiffeq's first step size depends on ``y0`` and
``f(y0)``), the coefficients stay tensors so that gradient is kept.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torchdiffeq._impl.adjoint import find_parameters, handle_adjoint_norm_
from torchdiffeq._impl.interp import _interp_evaluate, _interp_fit
from torchdiffeq._impl.misc import (Perturb, _all_adjoint_callback_names, _all_callback_names,
                                    _check_inputs, _compute_error_ratio, _flat_to_shape,
                                    _nextafter, _optimal_step_size, _PerturbFunc, _rms_norm)
from torchdiffeq._impl.odeint import SOLVERS
from torchdiffeq._impl.rk_common import RKAdaptiveStepsizeODESolver, _RungeKuttaState


def combine(y0, ks, coefficients):
    """``y0 + sum_j c_j k_j`` (``y0`` None: the sum alone), accumulated left to right in one new
    tensor (torchdiffeq adds ``y0`` to the finished sum: the same to rounding). ``coefficients``:
    floats, or 0-dim tensors where they carry a gradient; zero floats are skipped."""
    out = None
    for k, c in zip(ks, coefficients):
        tensor = torch.is_tensor(c)
        if not tensor and c == 0:
            continue
        if out is None and y0 is None:
            out = k * c
        elif out is None:
            out = torch.addcmul(y0, k, c) if tensor else torch.add(y0, k, alpha=c)
        else:
            out = out.addcmul_(k, c) if tensor else out.add_(k, alpha=c)
    if out is None:
        return torch.zeros_like(ks[0]) if y0 is None else y0.clone()
    return out


def _scaled(row, dt):
    """``row * dt`` in the state's dtype: floats, or 0-dim tensors when dt needs a gradient."""
    scaled = row * dt
    return scaled.unbind(0) if scaled.requires_grad else scaled.tolist()


class LazyFit(Sequence):
    """The interpolating polynomial of one step. `evaluate` gives its value at a time of the step
    as one combination (`interpolation_weights`); indexing gives torchdiffeq's coefficients
    ``[e, d, c, b, a]`` (``_interp_fit``), fitted on first access."""

    def __init__(self, y0, y1, ks, mid, dt):
        self._args, self._coefficients = (y0, y1, ks, mid, dt), None

    def _fit(self):
        if self._coefficients is None:
            y0, y1, ks, mid, dt = self._args
            dt = dt.type_as(y0)
            y_mid = combine(y0, ks, _scaled(mid, dt))
            self._coefficients, self._args = _interp_fit(y0, y1, y_mid, ks[0], ks[-1], dt), None
        return self._coefficients

    def evaluate(self, t0, t1, t):
        """p(x), x = (t - t0) / (t1 - t0): torchdiffeq's ``_interp_evaluate`` of the fit, to
        rounding, without forming the fit (one pass over the stages instead of about 30)."""
        if self._coefficients is not None:
            return _interp_evaluate(self._coefficients, t0, t1, t)
        assert (t0 <= t) & (t <= t1), \
            'invalid interpolation, fails `t0 <= t <= t1`: {}, {}, {}'.format(t0, t, t1)
        y0, y1, ks, mid, dt = self._args
        x = (t - t0) / (t1 - t0)
        w0, w1, wmid, wf0, wf1 = interpolation_weights(x if x.requires_grad else float(x))
        grad = torch.is_tensor(w0) or dt.requires_grad
        dt = dt.type_as(y0) if grad else float(dt.type_as(y0))
        mid = mid.to(torch.float64) if not grad else mid.type_as(y0)
        # p = (w0 + wmid) y0 + w1 y1 + sum_j (wmid dt mid_j + [j = 0] wf0 dt + [j = s] wf1 dt) k_j
        weights = [wmid * dt * m for m in (mid.unbind(0) if grad else mid.tolist())]
        weights[0] = weights[0] + wf0 * dt
        weights[-1] = weights[-1] + wf1 * dt
        weights = [w.to(y0.dtype) if torch.is_tensor(w) else w for w in weights]
        w_y0 = w0 + wmid
        if torch.is_tensor(w_y0):
            w_y0, w1 = w_y0.to(y0.dtype), w1.to(y0.dtype)
        return combine(None, [y0, y1, *ks], [w_y0, w1, *weights])

    def __getitem__(self, i):
        return self._fit()[i]

    def __len__(self):
        return 5


def interpolation_weights(x):
    """The weights of (y0, y1, y_mid, dt f0, dt f1) in torchdiffeq's quartic interpolant
    p(x) = e + d x + c x^2 + b x^3 + a x^4 (``_interp_fit``): collecting
    a = 2 dt (f1 - f0) - 8 (y1 + y0) + 16 y_mid, b = dt (5 f0 - 3 f1) + 18 y0 + 14 y1 - 32 y_mid,
    c = dt (f1 - 4 f0) - 11 y0 - 5 y1 + 16 y_mid, d = dt f0, e = y0 gives

        y0: 1 - 11 x^2 + 18 x^3 - 8 x^4,   y1: -5 x^2 + 14 x^3 - 8 x^4,
        y_mid: 16 x^2 (1 - x)^2,   dt f0: x - 4 x^2 + 5 x^3 - 2 x^4,   dt f1: x^2 - 3 x^3 + 2 x^4.

    At x = 0 they are (1, 0, 0, 0, 0) and at x = 1 (0, 1, 0, 0, 0) exactly (integer arithmetic)."""
    x2 = x * x
    x3, x4 = x2 * x, x2 * x2
    return (1 - 11 * x2 + 18 * x3 - 8 * x4, -5 * x2 + 14 * x3 - 8 * x4,
            16 * x2 - 32 * x3 + 16 * x4, x - 4 * x2 + 5 * x3 - 2 * x4, x2 - 3 * x3 + 2 * x4)


class ListStages:
    """Mixin over a torchdiffeq `RKAdaptiveStepsizeODESolver`: the step with list-held stages
    (module docstring). `_adaptive_step` is torchdiffeq 0.2.5's, the step itself replaced."""

    def _runge_kutta_step(self, y0, f0, t0, dt, t1):
        tableau = self.tableau
        t_dtype = y0.dtype.to_real()
        t0, dt, t1 = t0.to(t_dtype), dt.to(t_dtype), t1.to(t_dtype)
        ks = [f0]
        yi = y0
        for alpha_i, beta_i in zip(tableau.alpha.tolist(), tableau.beta):
            if alpha_i == 1.:  # always step to just before the end time (discontinuities)
                ti, perturb = t1, Perturb.PREV
            else:
                ti, perturb = t0 + alpha_i * dt, Perturb.NONE
            yi = combine(y0, ks, _scaled(beta_i, dt))
            ks.append(self.func(ti, yi, perturb=perturb))
        if not (tableau.c_sol[-1] == 0 and (tableau.c_sol[:-1] == tableau.beta[-1]).all()):
            yi = combine(y0, ks, _scaled(tableau.c_sol, dt))
        return yi, ks[-1], combine(None, ks, _scaled(tableau.c_error, dt)), ks

    def _error_ratio(self, error, y0, y1):
        """torchdiffeq's ``norm(error / (atol + rtol max(|y0|, |y1|)))``, the same operations on
        each element and the same reduction (it only steers the step size, but gradients are
        sensitive to its rounding through the step sizes, so it is kept bit for bit). For its
        default RMS norm it runs without a graph, in place on ``error`` (a temporary of the
        step), and in blocks of `BLOCK` elements: the six elementwise passes of a block stay in
        cache, so the state is read once, not about ten times; ``|q|^2 = q^2`` drops an abs."""
        if self.norm is not _rms_norm:
            return _compute_error_ratio(error, self.rtol, self.atol, y0, y1, self.norm)
        with torch.no_grad():
            blocks = _blocks(error, y0, y1)
            if blocks is None:
                tol = torch.maximum(y0.abs(), y1.abs()).mul_(self.rtol).add_(self.atol)
                return torch.div(error, tol, out=tol).pow_(2).mean().sqrt().abs()
            scratch = [torch.empty(BLOCK, dtype=error.dtype, device=error.device)
                       for _ in range(2)]
            for e, a, b in zip(*blocks):
                s0, s1 = scratch[0][:e.numel()], scratch[1][:e.numel()]
                tol = torch.maximum(torch.abs(a, out=s0), torch.abs(b, out=s1), out=s0)
                tol.mul_(self.rtol).add_(self.atol)
                torch.div(e, tol, out=e).pow_(2)
            return error.mean().sqrt().abs()

    def _advance(self, next_t):
        """torchdiffeq's: step until ``next_t`` lies in the last step, then interpolate there
        (`LazyFit.evaluate`: one combination instead of the fit and its evaluation)."""
        n_steps = 0
        while next_t > self.rk_state.t1:
            assert n_steps < self.max_num_steps, \
                'max_num_steps exceeded ({}>={})'.format(n_steps, self.max_num_steps)
            self.rk_state = self._adaptive_step(self.rk_state)
            n_steps += 1
        interp = self.rk_state.interp_coeff
        if isinstance(interp, LazyFit):
            return interp.evaluate(self.rk_state.t0, self.rk_state.t1, next_t)
        return _interp_evaluate(interp, self.rk_state.t0, self.rk_state.t1, next_t)

    def _adaptive_step(self, rk_state):
        y0, f0, _, t0, dt, interp_coeff = rk_state
        if not torch.isfinite(dt):
            dt = self.min_step
        dt = dt.clamp(self.min_step, self.max_step)
        self.func.callback_step(t0, y0, dt)
        t1 = t0 + dt
        assert t0 + dt > t0, 'underflow in dt {}'.format(dt.item())
        assert _finite(y0), 'non-finite values in state `y`: {}'.format(y0)
        on_step_t = False
        if len(self.step_t):
            next_step_t = self.step_t[self.next_step_index]
            on_step_t = t0 < next_step_t < t0 + dt
            if on_step_t:
                t1 = next_step_t
                dt = t1 - t0
        on_jump_t = False
        if len(self.jump_t):
            next_jump_t = self.jump_t[self.next_jump_index]
            on_jump_t = t0 < next_jump_t < t0 + dt
            if on_jump_t:
                on_step_t = False
                t1 = next_jump_t
                dt = t1 - t0
        y1, f1, y1_error, ks = self._runge_kutta_step(y0, f0, t0, dt, t1)
        error_ratio = self._error_ratio(y1_error, y0, y1)
        accept_step = error_ratio <= 1
        if dt > self.max_step:
            accept_step = False
        if dt <= self.min_step:
            accept_step = True
        if accept_step:
            self.func.callback_accept_step(t0, y0, dt)
            t_next, y_next = t1, y1
            interp_coeff = LazyFit(y0, y_next, ks, self.mid, dt)
            if on_step_t and self.next_step_index != len(self.step_t) - 1:
                self.next_step_index += 1
            if on_jump_t:
                if self.next_jump_index != len(self.jump_t) - 1:
                    self.next_jump_index += 1
                f1 = self.func(t_next, y_next, perturb=Perturb.NEXT)  # the new side of the jump
            f_next = f1
        else:
            self.func.callback_reject_step(t0, y0, dt)
            t_next, y_next, f_next = t0, y0, f0
        dt_next = _optimal_step_size(dt, error_ratio, self.safety, self.ifactor, self.dfactor,
                                     self.order)
        dt_next = dt_next.clamp(self.min_step, self.max_step)
        return _RungeKuttaState(y_next, f_next, t0, t_next, dt_next, interp_coeff)


def _finite(y) -> bool:
    """``torch.isfinite(y).all()``, read off the sum (one pass) unless the sum is not finite."""
    with torch.no_grad():
        return bool(torch.isfinite(y.sum())) or bool(torch.isfinite(y).all())


BLOCK = 1 << 18  # elements per block of `ListStages._error_ratio` (1 MiB in float32)


def _blocks(error, *others):
    """Matching flat views of ``error`` and ``others`` cut into `BLOCK`-element pieces, or None
    where that gains nothing (a small state) or is not possible (layouts that differ, an error
    that is not a dense tensor of its own)."""
    if error.numel() <= 2 * BLOCK or error._base is not None or any(
            o.shape != error.shape or o.stride() != error.stride() for o in others):
        return None
    flat = [_flat(t) for t in (error, *others)]
    if any(f is None for f in flat):
        return None
    return [f.split(BLOCK) for f in flat]


def _flat(t):
    """A 1-D view of a dense tensor in its memory order (contiguous or channels_last, ...)."""
    order = sorted(range(t.dim()), key=lambda d: -t.stride(d))
    permuted = t.permute(order)
    return permuted.view(-1) if permuted.is_contiguous() else None


# torchdiffeq's adaptive Runge-Kutta methods (dopri5, dopri8, bosh3, fehlberg2, adaptive_heun)
FAST = {name: type(cls.__name__, (ListStages, cls), {"__doc__": cls.__doc__})
        for name, cls in SOLVERS.items() if issubclass(cls, RKAdaptiveStepsizeODESolver)}


def odeint(func, y0, t, *, rtol=1e-7, atol=1e-9, method=None, options=None):
    """``torchdiffeq.odeint`` (no events) with `FAST`'s solver for the adaptive Runge-Kutta
    methods; every other method is torchdiffeq's own. A tuple state is flattened, as there."""
    shapes, func, y0, t, rtol, atol, method, options, _, _ = _check_inputs(
        func, y0, t, rtol, atol, method, options, None, SOLVERS)
    return _solve(shapes, _LightPerturb.of(func), y0, t, rtol, atol, method, options)


def _solve(shapes, func, y0, t, rtol, atol, method, options):
    solver = FAST.get(method, SOLVERS[method])(func=func, y0=y0, rtol=rtol, atol=atol, **options)
    solution = solver.integrate(t)
    return solution if shapes is None else _flat_to_shape(solution, (len(t),), shapes)


def odeint_adjoint(func, y0, t, *, rtol=1e-7, atol=1e-9, method=None, options=None,
                   adjoint_rtol=None, adjoint_atol=None, adjoint_method=None,
                   adjoint_options=None, adjoint_params=None):
    """``torchdiffeq.odeint_adjoint`` (0.2.5, no events) whose forward and adjoint solves are
    `odeint`'s: the backward solves a' = -a^T df/dy, with the parameter and time gradients, on
    the augmented state (t, y, a, params) backwards, as torchdiffeq does."""
    if adjoint_params is None and not isinstance(func, torch.nn.Module):
        raise ValueError("odeint_adjoint: func must be an nn.Module, or give adjoint_params")
    adjoint_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    adjoint_atol = atol if adjoint_atol is None else adjoint_atol
    adjoint_method = method if adjoint_method is None else adjoint_method
    if adjoint_method != method and options is not None and adjoint_options is None:
        raise ValueError("odeint_adjoint: adjoint_method != method needs adjoint_options")
    if adjoint_options is None:
        adjoint_options = {k: v for k, v in (options or {}).items() if k != "norm"}
    else:
        adjoint_options = dict(adjoint_options)
    params = tuple(find_parameters(func) if adjoint_params is None else adjoint_params)
    params = tuple(p for p in params if p.requires_grad)
    shapes, func, y0, t, rtol, atol, method, options, _, _ = _check_inputs(
        func, y0, t, rtol, atol, method, options, None, SOLVERS)
    handle_adjoint_norm_(adjoint_options, shapes, options["norm"])
    light = _LightPerturb.of(func)
    ans = _Adjoint.apply(shapes, light, y0, t, rtol, atol, method, options, adjoint_rtol,
                         adjoint_atol, adjoint_method, adjoint_options, t.requires_grad, *params)
    return ans if shapes is None else _flat_to_shape(ans, (len(t),), shapes)


class _Adjoint(torch.autograd.Function):
    """torchdiffeq's ``OdeintAdjointMethod`` (events left out) with `odeint` for its solves."""

    @staticmethod
    def forward(ctx, shapes, func, y0, t, rtol, atol, method, options, adjoint_rtol, adjoint_atol,
                adjoint_method, adjoint_options, t_requires_grad, *adjoint_params):
        ctx.func, ctx.t_requires_grad = func, t_requires_grad
        ctx.adjoint = dict(rtol=adjoint_rtol, atol=adjoint_atol, method=adjoint_method,
                           options=adjoint_options)
        with torch.no_grad():
            y = _solve(None, func, y0, t, rtol, atol, method, options)
            ctx.save_for_backward(t, y, *adjoint_params)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        with torch.no_grad():
            func, t_requires_grad = ctx.func, ctx.t_requires_grad
            t, y, *params = ctx.saved_tensors
            params = tuple(params)
            aug_state = [torch.zeros((), dtype=y.dtype, device=y.device), y[-1], grad_y[-1]]
            aug_state.extend(torch.zeros_like(p) for p in params)  # (vjp_t, y, vjp_y, vjp_params)

            def augmented_dynamics(t, y_aug):
                y, adj_y = y_aug[1], y_aug[2]
                with torch.enable_grad():
                    t_ = t.detach()
                    t = t_.requires_grad_(True)
                    y = y.detach().requires_grad_(True)
                    func_eval = func(t if t_requires_grad else t_, y)
                    _t = torch.as_strided(t, (), ())  # noqa: F841 (torchdiffeq's: a graph edge)
                    _y = torch.as_strided(y, (), ())  # noqa: F841
                    _params = tuple(torch.as_strided(p, (), ()) for p in params)  # noqa: F841
                    vjp_t, vjp_y, *vjp_params = torch.autograd.grad(
                        func_eval, (t, y) + params, -adj_y, allow_unused=True, retain_graph=True)
                vjp_t = torch.zeros_like(t) if vjp_t is None else vjp_t
                vjp_y = torch.zeros_like(y) if vjp_y is None else vjp_y
                vjp_params = [torch.zeros_like(p) if v is None else v
                              for p, v in zip(params, vjp_params)]
                return (vjp_t, func_eval, vjp_y, *vjp_params)

            for name, adjoint_name in zip(_all_callback_names, _all_adjoint_callback_names):
                callback = getattr(func, adjoint_name, None)
                if callback is not None:
                    setattr(augmented_dynamics, name, callback)
            time_vjps = torch.empty(len(t), dtype=t.dtype, device=t.device) \
                if t_requires_grad else None
            for i in range(len(t) - 1, 0, -1):
                if t_requires_grad:
                    dl_dt = func(t[i], y[i]).reshape(-1).dot(grad_y[i].reshape(-1))
                    aug_state[0] -= dl_dt
                    time_vjps[i] = dl_dt
                aug_state = odeint(augmented_dynamics, tuple(aug_state), t[i - 1:i + 1].flip(0),
                                   **ctx.adjoint)
                aug_state = [a[1] for a in aug_state]  # the value at t[i - 1]
                aug_state[1] = y[i - 1]  # the forward pass's state there
                aug_state[2] += grad_y[i - 1]  # and the loss's gradient at that time
            if t_requires_grad:
                time_vjps[0] = aug_state[0]
        return (None, None, aug_state[2], time_vjps, None, None, None, None, None, None, None, None,
                None, *aug_state[3:])


class _LightPerturb(_PerturbFunc):
    """torchdiffeq's `_PerturbFunc` without its ``y.abs()`` per call (a pass over the state
    to read the real dtype): ``t`` in ``y``'s real dtype, nudged to the next/previous float."""

    @classmethod
    def of(cls, func: _PerturbFunc) -> _LightPerturb:
        light = cls(func.base_func)
        for name in _all_callback_names:  # the callbacks `_check_inputs` attached
            setattr(light, name, getattr(func, name))
        return light

    def forward(self, t, y, *, perturb=Perturb.NONE):
        t = (t.real if torch.is_complex(t) else t).to(y.dtype.to_real())
        if perturb is Perturb.NEXT:
            t = _nextafter(t, t + 1)
        elif perturb is Perturb.PREV:
            t = _nextafter(t, t - 1)
        return self.base_func(t, y)
