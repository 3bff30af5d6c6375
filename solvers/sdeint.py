"""``sdeint`` with torchsde's signature for Euler-Maruyama (Ito).

    ys = solvers.sdeint(sde, y0, ts, dt=1e-2, bm=bm)          # as torchsde.sdeint(method="euler")

``sde`` is torchsde's kind of object: ``f(t, y)`` (drift) and ``g(t, y)`` (diffusion) on
``y`` of shape ``(batch, d)``, with ``sde_type = "ito"`` and ``noise_type`` one of

* ``"diagonal"``: ``g`` is ``(batch, d)``, the noise ``g * dW`` with ``dW`` ``(batch, d)``;
* ``"scalar"``:   ``g`` is ``(batch, d, 1)``, one Brownian motion ``dW`` ``(batch, 1)``;
* ``"additive"`` / ``"general"``: ``g`` is ``(batch, d, m)``, the noise ``g @ dW``, ``dW``
  ``(batch, m)`` (additive: ``g`` does not depend on ``y``; Euler-Maruyama treats both alike).

The step is Euler-Maruyama, strong order 1/2 (1 for additive noise), weak order 1::

    y_{n+1} = y_n + f(t_n, y_n) h + g(t_n, y_n) (W(t_{n+1}) - W(t_n))

``t`` reaches ``f`` and ``g`` as a 0-dim tensor. ``bm`` is a Brownian motion called as
``bm(t_a, t_b) -> W(t_b) - W(t_a)`` of shape ``(batch, m)`` (e.g. ``torchsde.BrownianInterval``);
without it the increments are drawn with ``torch.randn`` (``generator=`` for a seeded stream).
Between output times the grid takes ``ceil(|t_{i+1} - t_i| / dt)`` equal steps, so every
requested time is a grid point; where ``dt`` divides the intervals the result equals
``torchsde.sdeint(sde, y0, ts, bm=bm, method="euler", dt=dt)`` to rounding. Gradients flow by
ordinary backpropagation through the steps.

Left to torchsde (available in networks as ``odenets.build(field, solver="sde:<method>")``):
Milstein, stochastic Runge-Kutta (srk), the Stratonovich methods (midpoint, heun, euler_heun,
reversible_heun), adaptive stepping, ``logqp`` and the stochastic adjoint.
"""
from __future__ import annotations

import math

import torch

from .base import time_grid

NOISE_TYPES = ("additive", "diagonal", "general", "scalar")
TORCHSDE_METHODS = ("euler_heun", "heun", "log_ode", "midpoint", "milstein", "reversible_heun",
                    "srk")


def sdeint(sde, y0: torch.Tensor, ts, bm=None, method: str = "euler", dt: float = 1e-3,
           adaptive: bool = False, names: dict | None = None, generator=None) -> torch.Tensor:
    """Euler-Maruyama solution of the Ito SDE ``sde`` from ``y0`` at the times ``ts``, shape
    ``(len(ts), batch, d)`` (see the module docstring). ``names`` maps ``"drift"`` /
    ``"diffusion"`` to other method names of ``sde``, as in torchsde."""
    if method in TORCHSDE_METHODS:
        raise ValueError(f"sdeint: method {method!r} is left to torchsde: use "
                         f"torchsde.sdeint(sde, y0, ts, method={method!r}), or "
                         f"odenets.build(field, solver='sde:{method}') in a network; "
                         f"solvers.sdeint runs method='euler' (Euler-Maruyama) only")
    if method != "euler":
        raise ValueError(f"sdeint: unknown method {method!r}; solvers.sdeint runs 'euler' "
                         f"(torchsde's methods {list(TORCHSDE_METHODS)} are torchsde's)")
    if adaptive:
        raise ValueError("sdeint: adaptive=True is left to torchsde (torchsde.sdeint(..., "
                         "adaptive=True)); solvers.sdeint steps on a fixed grid")
    noise = getattr(sde, "noise_type", None)
    if noise not in NOISE_TYPES:
        raise ValueError(f"sdeint: sde.noise_type must be one of {list(NOISE_TYPES)}, got {noise!r}")
    sde_type = getattr(sde, "sde_type", "ito")
    if sde_type != "ito":
        raise ValueError(f"sdeint: Euler-Maruyama solves Ito SDEs (sde_type='ito'), got "
                         f"sde_type={sde_type!r}; Stratonovich methods (midpoint, heun, "
                         f"reversible_heun...) are torchsde's")
    names = dict(names or {})
    unknown = set(names) - {"drift", "diffusion"}
    if unknown:
        raise ValueError(f"sdeint: names keys must be 'drift' and/or 'diffusion', got {sorted(unknown)}")
    f = getattr(sde, names.get("drift", "f"))
    g = getattr(sde, names.get("diffusion", "g"))
    if not torch.is_tensor(y0) or y0.dim() != 2 or not y0.is_floating_point():
        got = tuple(y0.shape) if torch.is_tensor(y0) else type(y0).__name__
        raise ValueError(f"sdeint: y0 must be a floating-point tensor of shape (batch, d), got {got}")
    times = _check_ts(ts)
    try:
        h = float(dt)
    except (TypeError, ValueError):
        h = float("nan")
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"sdeint: dt must be a finite number > 0, got {dt!r}")
    ys, y = [y0], y0
    for a, b in zip(times, times[1:]):
        ratio = (b - a) / h
        n = max(1, round(ratio) if abs(ratio - round(ratio)) <= 1e-9 * max(1.0, ratio)
                else math.ceil(ratio))
        step = (b - a) / n
        grid = time_grid(a, step, n, y0)
        for k in range(n):
            t0, t1 = grid[k], grid[k + 1]
            gk = g(t0, y)
            dW = bm(t0, t1) if bm is not None else _increment(noise, y, gk, step, generator)
            y = y + f(t0, y) * step + _g_prod(noise, gk, dW, y)
        ys.append(y)
    return torch.stack(ys)


def _check_ts(ts) -> list[float]:
    try:
        tt = torch.as_tensor(ts.detach() if torch.is_tensor(ts) else ts, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"sdeint: ts must be a 1-D tensor of times, got {ts!r}") from None
    times = tt.reshape(-1).cpu().tolist() if tt.dim() == 1 else None
    if not times or not all(map(math.isfinite, times)) or \
            not all(b > a for a, b in zip(times, times[1:])):
        raise ValueError(f"sdeint: ts must be a 1-D tensor of finite, strictly increasing times "
                         f"(as torchsde), got {tt.tolist()}")
    return times


def _increment(noise, y, g, h, generator):
    m = y.shape[1] if noise == "diagonal" else 1 if noise == "scalar" else g.shape[-1]
    return torch.randn(y.shape[0], m, dtype=y.dtype, device=y.device,
                       generator=generator) * math.sqrt(h)


def _g_prod(noise, g, dW, y):
    """The noise term of one step: ``g * dW`` (diagonal) or ``g @ dW`` (the others)."""
    if noise == "diagonal":
        if g.shape != y.shape:
            raise ValueError(f"sdeint: diagonal noise needs g of the state's shape "
                             f"{tuple(y.shape)}, got {tuple(g.shape)}")
        return g * dW
    if g.dim() != 3 or g.shape[:2] != y.shape or (noise == "scalar" and g.shape[2] != 1):
        m = "1" if noise == "scalar" else "m"
        raise ValueError(f"sdeint: {noise} noise needs g of shape (batch, d, {m}) = "
                         f"({y.shape[0]}, {y.shape[1]}, {m}), got {tuple(g.shape)}")
    return torch.bmm(g, dW.unsqueeze(-1)).squeeze(-1)
