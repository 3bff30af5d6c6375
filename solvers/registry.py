"""The scheme registry: one name -> one `Scheme` class. Adding a scheme = one file + one line."""
from __future__ import annotations

import inspect

from . import checks
from .ab2 import AB2
from .backward_euler import BackwardEuler
from .base import Scheme
from .damped_leapfrog import DampedLeapfrog
from .euler import Euler
from .euler_maruyama import EulerMaruyama
from .heun import Heun
from .leapfrog import Leapfrog
from .lm import LM
from .lmm import LMM
from .midpoint import Midpoint
from .rk4 import RK4
from .rk4_38 import RK4ThreeEighths

SCHEMES: dict[str, type[Scheme]] = {
    "euler": Euler,
    "backward_euler": BackwardEuler,
    "midpoint": Midpoint,
    "rk2": Midpoint,
    "heun": Heun,
    "rk4": RK4,
    "rk4_38": RK4ThreeEighths,
    "ab2": AB2,
    "lm": LM,
    "lmm": LMM,
    "leapfrog": Leapfrog,
    "damped_leapfrog": DampedLeapfrog,
    "euler_maruyama": EulerMaruyama,
}

# torchdiffeq methods that are not schemes here: adaptive or with their own step control (in
# `odenets.build` through `odenets.continuous`, or in torchdiffeq.odeint itself)
TORCHDIFFEQ_ONLY = ("adaptive_heun", "bosh3", "dopri5", "dopri8", "explicit_adams", "fehlberg2",
                    "fixed_adams", "heun2", "heun3", "implicit_adams", "scipy_solver")


def available() -> list[str]:
    """Sorted names of the registered schemes (aliases included)."""
    return sorted(SCHEMES)


def register(name: str, cls: type[Scheme]) -> type[Scheme]:
    """Register a scheme class under ``name`` (raises if the name is taken)."""
    if name in SCHEMES:
        raise ValueError(f"scheme {name!r} is already registered (by {SCHEMES[name].__name__})")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a scheme name must be a non-empty string, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Scheme)):
        raise ValueError(f"register({name!r}, ...) needs a subclass of solvers.Scheme, got {cls!r}")
    SCHEMES[name] = cls
    return cls


def get(name, **options) -> Scheme:
    """A scheme object by name (``solvers.get("lm", k=0.2)``); a `Scheme` passes through."""
    if isinstance(name, Scheme):
        if options:
            raise ValueError(f"options {sorted(options)} given with an already built scheme {name!r}")
        return name
    if name in TORCHDIFFEQ_ONLY:
        raise ValueError(f"unknown solver {name!r}: solvers holds fixed-grid schemes only "
                         f"({', '.join(available())}); {name!r} is a torchdiffeq method, so use "
                         f"odenets.build(field, solver={name!r}) or "
                         f"torchdiffeq.odeint(f, u0, t, method={name!r})")
    if name not in SCHEMES:
        raise checks.unknown("solver", name, available())
    cls = SCHEMES[name]
    try:
        return cls(**options)
    except TypeError as e:  # unexpected keyword: list what the scheme takes
        params = inspect.signature(cls.__init__).parameters.values()
        allowed = [p.name for p in params if p.name != "self"
                   and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]  # object's *args, **kwargs
        raise ValueError(f"invalid options {sorted(options)} for solver {name!r}: {e}; "
                         f"allowed options: {', '.join(allowed) or 'none'}") from None
