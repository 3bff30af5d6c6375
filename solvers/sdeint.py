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
``torchsde.BrownianInterval``); without it the increments are drawn with ``torch.randn``
(``generator=`` for a seeded stream). Shapes of the drift, the diffusion and the increments are
checked (a ValueError instead of broadcasting). Gradients flow by backpropagation.

Everything else is torchsde's and handed to ``torchsde.sdeint`` unchanged: ``method=None``
(torchsde's default: srk for Ito diagonal/additive/scalar noise, euler for general noise,
midpoint for Stratonovich), milstein, srk, the Stratonovich methods, ``adaptive=True`` (with
``rtol``, ``atol``, ``dt_min``), ``logqp=True``, ``extra=True`` and ``extra_solver_state``,
``options``.
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
    noise = getattr(sde, "noise_type", None)
    if noise not in NOISE_TYPES:
        raise ValueError(f"sdeint: sde.noise_type must be one of {list(NOISE_TYPES)}, got {noise!r}")
    sde_type = getattr(sde, "sde_type", None)
    if sde_type not in peers.TORCHSDE_DEFAULT:
        raise ValueError(f"sdeint: sde.sde_type must be 'ito' or 'stratonovich', got {sde_type!r}")
    f, g = _methods(sde, names)
    if method is None:
        method = peers.TORCHSDE_DEFAULT[sde_type][noise]
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"sdeint: generator must be None or a torch.Generator (e.g. "
                         f"torch.Generator().manual_seed(0)), got {generator!r}")
    if bm is not None and not callable(bm):
        raise ValueError(f"sdeint: bm must be a Brownian motion called as bm(t_a, t_b) (e.g. "
                         f"torchsde.BrownianInterval), got {bm!r}")
    theirs = dict(adaptive=adaptive, logqp=logqp, extra=extra, options=options,
                  extra_solver_state=extra_solver_state)
    if not torch.is_tensor(y0) or y0.dim() != 2 or not y0.is_floating_point():
        got = tuple(y0.shape) if torch.is_tensor(y0) else type(y0).__name__
        raise ValueError(f"sdeint: y0 must be a floating-point tensor of shape (batch, d), got {got}")
    times = _check_ts(ts, y0)
    h = float(dt) if checks.is_real(dt) else float("nan")
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"sdeint: dt must be a finite number > 0, got {dt!r}")
    ours = method == "euler" and not any(theirs.values()) and sde_type == "ito"
    limit = MAX_STEPS if ours else TORCHSDE_MAX_STEPS
    n = float(times[-1] - times[0]) / h
    if n > limit and not adaptive:
        where = "" if ours else f" in torchsde (method {method!r}, whose memory grows with them)"
        raise ValueError(f"sdeint: dt={dt!r} asks for {n:.3g} steps{where}; at most "
                         f"{limit:.0e} are allowed: use a larger dt")
    if not ours:
        return _torchsde(sde, y0, ts, bm, method, dt, rtol, atol, dt_min, names, generator,
                         **theirs)
    step = _Step(noise, f, g, bm, generator)
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


def _methods(sde, names):
    """The drift and the diffusion, renamed by ``names`` as torchsde does."""
    names = {} if names is None else names
    if not isinstance(names, dict):
        raise ValueError(f"sdeint: names must be a dict such as {{'drift': 'h'}}, got {names!r}")
    keys = ("drift", "diffusion", "prior_drift", "drift_and_diffusion", "drift_and_diffusion_prod")
    unknown = sorted(set(names) - set(keys))
    if unknown:
        raise ValueError(f"sdeint: unknown names keys {unknown}; allowed: {list(keys)}")
    out = []
    for key, default in (("drift", "f"), ("diffusion", "g")):
        attr = names.get(key, default)
        method = getattr(sde, attr, None) if isinstance(attr, str) else None
        if not callable(method):
            via = f" (names[{key!r}])" if key in names else ""
            raise ValueError(f"sdeint: the SDE needs a {key} method {attr!r}{via} called as "
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


def _check_ts(ts, y0) -> torch.Tensor:
    try:
        if torch.is_tensor(ts):
            tt = ts.detach().to(y0.device)
            tt = tt if tt.is_floating_point() else tt.to(y0.dtype)
        else:
            tt = torch.as_tensor(ts, dtype=y0.dtype, device=y0.device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"sdeint: ts must be a 1-D tensor of times, got {ts!r}") from None
    if tt.dim() != 1 or len(tt) < 1 or not bool(torch.isfinite(tt).all()) or \
            not bool((tt[1:] > tt[:-1]).all()):
        raise ValueError(f"sdeint: ts must be a 1-D tensor of finite, strictly increasing times "
                         f"(as torchsde), got {tt.tolist()}")
    return tt


class _Step:
    """One Euler-Maruyama step from ``t0`` to ``t1``, shapes checked."""

    def __init__(self, noise, f, g, bm, generator):
        self.noise, self.f, self.g, self.bm, self.generator = noise, f, g, bm, generator

    def __call__(self, t0, t1, y):
        dt = t1 - t0
        drift, diffusion = self.f(t0, y), self.g(t0, y)
        _check("drift f", drift, tuple(y.shape), y)
        m = self._noise_channels(diffusion, y)
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
