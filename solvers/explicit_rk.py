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
        cls.evaluations = len(cls.b)

    def step(self, f, t, dt, u, state):
        ks, stage_t = [], {0.0: t}  # stage times t + c_i dt, one add per distinct c_i
        for c_i, a_i in zip(self.c, self.a):
            u_i = u
            for a_ij, k_j in zip(a_i, ks):
                if a_ij:
                    u_i = torch.add(u_i, k_j, alpha=dt * a_ij)
            if c_i not in stage_t:
                stage_t[c_i] = t + c_i * dt
            ks.append(f(stage_t[c_i], u_i))
        out = u
        for b_i, k_i in zip(self.b, ks):
            if b_i:
                out = torch.add(out, k_i, alpha=dt * b_i)
        return out, state
