"""Fixed-grid numerical schemes for du/dt = f(t, u): pure numerics on tensors and callables.

    solvers.available()                    -> registered scheme names
    solvers.get("lm", k=0.3)               -> a scheme object with .step / .solve
    solvers.integrate(f, u0, steps=64, scheme="rk4")
    solvers.odeint(f, y0, t, method="rk4", options={"step_size": h})   # torchdiffeq's signature
    solvers.odeint(f, y0, t)                 # dopri5 and every other torchdiffeq method: torchdiffeq's
    solvers.odeint_adjoint(f, y0, t, method="ab2", options={"steps": n})  # states kept, no graphs
    solvers.sdeint(sde, y0, ts, dt=h, bm=bm)                 # torchsde's, Euler-Maruyama
    solvers.sdeint_adjoint(...), solvers.SDEIto, solvers.BrownianInterval, ...  # torchsde's own
    solvers.get("euler_maruyama", noise_source=solvers.Noise(seed=0))  # noise: its own object

A peer's script runs with its import changed (``from solvers import odeint``, ``import solvers
as torchsde``); the torchsde classes (`peers.TORCHSDE_NAMES`) are torchsde's, imported on use.

"rk4" is classical RK4; "rk4_38" (Kutta's 3/8 rule) is what torchdiffeq calls ``method="rk4"``.

This package never imports ``odenets``; ``odenets.build`` joins its schemes to network fields.
"""
from . import peers
from .base import Coefficient, DivergenceError, Scheme
from .integrate import integrate
from .noise import Noise
from .odeint import odeint, odeint_adjoint
from .sdeint import sdeint, sdeint_adjoint
from .registry import SCHEMES, available, get, register
from .reversible import reversible_solve
from .shake import shake_mix

__all__ = ["Coefficient", "DivergenceError", "Noise", "Scheme", "SCHEMES", "available", "get",
           "integrate", "odeint", "odeint_adjoint", "register", "reversible_solve", "sdeint",
           "sdeint_adjoint", "shake_mix"]


def __getattr__(name: str):
    """torchsde's classes (``solvers.SDEIto`` is ``torchsde.SDEIto``), imported on first use."""
    if name in peers.TORCHSDE_NAMES:
        return peers.torchsde_name(name)
    raise AttributeError(f"module 'solvers' has no attribute {name!r}")
