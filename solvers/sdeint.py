"""``sdeint`` with torchsde's signature and time stepping; Euler-Maruyama stepped here.

    ys = solvers.sdeint(sde, y0, ts, dt=1e-2, bm=bm, method="euler")  # = torchsde.sdeint(...)

``sde`` is torchsde's kind of object: ``f(t, y)`` (drift) and ``g(t, y)`` (diffusion) on
``y`` of shape ``(batch, d)``, with ``sde_type`` ("ito" here) and ``noise_type`` one of

* ``"diagonal"``: ``g`` is ``(batch, d)``, the noise ``g * dW`` with ``dW`` ``(batch, d)``;
* ``"scalar"``:   ``g`` is ``(batch, d, 1)``, one Brownian motion ``dW`` ``(batch, 1)``;
* ``"additive"`` / ``"general"``: ``g`` is ``(batch, d, m)``, the noise ``g @ dW``, ``dW``
  ``(batch, m)`` (additive: ``g`` does not depend on ``y``; Euler-Maruyama treats both alike).

The step is Euler-Maruyama, strong order 1/2 (1 for additive noise), weak order 1::

    y_{n+1} = y_n + f(t_n, y_n) h_n + g(t_n, y_n) (W(t_{n+1}) - W(t_n))

on torchsde's grid: from ``ts[0]`` steps ``t_{n+1} = min(t_n + dt, ts[-1])`` in ``ts``'s
dtype, across output times; an output time between two grid points is interpolated linearly,
as torchsde does. So with the same ``bm`` the field sees the same times and the result equals
``torchsde.sdeint(..., method="euler")`` to rounding. ``t`` reaches ``f`` and ``g`` as a 0-dim
tensor. ``bm`` is called as ``bm(t_a, t_b) -> W(t_b) - W(t_a)`` of shape ``(batch, m)`` (e.g.
``torchsde.BrownianInterval``). Without ``bm`` the Brownian motion is torchsde's: the
``BrownianInterval`` ``torchsde.sdeint`` makes, its entropy drawn from numpy's global RNG, so
after the same ``np.random.seed`` the result equals torchsde's without ``bm`` too (its memory
grows with the steps, as in torchsde: at most 1e7 of them); ``generator=`` (ours) draws the
increments with ``torch.randn`` from that generator instead and keeps nothing (1e9 steps).
Shapes of the drift, the diffusion and the increments are checked (a ValueError instead of
broadcasting). Gradients flow by backpropagation.

Everything else is torchsde's and handed to ``torchsde.sdeint`` unchanged: ``method=None``
(torchsde's default: srk for Ito diagonal/additive/scalar noise, euler for general noise,
midpoint for Stratonovich), milstein, srk, the Stratonovich methods, ``adaptive=True`` (with
``rtol``, ``atol``, ``dt_min``), ``logqp=True``, ``extra=True`` and ``extra_solver_state``,
``options``; and ``sdeint_adjoint`` (the stochastic adjoint) is ``torchsde.sdeint_adjoint``
after the same checks.
"""
from __future__ import annotations

import math

import torch

from . import checks, peers

NOISE_TYPES = ("additive", "diagonal", "general", "scalar")
MAX_STEPS = 10 ** 9  # Euler-Maruyama here: lazy grid, memory independent of the count
TORCHSDE_MAX_STEPS = 10 ** 7  # handed to torchsde, which keeps per-step objects


def sdeint(sde, y0: torch.Tensor, ts, bm=None, method: str | None = None, dt: float = 1e-3,
           adaptive: bool = False, rtol: float = 1e-5, atol: float = 1e-4, dt_min: float = 1e-5,
           options: dict | None = None, names: dict | None = None, logqp: bool = False,
           extra: bool = False, extra_solver_state=None, generator=None):
    """The solution of the SDE ``sde`` from ``y0`` at the times ``ts``, shape
    ``(len(ts), batch, d)`` (see the module docstring). ``names`` maps ``"drift"`` /
    ``"diffusion"`` (and torchsde's other keys) to other method names of ``sde``."""
    noise, sde_type, f, g = _check_sde("sdeint", sde, names, bm)
    if method is None:
        method = peers.TORCHSDE_DEFAULT[sde_type][noise]
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"sdeint: generator must be None or a torch.Generator (e.g. "
                         f"torch.Generator().manual_seed(0)), got {generator!r}")
    theirs = dict(adaptive=adaptive, logqp=logqp, extra=extra, options=options,
                  extra_solver_state=extra_solver_state)
    times, h = _check_solve("sdeint", y0, ts, dt)
    ours = method == "euler" and not any(theirs.values()) and sde_type == "ito"
    drawn = ours and bm is None and generator is None  # torchsde's BrownianInterval, made here
    if not ours:
        limit = TORCHSDE_MAX_STEPS
        where = f" in torchsde (method {method!r}, whose memory grows with them)"
    elif drawn:
        limit = TORCHSDE_MAX_STEPS
        where = (" on torchsde's Brownian motion (a BrownianInterval, whose memory grows with "
                 "them; generator= keeps none)")
    else:
        limit, where = MAX_STEPS, ""
    if not adaptive:
        _check_count("sdeint", times, h, dt, limit, where)
    if not ours:
        return _torchsde(sde, y0, ts, bm, method, dt, rtol, atol, dt_min, names, generator,
                         **theirs)
    brownian = (lambda m: peers.torchsde_brownian(times, y0, m)) if drawn else None
    step = _Step(noise, f, g, bm, generator, brownian)
    prev_t = curr_t = times[0]
    prev_y = curr_y = y0
    ys = [y0]
    for out_t in times[1:]:  # torchsde's BaseSDESolver.integrate, fixed steps
        while curr_t < out_t:
            next_t = min(curr_t + h, times[-1])
            prev_t, prev_y = curr_t, curr_y
            curr_y = step(curr_t, next_t, curr_y)
            curr_t = next_t
        ys.append((curr_t - out_t) / (curr_t - prev_t) * prev_y
                  + (out_t - prev_t) / (curr_t - prev_t) * curr_y)
    return torch.stack(ys)


