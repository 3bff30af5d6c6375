"""The LM-ResNet two-step linear multistep scheme (Lu et al., 2018)."""
from __future__ import annotations

import torch

from . import checks
from .base import Coefficient, Scheme
from .fused import multistep_update

K = Coefficient(
    name="k", default=-0.05, init=(-0.1, 0.0), bounds=(-1.0, 1.0),
    doc="zero-stability of the LM scheme needs |k| < 1 (root -k of rho inside the unit disc)")


class LM(Scheme):
    """Two-step linear multistep scheme of LM-ResNet. Order 1 (for ``(1 + k) u' = f``), explicit.

        u_{n+1} = (1 - k_n) u_n + k_n u_{n-1} + dt f(t_n, u_n)

    computed as ``lerp(u_n, u_{n-1}, k_n)`` then an in-place ``add_(f, alpha=dt)`` (two kernels,
    one new tensor), one autograd node whose backward gets dL/dk_n from two dot products
    (`solvers.fused.multistep_update`).
    rho(xi) = (xi - 1)(xi + k): zero-stable iff |k| < 1; consistent for ``(1 + k) u_t = f(u)``
    (the field is scaled by 1 / (1 + k)).
    The first step is forward Euler (u_{-1} = u_0). State: ``(u_{n-1},)``.

    ``k=None`` (default) leaves ``k`` to the caller: `odenets.build` owns one learnable k per step,
    initialised uniformly on ``k_init`` (default U[-0.1, 0], the authors' init) and kept inside
    (-1, 1) by a sigmoid parametrisation; `integrate` then uses the middle of ``k_init``.
    A float ``k`` fixes it for every step (a plain two-step scheme). ``per_channel=True`` asks
    the builder for one k per channel (the authors' ``MResNetC``).
    """

    name = "lm"
    order = 1
    evals_per_step = 1
    past_states = 1  # u_{n-1}
    coefficients = (K,)

    def __init__(self, k: float | None = None, k_init: tuple[float, float] = (-0.1, 0.0),
                 per_channel: bool = False):
        self.k = None if k is None else K.check(k, self.name)
        if isinstance(k_init, (str, bytes)) or not hasattr(k_init, "__len__") or len(k_init) != 2:
            raise ValueError(f"lm: k_init must be a pair (low, high) inside (-1, 1), got {k_init!r}")
        lo, hi = (checks.real(self.name, "k_init", v, -1.0, 1.0, (False, False)) for v in k_init)
        if lo > hi:
            raise ValueError(f"lm: k_init must be (low, high) with low <= high, got {k_init!r}")
        self.k_init, self.per_channel = (lo, hi), checks.boolean(self.name, "per_channel", per_channel)
        self.coefficients = (Coefficient(K.name, (lo + hi) / 2, (lo, hi), K.bounds, True, K.doc),)

    def options(self):
        return dict(k=self.k, k_init=self.k_init, per_channel=self.per_channel)

    def step(self, f, t, dt, u, state, k=None):
        """One step; ``k=None`` uses the fixed k (or the default, the middle of ``k_init``)."""
        f_n = f(t, u)
        if state is None:
            return torch.add(u, f_n, alpha=dt), (u,)
        (u_prev,) = state
        if k is None:
            k = self.fixed_coefficients()["k"]
        return multistep_update(u, (u_prev,), f_n, (k,), dt), (u,)

    def effective_step_factor(self, values=None) -> torch.Tensor:
        """rho'(1) = 1 + k (per step for per-step ``values={"k": tensor}``): the scheme is
        consistent with ``rho'(1) u_t = f``; None uses the fixed (or default) k."""
        k = (values or self.fixed_coefficients())["k"]
        return 1 + torch.as_tensor(k, dtype=torch.float64)
