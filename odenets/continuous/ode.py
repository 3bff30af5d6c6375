"""Continuous depth through torchdiffeq: ``u(t1) = u(t0) + int_{t0}^{t1} f(t, u(t)) dt``.

A tied field (one set of weights for all t) integrated by any torchdiffeq method: adaptive
(dopri5, dopri8, bosh3, fehlberg2, adaptive_heun, scipy_solver) with error control
``|err_i| <= atol + rtol |u_i|``, or fixed-grid (ode:euler, ode:midpoint, ode:rk4, heun2,
heun3, explicit_adams, implicit_adams) on exactly ``steps`` equal steps of
``|t1 - t0| / steps`` (or torchdiffeq's own ``step_size`` grid). ``adjoint=True``
backpropagates by solving the adjoint ODE ``a' = -a^T df/du`` backwards in time (Chen et al.
2018), so memory is constant in the number of steps at the cost of a second solve.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from solvers.checks import t_span as check_t_span

from . import checks, rk
from .nfe import CountedField, CountsNFE

try:  # torchdiffeq is a hard dependency, but keep the import error readable
    import torchdiffeq
    from torchdiffeq._impl.odeint import SOLVERS as TORCHDIFFEQ_SOLVERS
    from torchdiffeq._impl.solvers import FixedGridODESolver
except ImportError as e:  # pragma: no cover
    raise ImportError("odenets.continuous needs torchdiffeq (pip install torchdiffeq)") from e

SCIPY_METHODS = ("BDF", "DOP853", "LSODA", "RK23", "RK45", "Radau")
_NOT_OPTIONS = {"self", "func", "y0", "rtol", "atol", "implicit", "norm", "kwargs", "unused_kwargs"}


def _float_dtype(s, n, v):
    if v not in (torch.float32, torch.float64):
        raise ValueError(f"{s}: {n} must be torch.float32 or torch.float64, got {v!r}")
    return v


def _times(s, n, v):
    try:
        return torch.as_tensor(v, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{s}: {n} must be a sequence of times, got {v!r}") from None


# option name -> checker(solver, name, value) -> value
OPTION_CHECKS = {
    "step_size": lambda s, n, v: checks.positive(s, n, v),
    "grid_constructor": checks.function,
    "interp": lambda s, n, v: checks.choice(s, n, v, ("linear", "cubic")),
    "perturb": checks.boolean,
    "max_iters": checks.integer,
    "max_order": lambda s, n, v: int(checks.in_range(s, n, checks.integer(s, n, v), 1, 12, False)),
    "first_step": lambda s, n, v: checks.positive(s, n, v),
    "min_step": lambda s, n, v: checks.positive(s, n, v, allow_zero=True),
    "max_step": lambda s, n, v: checks.positive(s, n, v, allow_inf=True),
    "safety": lambda s, n, v: checks.in_range(s, n, v, 0.0, 1.0),
    "ifactor": lambda s, n, v: checks.in_range(s, n, v, 1.0, float("inf"), False, True),
    "dfactor": lambda s, n, v: checks.in_range(s, n, v, 0.0, 1.0, True, True),
    "max_num_steps": checks.integer,
    "dtype": _float_dtype,
    "norm": checks.function,
    "step_t": _times,
    "jump_t": _times,
    "scipy_method": lambda s, n, v: checks.choice(s, n, v, SCIPY_METHODS),
}


# torchdiffeq option -> our name (scipy's ``solver`` would clash with build's ``solver``)
RENAMED = {"solver": "scipy_method"}


# High-order Adams-Bashforth has a tiny stability interval on the negative real axis (AB4:
# [-0.3, 0]; it shrinks about twofold per order). torchdiffeq's default max_order=12 (AB11) is
# unstable on u' = -u with 64 steps (measured: error 0.31 at t = 1, against 5e-7 for
# max_order=5). We default to max_order=5 (AB4, order 4); pass max_order to override.
METHOD_DEFAULTS = {"explicit_adams": {"max_order": 5}}


def is_fixed_grid(method: str) -> bool:
    """Whether a torchdiffeq method steps on a fixed grid (needs ``steps``/``step_size``)."""
    return issubclass(TORCHDIFFEQ_SOLVERS[method], FixedGridODESolver)


def method_options(method: str) -> list[str]:
    """The ``options`` a torchdiffeq method accepts (read off its constructor), plus ``norm``
    for adaptive methods."""
    names = set()
    for cls in TORCHDIFFEQ_SOLVERS[method].__mro__:
        if "__init__" in vars(cls):
            names |= {p for p, v in inspect.signature(cls.__init__).parameters.items()
                      if v.kind == v.POSITIONAL_OR_KEYWORD}
    names -= _NOT_OPTIONS
    names = {RENAMED.get(n, n) for n in names}
    if not is_fixed_grid(method) and method != "scipy_solver":
        names.add("norm")
    return sorted(names)


GENERAL_OPTIONS = ("t_span", "steps", "rtol", "atol", "adjoint", "adjoint_method", "adjoint_rtol",
                   "adjoint_atol", "adjoint_options", "count_vjp")


def public_name(method: str) -> str:
    """The name under which `odenets.continuous` offers a torchdiffeq method."""
    import solvers
    return "ode:" + method if method in solvers.available() else method


def check_method_options(solver: str, method: str, options: dict, general=GENERAL_OPTIONS) -> dict:
    """Validate torchdiffeq ``options`` for ``method``; returns the checked dict."""
    bad = sorted(set(options) - set(method_options(method)))
    if bad:
        head = f"{', '.join(general)}, and " if general else ""
        raise ValueError(f"{solver}: unknown option(s) {bad}; allowed: {head}for torchdiffeq's "
                         f"{method!r}: {', '.join(method_options(method)) or 'none'}")
    torch_names = {ours: theirs for theirs, ours in RENAMED.items()}
    return {torch_names.get(k, k): OPTION_CHECKS[k](solver, k, v) if k in OPTION_CHECKS else v
            for k, v in options.items()}


class UniformGrid:
    """torchdiffeq ``grid_constructor``: ``n = round(|t_end - t_start| / h)`` equal steps.

    torchdiffeq's own ``step_size`` grid takes ``ceil(T / h)`` steps, so rounding in ``T / h``
    adds a sliver step (e.g. 62 steps for ``steps=61``); this grid takes exactly ``steps``."""

    def __init__(self, step: float):
        self.step = step

    def __call__(self, func, y0, t):
        n = max(1, round(abs(float(t[-1] - t[0])) / self.step))
        return torch.linspace(float(t[0]), float(t[-1]), n + 1, dtype=t.dtype, device=t.device)

    def __repr__(self):
        return f"UniformGrid(step={self.step:.4g})"


class ODEFlow(CountsNFE, nn.Module):
    """``forward(u0) = u(t1)`` for ``du/dt = f(t, u)``, ``u(t0) = u0``, solved by torchdiffeq.

    ``nfe`` holds the evaluation counts (see `odenets.continuous.nfe`; ``count_vjp=True`` adds
    ``nfe["vjp"]``); ``reset_nfe()`` zeroes them. ``forward(u0, times)`` returns the states at
    the given times instead, shape ``(len(times), *u0.shape)``.

    Options: ``rtol``/``atol`` (adaptive methods and implicit_adams' corrector; default 1e-5 /
    1e-6, looser than torchdiffeq's 1e-7 / 1e-9, which cost many steps in float32);
    ``adjoint``; ``adjoint_method`` (a torchdiffeq method name, ``ode:`` prefix allowed),
    ``adjoint_rtol``, ``adjoint_atol``, ``adjoint_options``; ``count_vjp``; and the method's own
    torchdiffeq options (see `method_options`; scipy's ``solver`` is called ``scipy_method``).
    Note: torchdiffeq 0.2.5's Adams methods pass ``rtol`` as ``atol`` internally.
    
    """

    continuous = True
    whole_state = True  # one step size for the whole state: any layout of it (`odenets.momentum`)

    def __init__(self, field, method: str, t_span=(0.0, 1.0), steps=None, rtol=1e-5, atol=1e-6,
                 adjoint=False, adjoint_method=None, adjoint_rtol=None, adjoint_atol=None,
                 adjoint_options=None, count_vjp=False, name=None, **options):
        super().__init__()
        name = name or method
        if method not in TORCHDIFFEQ_SOLVERS:
            raise ValueError(f"{name}: unknown torchdiffeq method {method!r}; "
                             f"available: {sorted(TORCHDIFFEQ_SOLVERS)}")
        self.t_span = check_t_span(name, t_span)
        self.method, self.solver_name = method, name
        self.rtol, self.atol = checks.positive(name, "rtol", rtol), checks.positive(name, "atol", atol)
        self.adjoint = checks.boolean(name, "adjoint", adjoint)
        options = {**METHOD_DEFAULTS.get(method, {}), **check_method_options(name, method, options)}
        if is_fixed_grid(method):
            step = checks.steps_or_dt(name, steps, options.get("step_size"), "step_size", *self.t_span)
            if "step_size" not in options and "grid_constructor" not in options:
                options["grid_constructor"] = UniformGrid(step)
        elif steps is not None:
            raise ValueError(f"{name}: steps={steps!r} applies to fixed-grid methods only; the adaptive "
                             f"method {method!r} chooses its steps from rtol/atol (fixed-grid methods: "
                             f"{sorted(public_name(m) for m in TORCHDIFFEQ_SOLVERS if is_fixed_grid(m))})")
        self.options = options
        self.adjoint_kwargs = self._adjoint_kwargs(adjoint_method, adjoint_rtol, adjoint_atol,
                                                   adjoint_options)
        # scipy integrates numpy arrays: no autograd graph unless the adjoint supplies gradients
        self._no_backprop = method == "scipy_solver" and not self.adjoint
        self.func = CountedField(field, checks.boolean(name, "count_vjp", count_vjp))

    def _adjoint_kwargs(self, method, rtol, atol, options):
        given = {k: v for k, v in dict(adjoint_method=method, adjoint_rtol=rtol, adjoint_atol=atol,
                                       adjoint_options=options).items() if v is not None}
        if given and not self.adjoint:
            raise ValueError(f"{self.solver_name}: {sorted(given)} need adjoint=True")
        if not self.adjoint:
            return {}
        out = {}
        if isinstance(method, str) and method.startswith("ode:"):
            method = method[4:]
        if method is not None and method not in TORCHDIFFEQ_SOLVERS:
            raise ValueError(f"{self.solver_name}: unknown adjoint_method {method!r}; available: "
                             f"{sorted(TORCHDIFFEQ_SOLVERS)}")
        for key, value in (("adjoint_rtol", rtol), ("adjoint_atol", atol)):
            if value is not None:
                out[key] = checks.positive(self.solver_name, key, value)
        adj_method = method or self.method
        if options is not None:
            if not isinstance(options, dict):
                raise ValueError(f"{self.solver_name}: adjoint_options must be a dict, got {options!r}")
            # torchdiffeq's adjoint takes norm="seminorm" (Kidger et al. 2021: the error estimate
            # ignores the parameter-gradient channels) besides a callable norm
            seminorm = options.get("norm") == "seminorm"
            rest = {k: v for k, v in options.items() if not (seminorm and k == "norm")}
            out["adjoint_options"] = check_method_options(self.solver_name, adj_method, rest, ())
            if seminorm:
                if is_fixed_grid(adj_method):
                    raise ValueError(f"{self.solver_name}: adjoint_options norm='seminorm' needs "
                                     f"an adaptive adjoint_method, got the fixed-grid "
                                     f"{adj_method!r}")
                out["adjoint_options"]["norm"] = "seminorm"
        elif adj_method != self.method:
            grid = {k: v for k, v in self.options.items() if k in ("step_size", "grid_constructor")}
            out["adjoint_options"] = grid if is_fixed_grid(adj_method) else {}
            if is_fixed_grid(adj_method) and not grid:
                raise ValueError(f"{self.solver_name}: the fixed-grid adjoint_method {adj_method!r} "
                                 f"needs adjoint_options={{'step_size': h}}")
        if method is not None:
            out["adjoint_method"] = method
        return out

    def forward(self, u0: torch.Tensor, times=None) -> torch.Tensor:
        if not torch.is_tensor(u0) or not u0.is_floating_point():
            got = u0.dtype if torch.is_tensor(u0) else type(u0).__name__
            raise ValueError(f"{self.solver_name}: the input must be a floating-point tensor, got {got}")
        if self._no_backprop and torch.is_grad_enabled() and (
                u0.requires_grad or any(p.requires_grad for p in self.parameters())):
            raise ValueError(f"{self.solver_name}: scipy_solver integrates numpy arrays and cannot "
                             f"backpropagate; use adjoint=True, or call it under torch.no_grad()")
        t_dtype = torch.float64 if u0.dtype == torch.float64 else torch.float32  # no bf16 clocks
        if times is not None:
            times = _times(self.solver_name, "times", times.detach().cpu() if torch.is_tensor(times)
                           else times)
            steps = times[1:] - times[:-1]
            if len(times) < 2 or not bool((steps > 0).all() or (steps < 0).all()) or \
                    not bool(torch.isfinite(times).all()):
                raise ValueError(f"{self.solver_name}: times must hold at least two finite, strictly "
                                 f"increasing (or strictly decreasing) times, got {times.tolist()}")
        t = torch.as_tensor(self.t_span if times is None else times, dtype=t_dtype, device=u0.device)
        self.func.begin_forward()
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=dict(self.options))
        try:
            if self.adjoint:
                path = rk.odeint_adjoint(self.func, u0, t, **kwargs, **self.adjoint_kwargs,
                                         adjoint_params=tuple(self.parameters()))
            else:
                path = rk.odeint(self.func, u0, t, **kwargs)  # torchdiffeq's, lighter RK stages
        except AssertionError as error:  # torchdiffeq's way of saying "max_num_steps exceeded"
            if "max_num_steps" not in str(error):
                raise
            raise checks.step_limit(self.solver_name, self.options, self.rtol, self.atol,
                                    f"torchdiffeq: {error}") from None
        out = path[-1] if times is None else path
        return self.func.watch(out)

    def extra_repr(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        tol = "" if is_fixed_grid(self.method) and "adams" not in self.method else \
            f", rtol={self.rtol}, atol={self.atol}"
        return f"method={self.method!r}, t_span={self.t_span}{tol}, adjoint={self.adjoint}{opts}"
