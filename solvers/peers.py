"""Hand-offs to torchdiffeq and torchsde for what `solvers.odeint` / `solvers.sdeint` do not
step themselves (adaptive methods, events, Milstein, SRK, logqp, ...), with their option names
checked first: an unknown option raises one ValueError naming the allowed ones (the peers only
warn). The peers are imported here, lazily, so ``import solvers`` stays free of them.
"""
from __future__ import annotations

import importlib
import inspect

from . import checks
from .base import DivergenceError

# options torchdiffeq's solvers take through **kwargs without naming them in a signature
_POPPED = {"norm"}
_POPPED_BY = {"scipy_solver": {"grid_points", "eps"}}
_NOT_OPTIONS = {"self", "func", "y0", "rtol", "atol"}


def _require(name: str, why: str):
    """Import the peer package ``name`` (a dependency) or say what needs it."""
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - a dependency
        raise ImportError(f"{why} need {name} (pip install {name})") from None


def torchdiffeq():
    return _require("torchdiffeq", "solvers.odeint: adaptive methods")


def torchdiffeq_methods() -> dict:
    from torchdiffeq._impl.odeint import SOLVERS
    torchdiffeq()
    return SOLVERS


def torchdiffeq_options(method: str) -> set[str]:
    """The option names torchdiffeq's solver ``method`` takes (its ``__init__`` chain)."""
    names = set(_POPPED) | _POPPED_BY.get(method, set())
    for cls in torchdiffeq_methods()[method].__mro__:
        if "__init__" in vars(cls) and cls is not object:
            params = inspect.signature(vars(cls)["__init__"]).parameters.values()
            names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return names - _NOT_OPTIONS


def odeint_delegated(method, options: dict, event_fn, ours: bool) -> bool:
    """True when torchdiffeq solves this call: a method that is not ours, an event function, or
    ``perturb=True`` (torchdiffeq's nudge of t at grid points) on one of its fixed-grid methods.
    A false ``perturb`` is dropped."""
    perturb = options.pop("perturb", False)
    if not ours or event_fn is not None:
        if perturb:
            options["perturb"] = perturb
        return True
    if perturb:
        if method not in torchdiffeq_methods():
            raise ValueError(f"odeint: perturb=True is torchdiffeq's, for its methods "
                             f"{sorted(torchdiffeq_methods())}; scheme {method!r} has no perturb")
        options["perturb"] = perturb
        return True
    return False


def torchdiffeq_odeint(func, y0, t, *, rtol, atol, method, options, event_fn, adjoint=None):
    """``torchdiffeq.odeint`` (``odeint_adjoint`` with ``adjoint``, a dict of its adjoint_*
    arguments) after checking the method and option names."""
    methods = torchdiffeq_methods()
    if method not in methods:
        from .odeint import TORCHDIFFEQ_NAMES
        from .registry import SCHEMES
        raise checks.unknown("odeint method", method, set(methods) | set(SCHEMES),
                             note=f" (torchdiffeq's 'rk4' is our 'rk4_38'; fixed grids stepped "
                                  f"here: {sorted(set(TORCHDIFFEQ_NAMES) | set(SCHEMES))})")
    allowed = torchdiffeq_options(method)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"odeint: unknown options {unknown} for method {method!r}; allowed: "
                         f"{sorted(allowed)}")
    module = torchdiffeq()
    try:
        if adjoint is None:
            return module.odeint(func, y0, t, rtol=rtol, atol=atol, method=method,
                                 options=options, event_fn=event_fn)
        return module.odeint_adjoint(func, y0, t, rtol=rtol, atol=atol, method=method,
                                     options=options, event_fn=event_fn, **adjoint)
    except AssertionError as e:  # 'max_num_steps exceeded', 'underflow in dt': the solve stopped
        raise DivergenceError(f"odeint (torchdiffeq's {method}): {e} (options={options!r}, "
                              f"rtol={rtol!r}, atol={atol!r})") from None


# ---- torchsde -------------------------------------------------------------------------------
TORCHSDE_DEFAULT = {"ito": {"diagonal": "srk", "additive": "srk", "scalar": "srk",
                            "general": "euler"},
                    "stratonovich": {n: "midpoint" for n in ("diagonal", "additive", "scalar",
                                                             "general")}}


# torchsde's own classes, handed out by ``solvers`` as they are (``solvers.BrownianInterval``
# is ``torchsde.BrownianInterval``), imported on first use
TORCHSDE_NAMES = ("BaseBrownian", "BaseSDE", "BrownianInterval", "BrownianPath", "BrownianTree",
                  "ReverseBrownian", "SDEIto", "SDEStratonovich", "brownian_interval_like")


def torchsde(why: str = "solvers.sdeint: methods other than Euler-Maruyama"):
    return _require("torchsde", why)


def torchsde_name(name: str):
    """``torchsde.<name>`` for a name of `TORCHSDE_NAMES`."""
    return getattr(torchsde(f"solvers.{name} (torchsde's)"), name)


def torchsde_brownian(ts, y0, m: int):
    """The Brownian motion ``torchsde.sdeint`` makes when given no ``bm`` (for the methods that
    need no Levy area, Euler-Maruyama among them): a ``BrownianInterval`` on
    ``[ts[0], ts[-1]]`` of shape ``(batch, m)``, its entropy drawn from numpy's global RNG, so
    the same ``np.random.seed`` gives the same path as in torchsde."""
    return torchsde("solvers.sdeint: Brownian motion without bm= or generator=").BrownianInterval(
        t0=ts[0], t1=ts[-1], size=(y0.shape[0], m), dtype=y0.dtype, device=y0.device,
        levy_area_approximation="none")


def torchsde_methods() -> list[str]:
    torchsde()
    from torchsde.settings import METHODS
    return list(METHODS.all())
