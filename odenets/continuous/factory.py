"""Names of the continuous-depth solvers and the one builder behind them.

Names: torchdiffeq's methods under their own names (``"dopri5"``, ``"bosh3"``, ``"rk4"``...);
those that clash with a fixed-step scheme of `solvers` (``euler``, ``midpoint``, ``rk4``: the
unrolled networks) are reached as ``"ode:<method>"``, which works for every torchdiffeq method.
``"sde:<method>"`` runs an SDE flow through torchsde; ``"torchode:<method>"`` an ODE flow
through torchode, an optional extra (``pip install odenets[torchode]``) imported only when such
a flow is built.
"""
from __future__ import annotations

import inspect

from torch import nn

import solvers
from solvers import checks

ODE_PREFIX, SDE_PREFIX, TORCHODE_PREFIX = "ode:", "sde:", "torchode:"


def _ode_methods():
    from .ode import TORCHDIFFEQ_SOLVERS
    return sorted(TORCHDIFFEQ_SOLVERS)


def _sde_methods():
    from .sde import SDE_METHODS
    return sorted(SDE_METHODS)


def _torchode_methods():
    from .torchode_flow import TORCHODE_METHODS  # names only: torchode itself is not imported
    return sorted(TORCHODE_METHODS)


def continuous_solvers() -> list[str]:
    """Sorted names: every torchdiffeq method (prefixed ``ode:`` where the bare name is a
    fixed-step scheme of `solvers`; ``fixed_adams`` is torchdiffeq's alias of implicit_adams),
    then ``sde:<method>`` for torchsde, then ``torchode:<method>`` (listed whether or not the
    optional torchode is installed; building one without it says what to install)."""
    taken = set(solvers.available())
    odes = [ODE_PREFIX + m if m in taken else m for m in _ode_methods()]
    return (sorted(odes) + [SDE_PREFIX + m for m in _sde_methods()]
            + [TORCHODE_PREFIX + m for m in _torchode_methods()])


def _resolve(name):
    """``(kind, method)`` for a continuous solver name, or None."""
    if not isinstance(name, str):
        return None
    if name.startswith(SDE_PREFIX):
        return ("sde", name[len(SDE_PREFIX):]) if name[len(SDE_PREFIX):] in _sde_methods() else None
    if name.startswith(TORCHODE_PREFIX):
        method = name[len(TORCHODE_PREFIX):]
        return ("torchode", method) if method in _torchode_methods() else None
    if name.startswith(ODE_PREFIX):
        return ("ode", name[len(ODE_PREFIX):]) if name[len(ODE_PREFIX):] in _ode_methods() else None
    if name in _ode_methods() and name not in solvers.available():
        return ("ode", name)
    return None


def is_continuous(name) -> bool:
    """Whether ``name`` is a continuous-depth solver (torchdiffeq / torchsde / torchode), not a
    scheme."""
    return _resolve(name) is not None


def _field_module(field, solver):
    """``field`` itself, or what a zero-argument factory returns (as `odenets.build` accepts)."""
    if isinstance(field, nn.Module):
        return field
    if callable(field):
        try:
            required = [p for p in inspect.signature(field).parameters.values()
                        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            required = [None]
        if not required:
            made = field()
            if not isinstance(made, nn.Module):
                raise ValueError(f"{solver}: the field factory must return an nn.Module, got "
                                 f"{type(made).__name__}")
            return made
        return field  # a plain function f(u) (no parameters to train)
    raise ValueError(f"{solver}: the field must be an nn.Module computing f(u) (or f(t, u) with "
                     f"time_aware = True) or a zero-argument factory returning one, got "
                     f"{type(field).__name__}")


def build_continuous(field, solver: str, steps=None, tied: bool = True, t_span=(0.0, 1.0), **opts):
    """A module whose ``forward(u0)`` is ``u(t1)`` of the flow of ``field`` over ``t_span``.

    ``field`` is an ``nn.Module`` computing ``f(u)`` (``f(t, u)`` when it has
    ``time_aware = True``). ODE solvers (see `odenets.continuous.ode.ODEFlow`) take ``rtol``,
    ``atol``, ``adjoint`` and torchdiffeq's method options; fixed-grid methods need ``steps``
    (or ``step_size``). ``sde:`` solvers (`odenets.continuous.sde.SDEFlow`) take ``sigma``,
    ``diffusion``, ``dt``, ``seed``, ``adaptive``... The module records ``nfe`` (forward,
    backward, vjp counts) and has ``reset_nfe()``. ``torchode:`` solvers
    (`odenets.continuous.torchode_flow.TorchodeFlow`) take rtol, atol and dopri5's options.
    """
    resolved = _resolve(solver)
    if resolved is None:
        names = continuous_solvers()
        raise checks.unknown("continuous solver", solver, names, listed=", ".join(names))
    if tied is not True:
        raise ValueError(f"{solver}: continuous-depth solvers integrate one field f(t, u) over "
                         f"t_span, so tied must be True (got tied={tied!r}); for per-step weights "
                         f"use a fixed-step scheme ({', '.join(solvers.available())}), or make the "
                         f"field time-aware (time_aware = True, f(t, u))")
    if isinstance(field, (list, tuple)):
        raise ValueError(f"{solver}: the field must be one module f(u), got a {type(field).__name__} "
                         f"of {len(field)} fields (per-step fields need a fixed-step scheme)")
    field = _field_module(field, solver)
    kind, method = resolved
    if kind == "ode":
        from .ode import ODEFlow
        cls = ODEFlow
    elif kind == "sde":
        from .sde import SDEFlow
        cls = SDEFlow
    else:
        from .torchode_flow import TorchodeFlow
        cls = TorchodeFlow
    try:
        return cls(field, method, t_span=t_span, steps=steps, name=solver, **opts)
    except TypeError as e:  # an unexpected keyword: list what the flow takes
        if "unexpected keyword" not in str(e):
            raise
        allowed = [p for p in inspect.signature(cls.__init__).parameters
                   if p not in ("self", "field", "method", "name", "options")]
        raise ValueError(f"{solver}: invalid option(s) {sorted(opts)}: {e}; allowed: {allowed}") from None
