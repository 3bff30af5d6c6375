"""`build`: write a vector field once, unroll it into a network with any scheme.

    flow = odenets.build(BasicField(16), solver="lm", steps=27)     # LM-ResNet stage
    flow = odenets.build(MLPField(2, time_aware=True), "rk4", steps=8, tied=True)   # an ODE

This is the one place that knows both `solvers` (the update rule) and the field modules.
"""
from __future__ import annotations

import copy
import inspect
import math

from torch import nn

import solvers
from solvers import checks

from .flow import ACTIVATIONS, Flow
from .momentum import build_momentum
from .time_aware import FunctionField


# The most steps a fixed-grid network flow takes (`build`, `odenets eval --steps`): a tied flow's
# memory does not grow with its steps, but 10**7 steps of a network field already take hours
# per batch; a larger count is a typo (or an ODE for `solvers.integrate`, which takes any).
MAX_STEPS = 10**7


def is_fixed_grid(solver) -> bool:
    """True for a `solvers.Scheme` or a registered scheme name (unrolled into a `Flow`); every
    other name is a continuous solver's (or unknown). Imports nothing beyond `solvers`."""
    return isinstance(solver, solvers.Scheme) or (isinstance(solver, str)
                                                  and solver in solvers.available())


def available_solvers() -> list[str]:
    """Fixed-grid scheme names (`solvers.available()`) plus the continuous solvers'."""
    from . import continuous  # imports torchdiffeq: only when continuous names are asked for
    names = list(solvers.available())
    return names + [n for n in continuous.continuous_solvers() if n not in names]


def _fresh_copy(module: nn.Module) -> nn.Module:
    """A deep copy re-initialised by ``reset_parameters()`` on every submodule that has one."""
    clone = copy.deepcopy(module)
    for m in clone.modules():
        if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
            m.reset_parameters()
    return clone


def _make_fields(field, steps: int, tied: bool) -> list[nn.Module]:
    if isinstance(field, (list, tuple)):
        if tied:
            raise ValueError("tied=True shares one field; got a list of per-step fields")
        if len(field) != steps or not all(isinstance(m, nn.Module) for m in field):
            raise ValueError(f"a list of fields must hold steps={steps} nn.Modules, got "
                             f"{len(field)} items")
        return list(field)
    if isinstance(field, nn.Module):
        return [field] if tied else [_fresh_copy(field) for _ in range(steps)]
    if callable(field):
        required = _required_args(field)
        if len(required) > 2:
            raise ValueError(f"field must be an nn.Module, a zero-argument factory returning "
                             f"one, or a function f(t, u) / f(u); got "
                             f"{getattr(field, '__name__', type(field).__name__)} taking "
                             f"({', '.join(required)}) (a factory with arguments: "
                             f"functools.partial)")
        if required:  # a plain function f(t, u) or f(u): no weights, the same one every step
            module = FunctionField(field)
            return [module] * (1 if tied else steps)
        made = [field() for _ in range(1 if tied else steps)]
        if not all(isinstance(m, nn.Module) for m in made):
            raise ValueError(f"the field factory must return an nn.Module, got "
                             f"{type(made[0]).__name__}")
        return made
    raise ValueError(f"field must be an nn.Module, a zero-argument factory returning one, or a "
                     f"list of steps modules; got {type(field).__name__}")