def sdeint_adjoint(sde, y0: torch.Tensor, ts, bm=None, method: str | None = None,
                   adjoint_method: str | None = None, dt: float = 1e-3, adaptive: bool = False,
                   adjoint_adaptive: bool = False, rtol: float = 1e-5, adjoint_rtol: float = 1e-5,
                   atol: float = 1e-4, adjoint_atol: float = 1e-4, dt_min: float = 1e-5,
                   options: dict | None = None, adjoint_options: dict | None = None,
                   adjoint_params=None, names: dict | None = None, logqp: bool = False,
                   extra: bool = False, extra_solver_state=None):
    """``torchsde.sdeint_adjoint`` (its signature and defaults), run by torchsde: the backward
    pass solves the adjoint SDE backwards in time on the same Brownian path instead of keeping
    the forward graph, so memory does not grow with the number of steps. The SDE, ``names``,
    ``bm``, ``y0``, ``ts``, ``dt`` and the method names are checked first, as in `sdeint`;
    ``sde`` must be an ``nn.Module`` (or give ``adjoint_params``)."""
    _check_sde("sdeint_adjoint", sde, names, bm)
    times, h = _check_solve("sdeint_adjoint", y0, ts, dt)
    for key, name in (("method", method), ("adjoint_method", adjoint_method)):
        if name is not None and name not in peers.torchsde_methods():
            raise checks.unknown(f"sdeint_adjoint {key}", name, peers.torchsde_methods(),
                                 note=" (torchsde's)")
    if not adaptive:
        _check_count("sdeint_adjoint", times, h, dt, TORCHSDE_MAX_STEPS,
                     " in torchsde (whose memory grows with them)")
    return peers.torchsde().sdeint_adjoint(
        sde, y0, ts, bm=bm, method=method, adjoint_method=adjoint_method, dt=dt,
        adaptive=adaptive, adjoint_adaptive=adjoint_adaptive, rtol=rtol, adjoint_rtol=adjoint_rtol,
        atol=atol, adjoint_atol=adjoint_atol, dt_min=dt_min, options=options,
        adjoint_options=adjoint_options, adjoint_params=adjoint_params, names=names, logqp=logqp,
        extra=extra, extra_solver_state=extra_solver_state)


def _check_sde(fn, sde, names, bm):
    """(noise type, SDE type, drift, diffusion) of ``sde``, each checked."""
    noise = getattr(sde, "noise_type", None)
    if noise not in NOISE_TYPES:
        raise ValueError(f"{fn}: sde.noise_type must be one of {list(NOISE_TYPES)}, got {noise!r}")
    sde_type = getattr(sde, "sde_type", None)
    if sde_type not in peers.TORCHSDE_DEFAULT:
        raise ValueError(f"{fn}: sde.sde_type must be 'ito' or 'stratonovich', got {sde_type!r}")
    f, g = _methods(sde, names, fn)
    if bm is not None and not callable(bm):
        raise ValueError(f"{fn}: bm must be a Brownian motion called as bm(t_a, t_b) (e.g. "
                         f"torchsde.BrownianInterval), got {bm!r}")
    return noise, sde_type, f, g


def _check_solve(fn, y0, ts, dt):
    """The checked times (a tensor) and step size (a float)."""
    if not torch.is_tensor(y0) or y0.dim() != 2 or not y0.is_floating_point():
        got = tuple(y0.shape) if torch.is_tensor(y0) else type(y0).__name__
        raise ValueError(f"{fn}: y0 must be a floating-point tensor of shape (batch, d), got {got}")
    times = _check_ts(ts, y0, fn)
    h = float(dt) if checks.is_real(dt) else float("nan")
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"{fn}: dt must be a finite number > 0, got {dt!r}")
    return times, h


def _check_count(fn, times, h, dt, limit, where):
    n = float(times[-1] - times[0]) / h
    if n > limit:
        raise ValueError(f"{fn}: dt={dt!r} asks for {n:.3g} steps{where}; at most "
                         f"{limit:.0e} are allowed: use a larger dt")


