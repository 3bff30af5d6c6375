"""Continuous depth through torchode (optional): ``u(t1) = u(t0) + int_{t0}^{t1} f(t, u(t)) dt``.

``"torchode:<method>"`` integrates a tied field with torchode's adaptive Runge-Kutta pairs
(Lienen & Guennemann 2022): ``dopri5`` (Dormand-Prince 5(4), 7 stages with FSAL, 6 field
evaluations per step), ``tsit5`` (Tsitouras 5(4), same cost, smaller error constants) and
``heun`` (Heun 2(1), 2 evaluations per step). A step is accepted when the RMS norm of
``err_i / (atol + rtol max(|u_i|, |u_i'|))`` is below 1; the step size is rescaled by
``safety * ratio^(-1/order)``, clamped to ``[dfactor, ifactor]`` (torchode's
``IntegralController``: torchdiffeq's dopri5 rule).

The difference from the torchdiffeq flows: the state is flattened to ``(batch, -1)`` and every
sample has its own step size and clock (``per_sample=True``): one hard sample does not force
small steps on the others. The field is still called on the whole batch at once (finished
samples ride along), so a time-aware field receives one time per sample: ``t`` of shape
``(batch,)`` for a ``(batch, d)`` state, exactly as torchode passes it, and ``(batch, 1, ...,
1)``, broadcastable against ``u``, for image states; ``per_sample=False`` solves the batch as one problem with one
clock (a 0-dim ``t``, one error norm for the batch), as torchdiffeq does.

NFE: ``nfe["forward"]`` counts batched field calls, as for the other flows. torchode's own
per-sample ``n_f_evals`` counts the same calls (each call adds 1 to every sample), so the two
agree; its per-sample ``n_steps`` / ``n_accepted`` of the last solve are in ``flow.stats``.
Gradients flow through the solver's steps (torchode's ``AutoDiffAdjoint``); ``nfe["backward"]``
is therefore 0. torchode is imported when a flow is built, never by ``import odenets``.
"""
from __future__ import annotations

import torch
from torch import nn

from solvers.base import DivergenceError
from solvers.checks import t_span as check_t_span

from . import checks
from .nfe import CountedField, CountsNFE

# torchode's registered adaptive methods (torchode.interface.METHODS), listed here so that
# naming them does not import torchode
TORCHODE_METHODS = ("dopri5", "heun", "tsit5")
INSTALL_HINT = "pip install odenets[torchode] (or pip install torchode)"
# our option (torchdiffeq's dopri5 name) -> (torchode name, checker)
OPTIONS = {
    "first_step": ("dt0", lambda s, n, v: checks.positive(s, n, v)),
    "max_num_steps": ("max_steps", checks.integer),
    "min_step": ("dt_min", lambda s, n, v: checks.positive(s, n, v, allow_zero=True)),
    "max_step": ("dt_max", lambda s, n, v: checks.positive(s, n, v, allow_inf=True)),
    "safety": ("safety", lambda s, n, v: checks.in_range(s, n, v, 0.0, 1.0)),
    "ifactor": ("factor_max", lambda s, n, v: checks.in_range(s, n, v, 1.0, float("inf"), False, True)),
    "dfactor": ("factor_min", lambda s, n, v: checks.in_range(s, n, v, 0.0, 1.0, True, True)),
    "norm": ("norm", checks.function),
}
# torchode's own names are accepted too (dt0=, max_steps=, ...): torchode name -> ours
THEIR_NAMES = {theirs: ours for ours, (theirs, _) in OPTIONS.items() if theirs != ours}


def import_torchode():
    """The torchode module, or an ImportError that names the extra to install."""
    try:
        import torchode
    except ImportError as e:
        raise ImportError(f"the torchode:* solvers need the optional package torchode: "
                          f"{INSTALL_HINT}") from e
    return torchode