def _required_args(fn) -> list[str]:
    """Names of the positional arguments ``fn`` needs (those without defaults); [] when unknown."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: let the call decide
        return []
    return [p.name for p in params
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def build(field, solver="euler", steps: int | None = None, tied: bool | None = None, *,
          t_span: tuple[float, float] | None = None, activation=None,
          coefficients: dict | None = None, channels: int | None = None,
          per_evaluation_norm: bool = True, momentum: bool = False, damping=0.0,
          **solver_opts) -> nn.Module:
    """Unroll ``field`` into a `Flow` of ``steps`` steps of ``solver``.

    field: an ``nn.Module`` computing f(u), or f(t, u) when its ``forward`` takes time
        (``forward(self, t, y)`` as torchdiffeq writes it, read off the signature; an explicit
        ``time_aware = True/False`` attribute overrides), a zero-argument factory returning one,
        a list of ``steps`` modules used as they are (``steps`` defaults to the list's length),
        or a plain function f(t, u) / f(u) (no weights: every step calls it). ``t`` arrives as a
        0-dim tensor on u's device. Fields never add the skip connection; the scheme does, so
        f must return u's shape (checked on the first step of every forward).
    tied: False (default for fixed-grid schemes, like ResNet blocks): ``steps`` independent,
        freshly initialised copies (``reset_parameters`` on a deep copy, or one factory call per
        step). True: one shared field, a true ODE. None picks False for fixed-grid schemes and
        leaves the choice to `odenets.continuous` for continuous solvers.
    t_span: (t0, t1), so dt = (t1 - t0) / steps. Default (0, steps) untied (dt = 1: ResNet's
        ``u + f(u)`` exactly) and (0, 1) tied (an ODE on [0, 1]).
    activation: None, "relu" or a callable applied after every step, u_{n+1} = sigma(Phi(u_n))
        (post-activation ResNets, He et al. 2016a). A reversible solver (leapfrog) then runs
        step by step and loses its memory saving, since sigma is not invertible.
    coefficients: fixed per-step values for scheme coefficients (scalar or ``steps`` values,
        checked against the coefficient's bounds), stored as buffers; e.g. stochastic depth's
        survival ``{"p": [...]}``. Other declared learnable coefficients become parameters.
    channels: size of dim 1 of u, needed for per-channel coefficients (``lm`` per_channel=True).
    per_evaluation_norm: when the scheme calls a field several times per step (RK, backward
        Euler, Verlet), give the fields' BatchNorms running statistics per call within the step
        (`odenets.evaluation_norm`) so eval mode matches training; False keeps one shared set.
    solver_opts: options of the scheme (``solvers.get(solver, **solver_opts)``).
    momentum, damping: ``momentum=True`` integrates u'' + damping u' = f(u) as the system
        (u, v) and maps u0 to u(t1) (`odenets.momentum`); ``damping`` a float >= 0 or None
        (learnable, one per flow when tied, per step when untied). ``leapfrog`` then runs as
        ``damped_leapfrog`` (reversible, O(1) memory).

    A solver name that is not a fixed-grid scheme (`is_fixed_grid`) is handed to
    ``odenets.continuous`` when it knows it (``build_continuous(field, solver, steps, tied, t_span,
    **solver_opts)``); only then are torchdiffeq / torchsde imported.
    """
    if momentum not in (True, False) or isinstance(momentum, (int, float)) and \
            not isinstance(momentum, bool):
        raise ValueError(f"momentum must be True or False, got {momentum!r}")
    if tied is not None and not isinstance(tied, bool):
        raise ValueError(f"tied must be True, False or None, got {tied!r}")
    if channels is not None and not checks.is_int(channels, 1):
        raise ValueError(f"channels must be None or an integer >= 1 (the size of dim 1 of u), "
                         f"got {channels!r}")
    if momentum or damping != 0.0:
        if momentum is not True:
            raise ValueError(f"damping={damping!r} applies to momentum flows; pass momentum=True "
                             f"(got momentum={momentum!r})")
        return build_momentum(build, field, solver, steps, tied, damping=damping, t_span=t_span,
                              activation=activation, coefficients=coefficients, channels=channels,
                              per_evaluation_norm=per_evaluation_norm, **solver_opts)
    if not is_fixed_grid(solver):
        return _build_continuous(field, solver, steps, tied, t_span, activation, coefficients,
                                 solver_opts)
    scheme = solvers.get(solver, **solver_opts)
    if steps is None and isinstance(field, (list, tuple)):
        steps = len(field)  # one step per given field
    steps = checks.integer(scheme.name, "steps", steps)  # numpy integers too
    if steps > MAX_STEPS:
        raise ValueError(f"{scheme.name}: steps={steps} is more than a network flow takes "
                         f"(at most odenets.build.MAX_STEPS = {MAX_STEPS:.0e}: a forward pass "
                         f"would take days); for a long ODE solve use solvers.integrate")
    tied = bool(tied)
    if activation is not None and not (activation in ACTIVATIONS or callable(activation)):
        raise ValueError(f"activation must be None, one of {sorted(ACTIVATIONS)} or a callable, "
                         f"got {activation!r}")
    t0, t1 = checks.t_span(scheme.name, t_span) if t_span is not None else \
        (0.0, 1.0 if tied else float(steps))
    if not math.isfinite((t1 - t0) / steps):
        raise ValueError(f"{scheme.name}: the step dt = (t1 - t0) / steps overflows for "
                         f"t_span={t_span!r}, steps={steps}; use a shorter time span")
    fields = _make_fields(field, steps, tied)
    return Flow(fields, scheme, steps, tied=tied, t0=t0, dt=(t1 - t0) / steps,
                activation=activation, coefficients=coefficients, channels=channels,
                per_evaluation_norm=per_evaluation_norm)


def _build_continuous(field, solver, steps, tied, t_span, activation, coefficients, solver_opts):
    from . import continuous  # torchdiffeq / torchsde: imported for continuous solvers only
    if not (isinstance(solver, str) and continuous.is_continuous(solver)):
        raise checks.unknown("solver", solver, available_solvers())
    fixed_grid_only = [k for k, v in (("activation", activation), ("coefficients", coefficients))
                       if v is not None]
    if fixed_grid_only:
        raise ValueError(f"{solver!r} is a continuous solver; {fixed_grid_only} apply to "
                         f"fixed-grid schemes only (for a network: post_activation=False, "
                         f"e.g. a preact_* preset, and no survival schedule)")
    kwargs = dict(solver_opts)
    if t_span is not None:
        kwargs["t_span"] = t_span
    if tied is not None:
        kwargs["tied"] = tied
    return continuous.build_continuous(field, solver, steps=steps, **kwargs)


def build_stage(field, solver, blocks: int, *, tied: bool = False, activation=None,
                coefficients=None, channels=None, per_evaluation_norm: bool = True, share=None,
                **solver_opts) -> nn.Module:
    """The flow of a network stage of ``blocks`` residual blocks (`odenets.models.Network`).

    Fixed-grid schemes take one step per block (`build`); ``share``, the previous stage's flow,
    lends its scheme object, so one noise stream runs through the network. A continuous solver
    integrates one tied field over t in [0, 1] under its own step control
    (``solver_opts["steps"]`` for its fixed-step methods), whatever ``blocks`` is; post-activation
    and per-step coefficients are refused (fixed-grid notions), and an ``sde:`` flow draws from
    ``share``'s `solvers.Noise`: one noise stream per network, as for fixed-grid schemes.
    """
    if is_fixed_grid(solver):
        if share is not None and isinstance(share, Flow):
            solver, solver_opts = share.scheme, {}
        return build(field, solver, blocks, tied=tied, activation=activation,
                     coefficients=coefficients, channels=channels,
                     per_evaluation_norm=per_evaluation_norm, **solver_opts)
    options = dict(solver_opts)
    noise = getattr(share, "noise_source", None)
    if noise is not None and options.get("bm") is None:  # sde: one noise stream per network
        options.pop("seed", None)
        options["noise_source"] = noise
    return build(field, solver, options.pop("steps", None), tied=True, activation=activation,
                 coefficients=coefficients, **options)


def coefficients(model: nn.Module) -> dict[str, list[float]]:
    """Learned scheme coefficients of every flow in ``model``, for plotting.

    Keys are ``"<flow path>.<name>"`` (e.g. ``"stages.1.flow.k"``; just ``"k"`` for a bare
    flow), values the per-step values (per-channel coefficients averaged over channels).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"coefficients takes a model (an nn.Module), got {type(model).__name__}")
    out = {}
    for path, module in model.named_modules():
        if isinstance(module, Flow):
            for name, value in module.coefficients().items():
                value = value.float().mean(dim=1) if value.dim() == 2 else value.float()
                out[f"{path}.{name}" if path else name] = value.tolist()
    return out