def _methods(sde, names, fn="sdeint"):
    """The drift and the diffusion, renamed by ``names`` as torchsde does."""
    names = {} if names is None else names
    if not isinstance(names, dict):
        raise ValueError(f"{fn}: names must be a dict such as {{'drift': 'h'}}, got {names!r}")
    keys = ("drift", "diffusion", "prior_drift", "drift_and_diffusion", "drift_and_diffusion_prod")
    unknown = sorted(set(names) - set(keys))
    if unknown:
        raise ValueError(f"{fn}: unknown names keys {unknown}; allowed: {list(keys)}")
    out = []
    for key, default in (("drift", "f"), ("diffusion", "g")):
        attr = names.get(key, default)
        method = getattr(sde, attr, None) if isinstance(attr, str) else None
        if not callable(method):
            via = f" (names[{key!r}])" if key in names else ""
            raise ValueError(f"{fn}: the SDE needs a {key} method {attr!r}{via} called as "
                             f"{attr}(t, y); {type(sde).__name__} has none")
        out.append(method)
    return out


def _torchsde(sde, y0, ts, bm, method, dt, rtol, atol, dt_min, names, generator, **theirs):
    if method not in peers.torchsde_methods():
        raise checks.unknown("sdeint method", method, peers.torchsde_methods(),
                             note=" (torchsde's; 'euler' with sde_type='ito' runs here)")
    if generator is not None:
        raise ValueError(f"sdeint: generator= seeds our Euler-Maruyama increments (method="
                         f"'euler', Ito); method {method!r} (torchsde's default when method is "
                         f"not given) or adaptive/logqp/extra run in torchsde, which draws from "
                         f"bm=: pass a seeded torchsde.BrownianInterval(..., entropy=seed)")
    return peers.torchsde().sdeint(sde, y0, ts, bm=bm, method=method, dt=dt, rtol=rtol,
                                   atol=atol, dt_min=dt_min, names=names, **theirs)


def _check_ts(ts, y0, fn="sdeint") -> torch.Tensor:
    try:
        if torch.is_tensor(ts):
            tt = ts.detach().to(y0.device)
            tt = tt if tt.is_floating_point() else tt.to(y0.dtype)
        else:
            tt = torch.as_tensor(ts, dtype=y0.dtype, device=y0.device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{fn}: ts must be a 1-D tensor of times, got {ts!r}") from None
    if tt.dim() != 1 or len(tt) < 1 or not bool(torch.isfinite(tt).all()) or \
            not bool((tt[1:] > tt[:-1]).all()):
        raise ValueError(f"{fn}: ts must be a 1-D tensor of finite, strictly increasing times "
                         f"(as torchsde), got {tt.tolist()}")
    return tt


class _Step:
    """One Euler-Maruyama step from ``t0`` to ``t1``, shapes checked. ``brownian(m)``, when
    given, makes the Brownian motion at the first step, once the noise size ``m`` is known."""

    def __init__(self, noise, f, g, bm, generator, brownian=None):
        self.noise, self.f, self.g, self.bm, self.generator = noise, f, g, bm, generator
        self.brownian = brownian

    def __call__(self, t0, t1, y):
        dt = t1 - t0
        drift, diffusion = self.f(t0, y), self.g(t0, y)
        _check("drift f", drift, tuple(y.shape), y)
        m = self._noise_channels(diffusion, y)
        if self.bm is None and self.brownian is not None:
            self.bm = self.brownian(m)
        if self.bm is not None:
            dW = self.bm(t0, t1)
        else:
            dW = torch.randn(y.shape[0], m, dtype=y.dtype, device=y.device,
                             generator=self.generator) * dt.to(y.dtype).sqrt()
        _check("the Brownian increment bm(t0, t1)", dW, (y.shape[0], m), y)
        if self.noise == "diagonal":
            noise = diffusion * dW
        else:
            noise = torch.bmm(diffusion, dW.unsqueeze(-1)).squeeze(-1)
        return y + drift * dt + noise

    def _noise_channels(self, g, y) -> int:
        if self.noise == "diagonal":
            _check("diffusion g (diagonal noise)", g, tuple(y.shape), y)
            return y.shape[1]
        ok = torch.is_tensor(g) and g.dim() == 3 and g.shape[:2] == y.shape
        if not ok or (self.noise == "scalar" and g.shape[2] != 1):
            m = "1" if self.noise == "scalar" else "m"
            got = tuple(g.shape) if torch.is_tensor(g) else type(g).__name__
            raise ValueError(f"sdeint: {self.noise} noise needs g of shape (batch, d, {m}) = "
                             f"({y.shape[0]}, {y.shape[1]}, {m}), got {got}")
        _check("diffusion g", g, tuple(g.shape), y)
        return g.shape[2]


def _check(what, value, shape, y):
    if not torch.is_tensor(value) or tuple(value.shape) != shape:
        got = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
        raise ValueError(f"sdeint: {what} must be a tensor of shape {shape} for y of shape "
                         f"{tuple(y.shape)}, got {got}")
    if value.dtype != y.dtype and not torch.is_autocast_enabled(y.device.type):
        raise ValueError(f"sdeint: {what} returned {value.dtype} for a {y.dtype} state")