class TorchodeFlow(CountsNFE, nn.Module):
    """``forward(u0) = u(t1)`` for ``du/dt = f(t, u)``, ``u(t0) = u0``, solved by torchode.

    Options as `odenets.continuous.ode.ODEFlow`'s dopri5: ``rtol``/``atol`` (defaults 1e-5 /
    1e-6), ``count_vjp``, ``first_step``, ``max_num_steps``, ``min_step``, ``max_step``,
    ``safety``, ``ifactor``, ``dfactor``, ``norm`` (torchode's: ``(batch, d) -> (batch,)``);
    plus ``per_sample`` (see the module docstring). ``adjoint=True`` is refused (use
    torchdiffeq's ``"dopri5"`` for the adjoint method). ``forward(u0, times)`` returns the
    states at ``times`` (dense output), shape ``(len(times), *u0.shape)``.
    """

    continuous = True

    def __init__(self, field, method: str = "dopri5", t_span=(0.0, 1.0), steps=None, rtol=1e-5,
                 atol=1e-6, adjoint=False, per_sample=True, count_vjp=False, name=None, **options):
        super().__init__()
        name = name or f"torchode:{method}"
        self.solver_name, self.method = name, method
        torchode = import_torchode()
        registered = sorted(torchode.interface.METHODS)
        if method not in registered:
            raise ValueError(f"{name}: unknown torchode method {method!r}; available: "
                             f"{['torchode:' + m for m in registered]}")
        self.t_span = check_t_span(name, t_span)
        if steps is not None:
            raise ValueError(f"{name}: steps={steps!r} applies to fixed-grid methods only; torchode's "
                             f"{method!r} chooses its steps from rtol/atol")
        self.rtol, self.atol = checks.positive(name, "rtol", rtol), checks.positive(name, "atol", atol)
        if checks.boolean(name, "adjoint", adjoint):
            raise ValueError(f"{name}: adjoint=True is not supported: torchode flows backpropagate "
                             f"through the solver's steps; for the adjoint method use 'dopri5' "
                             f"(torchdiffeq) with adjoint=True")
        self.adjoint = False
        self.per_sample = checks.boolean(name, "per_sample", per_sample)
        both = sorted(k for k in options if THEIR_NAMES.get(k) in options)
        if both:
            raise ValueError(f"{name}: give {both[0]} or {THEIR_NAMES[both[0]]}, not both")
        options = {THEIR_NAMES.get(k, k): v for k, v in options.items()}
        bad = sorted(set(options) - set(OPTIONS))
        if bad:
            raise ValueError(f"{name}: unknown option(s) {bad}; allowed: rtol, atol, per_sample, "
                             f"count_vjp, {', '.join(OPTIONS)} (or torchode's names "
                             f"{', '.join(THEIR_NAMES)})")
        self.options = {k: OPTIONS[k][1](name, k, v) for k, v in options.items()}
        self.func = CountedField(field, checks.boolean(name, "count_vjp", count_vjp))
        self.stats = {}  # torchode's per-sample statistics of the last solve

    def _solver(self, torchode, term):
        theirs = {OPTIONS[k][0]: v for k, v in self.options.items()}
        control = {k: theirs[k] for k in ("norm", "dt_min", "dt_max", "safety", "factor_min",
                                          "factor_max") if k in theirs}
        controller = torchode.IntegralController(atol=self.atol, rtol=self.rtol, term=term, **control)
        method = torchode.interface.METHODS[self.method](term=term)
        return torchode.AutoDiffAdjoint(method, controller, max_steps=theirs.get("max_steps"))

    def _times(self, times, dtype, device):
        values = torch.as_tensor(times.detach().cpu() if torch.is_tensor(times) else times,
                                 dtype=torch.float64).reshape(-1)
        steps = values[1:] - values[:-1]
        if len(values) < 2 or not bool((steps > 0).all() or (steps < 0).all()) or \
                not bool(torch.isfinite(values).all()):
            raise ValueError(f"{self.solver_name}: times must hold at least two finite, strictly "
                             f"increasing (or strictly decreasing) times, got {values.tolist()}")
        return values.to(dtype=dtype, device=device)

    def forward(self, u0: torch.Tensor, times=None) -> torch.Tensor:
        if not torch.is_tensor(u0) or not u0.is_floating_point():
            got = u0.dtype if torch.is_tensor(u0) else type(u0).__name__
            raise ValueError(f"{self.solver_name}: the input must be a floating-point tensor, got {got}")
        torchode = import_torchode()
        t_dtype = torch.float64 if u0.dtype == torch.float64 else torch.float32
        # one row per sample (a state without a batch dimension is one sample), or one row
        per_row = self.per_sample and u0.dim() >= 2
        y0 = u0.reshape(u0.shape[0], -1) if per_row else u0.reshape(1, -1)
        clock = (u0.shape[0],) + (1,) * (u0.dim() - 1) if u0.dim() > 2 else (u0.shape[0],)

        def vf(t, y):  # torchode's f(t, y): t (rows,), y (rows, features)
            if self.func.time_aware:
                t = t.to(u0.dtype).reshape(clock) if per_row else t.to(u0.dtype)[0]
            return self.func(t, y.reshape(u0.shape)).reshape(y.shape)

        term = torchode.ODETerm(vf)
        rows = y0.shape[0]
        if times is None:
            t_start, t_end = (torch.full((rows,), v, dtype=t_dtype, device=u0.device) for v in self.t_span)
            problem = torchode.InitialValueProblem(y0=y0, t_start=t_start, t_end=t_end)
        else:
            t_eval = self._times(times, t_dtype, u0.device).expand(rows, -1)
            problem = torchode.InitialValueProblem(y0=y0, t_eval=t_eval)
        dt0 = self.options.get("first_step")
        if dt0 is not None:
            dt0 = torch.full((rows,), dt0, dtype=t_dtype, device=u0.device) * problem.time_direction
        self.func.begin_forward()
        solution = self._solver(torchode, term).solve(problem, dt0=dt0)
        self.stats = {k: v for k, v in solution.stats.items() if k in ("n_f_evals", "n_steps", "n_accepted")}
        failed = solution.status != 0
        if bool(failed.any()):
            code = int(solution.status[failed][0])
            status = torchode.Status(code).name
            if status == "REACHED_MAX_STEPS":
                raise checks.step_limit(self.solver_name, self.options, self.rtol, self.atol,
                                        f"torchode: {status} on {int(failed.sum())} of {rows} "
                                        f"row(s)")
            raise DivergenceError(f"{self.solver_name}: torchode stopped with status {status} on "
                                  f"{int(failed.sum())} of {rows} row(s) (rtol={self.rtol}, "
                                  f"atol={self.atol}, options={self.options}); loosen the "
                                  f"tolerances or check the field for NaN/inf")
        ys = solution.ys.transpose(0, 1)  # (times, rows, features)
        if times is None:
            return self.func.watch(ys[-1].reshape(u0.shape))
        return self.func.watch(ys.reshape(ys.shape[0], *u0.shape))

    def extra_repr(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return (f"method={self.method!r}, t_span={self.t_span}, rtol={self.rtol}, atol={self.atol}, "
                f"per_sample={self.per_sample}{opts}")
