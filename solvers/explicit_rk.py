"""Explicit Runge-Kutta schemes from a Butcher tableau (midpoint, Heun, RK4 build on it)."""
from __future__ import annotations

import torch

from .base import Scheme


class ExplicitRK(Scheme):
    """An explicit Runge-Kutta scheme given by its Butcher tableau.

        k_i = f(t_n + c_i dt, u_n + dt sum_{j<i} a_ij k_j),   u_{n+1} = u_n + dt sum_i b_i k_i

    Subclasses set ``c``, ``a`` (lower-triangular rows) and ``b``. Zero entries cost nothing;
    each nonzero entry is one fused ``torch.add(x, k, alpha=dt * a_ij)`` kernel.
    """

    c: tuple[float, ...] = ()
    a: tuple[tuple[float, ...], ...] = ()
    b: tuple[float, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.evals_per_step = len(cls.b)
        cls.nodes = tuple(cls.c)

    def step(self, f, t, dt, u, state, stage_t=None):
        """One step; ``stage_t`` are the stage times ``t + c_i dt`` when precomputed (by
        `Scheme.solve`), else they are made here (one add per distinct nonzero c_i)."""
        if stage_t is None:
            made = {0.0: t}
            for c_i in self.c:
                if c_i not in made:
                    made[c_i] = t + c_i * dt
            stage_t = [made[c_i] for c_i in self.c]
        ks = []
        for t_i, a_i in zip(stage_t, self.a):
            u_i = u
            for a_ij, k_j in zip(a_i, ks):
                if a_ij:
                    u_i = torch.add(u_i, k_j, alpha=dt * a_ij)
            ks.append(f(t_i, u_i))
        out = u
        for b_i, k_i in zip(self.b, ks):
            if b_i:
                out = torch.add(out, k_i, alpha=dt * b_i)
        return out, state
