"""Continuous depth with noise through torchsde: ``du = f(t, u) dt + sigma g(t, u) dW``.

The SDE view of noisy residual networks (docs/schemes.md §3): stochastic depth and shake-shake
are Euler-Maruyama steps of an SDE whose diffusion is proportional to the residual ``f``;
Gaussian noise injection has additive noise. Here the flow is integrated by ``torchsde.sdeint``
with a ``BrownianInterval`` on [t0, t1]; ``diffusion`` picks ``g``:

* ``"additive"`` (default): ``g = 1``, i.e. ``du = f dt + sigma dW``;
* ``"field"``:              ``g = f(t, u)`` (diagonal noise), the stochastic-depth form
  ``du = f dt + sigma f dW`` (stochastic depth with survival p: drift ``p f``, sigma
  ``sqrt(p (1 - p))``);
* a callable / ``nn.Module`` ``g(u)`` (``g(t, u)`` when ``time_aware``) returning the state's
  shape: a learned diagonal diffusion.

``sigma`` scales the diffusion; its default is 0.1 for ``"additive"`` and ``"field"`` and 1 for
a learned ``g`` (used as given). The field may also be a torchsde SDE object, ``f(t, y)``,
``g(t, y)``, ``noise_type`` (diagonal, scalar, additive or general) and ``sde_type``, solved as
torchsde solves it on ``(batch, d)`` states (its ``g`` unscaled; ``nfe`` counts ``f``).

torchsde works on states of shape ``(batch, d)``: image states are flattened to
``(batch, -1)`` and restored after the solve. Methods and their calculus: ``euler``, ``srk``
(strong order 1.5 for this diagonal noise; needs space-time Levy area) are Ito; ``milstein``
is Ito unless ``sde_type="stratonovich"``; ``midpoint``, ``heun``, ``euler_heun``,
``reversible_heun`` are Stratonovich. For additive noise both calculi give the same SDE; for
``"field"`` / learned diffusion they differ by the drift correction ``(1/2) g dg/du``.

In ``eval()`` mode the noise is replaced by its mean (``g = 0``): the same method integrates the
drift ODE on the same grid, like dropout and the rest of the toolkit. Where that drift-only
method is a torchdiffeq one (euler, milstein, euler_heun -> Euler; heun -> heun2; midpoint ->
midpoint) it runs through torchdiffeq, without Brownian bookkeeping (torchsde's costs ~10x per
step, docs/solver_layer.md §7); srk and reversible_heun run sdeint with ``g = 0``.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from solvers.base import clock_dtype
from solvers.checks import t_span as check_t_span
from solvers.noise import Noise

from . import checks
from ..time_aware import takes_time
from .nfe import CountedField, CountsNFE
from .ode import UniformGrid, torchdiffeq

try:
    import torchsde
except ImportError as e:  # pragma: no cover
    raise ImportError("the sde:* solvers need torchsde (pip install torchsde)") from e

# method -> (sde types it integrates, Levy area it needs, whether torchsde's adjoint supports it)
SDE_METHODS = {
    "euler": (("ito",), "none", True),
    "milstein": (("ito", "stratonovich"), "none", False),
    "srk": (("ito",), "space-time", False),
    "midpoint": (("stratonovich",), "none", True),
    "heun": (("stratonovich",), "none", True),
    "euler_heun": (("stratonovich",), "none", True),
    "reversible_heun": (("stratonovich",), "none", True),
}
DIFFUSIONS = ("additive", "field")
# the method with g = 0, where torchdiffeq has it (for eval mode)
DRIFT_ODE = {"euler": "euler", "milstein": "euler", "euler_heun": "euler", "heun": "heun2",
             "midpoint": "midpoint"}


class _FlowSDE(nn.Module):
    """The object torchsde integrates: drift ``f``, diagonal diffusion ``g`` on ``(batch, d)``."""

    noise_type = "diagonal"

    def __init__(self, func: CountedField, diffusion, sigma: float, sde_type: str):
        super().__init__()
        self.func, self.sigma, self.sde_type = func, sigma, sde_type
        self.diffusion = diffusion  # a string, or a module/callable (registered if a module)
        self._g_takes_time = callable(diffusion) and takes_time(diffusion)
        self.shape, self.noisy = None, True
        self._cache = None

    def begin(self, shape, noisy: bool, y0) -> None:
        """Start a solve from ``y0``; the drift at ``(t0, y0)`` is evaluated once and reused:
        ``sdeint`` checks shapes by calling f, g and f_and_g at ``(t0, y0)`` before its first
        step, which would otherwise cost extra field evaluations."""
        self.shape, self.noisy, self._cache = shape, noisy, (y0, None, None)

    def end(self) -> None:
        self._cache = None

    def _state(self, y):
        return y.reshape(self.shape)

    @staticmethod
    def _clock(t, y):
        """``t`` in the state's dtype (float32 for 16-bit states), as every other flow passes
        it: the solve keeps float64 times (no rounding sliver), the field must not see them."""
        dtype = clock_dtype(y)
        return t.to(dtype) if torch.is_tensor(t) and t.dtype != dtype else t

    def f(self, t, y):
        key = t.data_ptr() if torch.is_tensor(t) else float(t)
        cache = self._cache
        if cache is not None and y is cache[0]:
            if cache[1] is not None and cache[1] == key:
                return cache[2]
            out = self.func(self._clock(t, y), self._state(y)).reshape(y.shape)
            if cache[1] is None:
                self._cache = (y, key, out)
            return out
        return self.func(self._clock(t, y), self._state(y)).reshape(y.shape)

    def g(self, t, y):
        if not self.noisy or self.sigma == 0:
            return y * 0  # keeps g attached to y for methods that differentiate it
        if self.diffusion == "additive":
            return y * 0 + self.sigma
        if self.diffusion == "field":
            return self.sigma * self.f(t, y)
        u = self._state(y)
        g = self.diffusion(self._clock(t, y), u) if self._g_takes_time else self.diffusion(u)
        if not torch.is_tensor(g) or g.shape != u.shape:
            got = tuple(g.shape) if torch.is_tensor(g) else type(g).__name__
            raise ValueError(f"the diffusion g must return a tensor of the state's shape "
                             f"{tuple(u.shape)}, got {got}")
        return self.sigma * g.reshape(y.shape)

    def f_and_g(self, t, y):
        f = self.f(t, y)
        if self.noisy and self.sigma != 0 and self.diffusion == "field":
            return f, self.sigma * f  # one field evaluation for both
        return f, self.g(t, y)


@functools.lru_cache(maxsize=64)
def _lands_on(span: tuple, dt: float) -> bool:
    """Whether torchsde's float64 clock ``t = min(t + dt, t_end)`` reaches ``t_end`` in
    ``round((t_end - t0) / dt)`` steps, with no rounding sliver left for an extra step; spans of
    over 10^5 steps are not simulated."""
    n = round((span[-1] - span[0]) / dt)
    if n > 1e5:
        return False
    t, taken = span[0], 0
    while t < span[-1]:
        t, taken = min(t + dt, span[-1]), taken + 1
    return taken == n


class _Drift(nn.Module):
    """The drift ``sde.f(t, y)`` of a torchsde SDE object, as a time-aware field."""

    def __init__(self, sde):
        super().__init__()
        self.sde = sde

    def forward(self, t, y):
        return self.sde.f(t, y)


class _UserSDE(nn.Module):
    """A torchsde SDE object (``f``, ``g``, ``noise_type``, ``sde_type``) as the flow solves
    it: the drift counted (``func``), the diffusion its own, zero in eval mode."""

    def __init__(self, sde, func: CountedField):
        super().__init__()
        self.noise_type, self.sde_type = sde.noise_type, getattr(sde, "sde_type", "ito")
        self.func, self.user, self.noisy = func, sde, True

    def begin(self, shape, noisy: bool, y0) -> None:
        self.noisy = noisy

    def end(self) -> None:
        pass

    def f(self, t, y):
        return self.func(t, y)

    def g(self, t, y):
        g = self.user.g(t, y)
        return g if self.noisy else g * 0


class SDEFlow(CountsNFE, nn.Module):
    """``forward(u0) = u(t1)`` for ``du = f dt + sigma g dW`` solved by ``torchsde.sdeint``.

    Options: ``method`` (see `SDE_METHODS`), ``sigma >= 0``, ``diffusion`` (see module doc),
    ``steps`` or ``dt`` (fixed step; the initial step when ``adaptive``), ``adaptive``, ``rtol``,
    ``atol``, ``dt_min``, ``sde_type`` (milstein only), ``seed`` (fresh reproducible Brownian
    paths per call: each call's ``BrownianInterval`` takes its entropy from ``noise_source``, a
    `solvers.Noise` that ``seed=s`` makes as ``Noise(seed=s)``; or pass a ``noise_source``,
    which flows may share; without either torchsde picks the entropy), ``bm`` (a fixed torchsde
    Brownian motion of shape ``(batch, d)`` to reuse),
    ``adjoint`` (torchsde's stochastic adjoint; euler, midpoint, heun, euler_heun,
    reversible_heun: its gradients match backprop through the discrete solve only up to
    discretisation error, except reversible_heun, which is algebraically reversible and matches
    to ~1e-6 relative here; with euler they differed by ~4% on a 20-step test). ``nfe`` counts field evaluations (drift, and diffusion when it is the
    field); ``count_vjp=True`` adds ``nfe["vjp"]``.
    """

    continuous = True

    def __init__(self, field, method: str = "euler", t_span=(0.0, 1.0), steps=None, dt=None,
                 sigma: float | None = None, diffusion="additive", adaptive: bool = False, rtol: float = 1e-3,
                 atol: float = 1e-3, dt_min: float = 1e-5, sde_type=None, seed=None, bm=None,
                 noise_source: Noise | None = None, adjoint: bool = False, count_vjp: bool = False,
                 name=None):
        super().__init__()
        name = name or f"sde:{method}"
        self.solver_name = name
        if method not in SDE_METHODS:
            raise ValueError(f"unknown SDE method {method!r}; available: "
                             f"{sorted('sde:' + m for m in SDE_METHODS)}")
        types, self.levy_area, adjoint_ok = SDE_METHODS[method]
        self.method = method
        self.sde_type = checks.choice(name, "sde_type", sde_type or types[0], types)
        self.t_span = check_t_span(name, t_span)
        if self.t_span[1] < self.t_span[0]:
            raise ValueError(f"{name}: torchsde integrates forward in time: t_span must have t0 < t1, "
                             f"got {t_span!r}")
        self.dt = checks.steps_or_dt(name, steps, dt, "dt", *self.t_span)
        user_sde = hasattr(field, "noise_type") and callable(getattr(field, "f", None)) \
            and callable(getattr(field, "g", None))
        if user_sde and (sigma is not None or diffusion != "additive" or sde_type is not None):
            raise ValueError(f"{name}: a torchsde SDE object (f, g, noise_type, sde_type) brings "
                             f"its own diffusion and sde_type; sigma=, diffusion= and sde_type= "
                             f"apply to a drift field only")
        if user_sde:
            sde_type = getattr(field, "sde_type", "ito")
            if sde_type not in types:
                raise ValueError(f"{name}: the SDE's sde_type={sde_type!r} does not suit "
                                 f"method {method!r}, which integrates {list(types)} SDEs")
            if field.noise_type not in ("diagonal", "scalar", "additive", "general"):
                raise ValueError(f"{name}: the SDE's noise_type must be one of 'diagonal', "
                                 f"'scalar', 'additive', 'general', got {field.noise_type!r}")
            self.sde_type = sde_type
        # sigma scales the built-in diffusions; a learned diffusion g is used as given (1.0)
        default_sigma = 1.0 if callable(diffusion) or user_sde else 0.1
        self.sigma = checks.positive(name, "sigma", default_sigma if sigma is None else sigma,
                                     allow_zero=True)
        if not (callable(diffusion) or diffusion in DIFFUSIONS):
            raise ValueError(f"{name}: diffusion must be one of {list(DIFFUSIONS)} or a callable / "
                             f"nn.Module g(u), got {diffusion!r}")
        self.adaptive = checks.boolean(name, "adaptive", adaptive)
        self.rtol, self.atol = checks.positive(name, "rtol", rtol), checks.positive(name, "atol", atol)
        self.dt_min = checks.positive(name, "dt_min", dt_min)
        self.adjoint = checks.boolean(name, "adjoint", adjoint)
        if self.adjoint and not adjoint_ok:
            raise ValueError(f"{name}: torchsde's adjoint does not support method {method!r}; "
                             f"adjoint works with {sorted('sde:' + m for m, v in SDE_METHODS.items() if v[2])}")
        given = [k for k, v in (("seed", seed), ("bm", bm), ("noise_source", noise_source))
                 if v is not None]
        if len(given) > 1:
            raise ValueError(f"{name}: give one of seed, bm and noise_source, not both "
                             f"({' and '.join(given)})")
        if bm is not None and not isinstance(bm, torchsde.BaseBrownian):
            raise ValueError(f"{name}: bm must be a torchsde Brownian motion (e.g. "
                             f"torchsde.BrownianInterval), got {type(bm).__name__}")
        if noise_source is not None and not isinstance(noise_source, Noise):
            raise ValueError(f"{name}: noise_source must be a solvers.Noise, got "
                             f"{type(noise_source).__name__}")
        self.bm = bm
        if seed is not None:
            noise_source = Noise(seed=checks.integer(name, "seed", seed, 0))
        self.noise_source = noise_source
        count_vjp = checks.boolean(name, "count_vjp", count_vjp)
        if user_sde:
            self.func = CountedField(_Drift(field), count_vjp)
            self.sde = _UserSDE(field, self.func)
        else:
            self.func = CountedField(field, count_vjp)
            self.sde = _FlowSDE(self.func, diffusion, self.sigma, self.sde_type)

    def _noise_size(self, y0, t0) -> tuple:
        """(batch, m): m = d for diagonal noise, else the last dimension of g."""
        if getattr(self.sde, "noise_type", "diagonal") == "diagonal":
            return tuple(y0.shape)
        with torch.no_grad():
            return (y0.shape[0], self.sde.user.g(t0.to(y0.dtype), y0).shape[-1])

    def _brownian(self, y0, span, t0):
        size = self._noise_size(y0, t0)
        if self.bm is not None:
            if tuple(self.bm.shape) != size:
                raise ValueError(f"{self.solver_name}: bm has shape {tuple(self.bm.shape)} but the "
                                 f"noise has shape {size} (batch, m)")
            return self.bm
        entropy, noise = None, self.noise_source
        if noise is not None:  # drawn on the CPU (or on the device of a user generator)
            device = noise.generator.device if noise.generator is not None else "cpu"
            entropy = int(noise.randint(0, 2 ** 31 - 1, (1,), device))
        return torchsde.BrownianInterval(t0=span[0], t1=span[1], size=size,
                                         dtype=y0.dtype, device=y0.device, entropy=entropy,
                                         levy_area_approximation=self.levy_area)

    def forward(self, u0: torch.Tensor, times=None) -> torch.Tensor:
        """``u(t1)``; with ``times`` (increasing, ``u0`` at ``times[0]``) the states at those
        times, shape ``(len(times), *u0.shape)``, as ``ODEFlow(u0, times)`` returns them."""
        if not torch.is_tensor(u0) or not u0.is_floating_point():
            got = u0.dtype if torch.is_tensor(u0) else type(u0).__name__
            raise ValueError(f"{self.solver_name}: the input must be a floating-point tensor, got {got}")
        span = self.t_span if times is None else self._check_times(times)
        if not self.training and not self.adaptive and self.method in DRIFT_ODE:
            return self._drift_ode(u0, span, times is not None)
        shape = u0.shape if u0.dim() >= 2 else (1, *u0.shape)
        if isinstance(self.sde, _UserSDE) and u0.dim() != 2:
            raise ValueError(f"{self.solver_name}: a torchsde SDE object integrates states of "
                             f"shape (batch, d), got {tuple(u0.shape)}")
        y0 = u0.reshape(shape[0], -1)
        self.sde.begin(shape, self.training, y0)
        # float64 times: torchsde accumulates t += dt, and float32 rounding adds a sliver step
        ts = torch.tensor(span, dtype=torch.float64, device=u0.device)
        # torchsde steps while t < t1 with t += dt: a dt a hair above (t1 - t0) / steps makes the
        # last step end exactly at t1 instead of leaving a rounding sliver for an extra step
        # (only where it is needed, so the grid is torchsde's own t0 + k dt when dt divides it)
        dt = self.dt if self.adaptive or _lands_on(span, self.dt) else self.dt * (1 + 1e-9)
        kwargs = dict(bm=self._brownian(y0, (span[0], span[-1]), ts[0]), method=self.method, dt=dt,
                      adaptive=self.adaptive, rtol=self.rtol, atol=self.atol, dt_min=self.dt_min)
        self.func.begin_forward()
        try:
            if self.adjoint:
                adjoint_method = "adjoint_reversible_heun" if self.method == "reversible_heun" else None
                ys = torchsde.sdeint_adjoint(self.sde, y0, ts, adjoint_method=adjoint_method,
                                             adjoint_params=tuple(self.parameters()), **kwargs)
            else:
                ys = torchsde.sdeint(self.sde, y0, ts, **kwargs)
        finally:
            self.sde.end()
        if times is None:
            return self.func.watch(ys[-1].reshape(u0.shape))
        return self.func.watch(ys.reshape(len(span), *u0.shape))

    def _check_times(self, times) -> tuple[float, ...]:
        values = torch.as_tensor(times.detach().cpu() if torch.is_tensor(times) else times,
                                 dtype=torch.float64).reshape(-1).tolist()
        if len(values) < 2 or not all(b > a for a, b in zip(values, values[1:])) or \
                not all(v == v and abs(v) != float("inf") for v in values):
            raise ValueError(f"{self.solver_name}: times must hold at least two finite, strictly "
                             f"increasing times (torchsde integrates forward), got {values}")
        return tuple(values)

    def _drift_ode(self, u0, span, path):
        """Eval mode: the drift ODE by the same method with g = 0, through torchdiffeq."""
        t_dtype = torch.float64 if u0.dtype == torch.float64 else torch.float32
        t = torch.tensor(span, dtype=t_dtype, device=u0.device)
        self.func.begin_forward()
        ys = torchdiffeq.odeint(self.func, u0, t, method=DRIFT_ODE[self.method],
                                options=dict(grid_constructor=UniformGrid(self.dt)))
        return self.func.watch(ys if path else ys[-1])

    def extra_repr(self) -> str:
        diff = getattr(self.sde, "diffusion", "sde object")
        diff = diff if isinstance(diff, str) else "learned"
        return (f"method={self.method!r}, sde_type={self.sde_type!r}, t_span={self.t_span}, "
                f"dt={self.dt:.4g}, sigma={self.sigma}, diffusion={diff!r}, adaptive={self.adaptive}, "
                f"adjoint={self.adjoint}")
