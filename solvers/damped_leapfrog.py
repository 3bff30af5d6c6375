"""Damped (conformal-symplectic) Stormer-Verlet: a reversible scheme for y'' + gamma y' = G(t, y)."""
from __future__ import annotations

import torch

from . import checks
from .leapfrog import Leapfrog


class DampedLeapfrog(Leapfrog):
    """Damped velocity Verlet on ``u = (y, z)`` split in two halves along ``dim``. Order 2,
    explicit, 2 evaluations of G per step, exactly invertible.

    The system is ``y' = F(t, z)``, ``z' = G(t, y) - gamma(t) * z``. One step is the Strang
    composition ``D_{dt/2} o V_dt o D_{dt/2}`` of the exact damping flow
    ``D_s: z <- exp(-gamma s) z`` with velocity Verlet's kick-drift-kick ``V_dt``::

        z <- exp(-gamma(t_n) dt/2) z_n;          z <- z + dt/2 G(t_n, y_n)
        y_{n+1} = y_n + dt F(t_n + dt/2, z);     z <- z + dt/2 G(t_{n+1}, y_{n+1})
        z_{n+1} = exp(-gamma(t_{n+1}) dt/2) z

    Each piece is undone exactly (the damping map by ``exp(+gamma dt/2)``, each kick or drift by
    subtracting what it added), so `inverse` rebuilds ``u_n`` from ``u_{n+1}`` up to rounding and
    ``memory_efficient=True`` gives the O(1)-memory backward of `reversible_solve`. Undoing the
    damping amplifies rounding errors by ``exp(gamma T)`` over a solve of length T: fine for
    ``gamma T`` up to ~10 in float32; beyond, use ``memory_efficient=False``. Conformal
    symplectic: with ``F = identity`` the step contracts phase-space volume by exactly
    ``exp(-gamma dt)`` per unit y, as the exact flow does (McLachlan & Perlmutter 2001).

    The field of one step is
    * a pair ``(G, c)``: momentum form ``y' = z`` (F = identity), ``G(t, y)`` the force shaped
      like y, ``c(t, z)`` the damping rates gamma >= 0, a tensor shaped like z that may depend
      on t but not on the values of z (otherwise the damping map is not the exact flow); or
    * one callable ``f(t, u)`` on the whole state, separable (y-half independent of y, z-half of
      z), undamped: F and G are read off its halves (then it is velocity Verlet).
    ``dim=None`` splits along dim 1 (channels) when ``u`` has 2+ dims, else dim 0. A `Leapfrog`
    (partitioned state, same ``solve`` and options), so analyses of leapfrog apply to it too.
    """

    name = "damped_leapfrog"
    order = 2
    evals_per_step = 2
    paired_field = True
    pair = "force_damping"

    def __init__(self, dim: int | None = None, memory_efficient: bool = True,
                 check_inverse: bool | None = None):
        if dim is not None and not checks.is_int(dim):
            raise ValueError(f"damped_leapfrog: dim must be None or an integer, got {dim!r}")
        self.dim, self.memory_efficient, self.variant = dim, bool(memory_efficient), "verlet"
        self.check_inverse = None if check_inverse is None else bool(check_inverse)

    @property
    def max_calls_per_field(self) -> int:
        return 2  # G at y_n and at y_{n+1}

    def options(self):
        return dict(dim=self.dim, memory_efficient=self.memory_efficient,
                    check_inverse=self.check_inverse)

    def _split(self, u):
        dim = self.dim if self.dim is not None else (1 if u.dim() > 1 else 0)
        if not -u.dim() <= dim < u.dim() or u.shape[dim] % 2:
            raise ValueError(f"damped_leapfrog: the state must split into two equal halves along "
                             f"dim {dim}, got shape {tuple(u.shape)}")
        y, z = u.chunk(2, dim)
        return y, z, dim

    @staticmethod
    def _parts(f, dim):
        """``(F(t, z, y), G(t, y, z), damp(t, z, s))`` with ``damp`` = exp(-gamma s) z."""
        if isinstance(f, (tuple, list)):
            if len(f) != 2:
                raise ValueError(f"damped_leapfrog: a step's field must be a pair (G, c) of the force "
                                 f"and the damping rates, got {len(f)} callables")
            G, c = f
            return ((lambda t, z, y: z), (lambda t, y, z: G(t, y)),
                    (lambda t, z, s: z * torch.exp(-s * c(t, z))))
        whole = lambda t, y, z: f(t, torch.cat((y, z), dim)).chunk(2, dim)  # noqa: E731
        return ((lambda t, z, y: whole(t, y, z)[0]), (lambda t, y, z: whole(t, y, z)[1]),
                (lambda t, z, s: z))

    def step(self, f, t, dt, u, state):
        y, z, dim = self._split(u)
        F, G, damp = self._parts(f, dim)
        z = damp(t, z, dt / 2)
        z = z + (dt / 2) * G(t, y, z)
        y = y + dt * F(t + dt / 2, z, y)
        z = z + (dt / 2) * G(t + dt, y, z)
        return torch.cat((y, damp(t + dt, z, dt / 2)), dim), state

    def inverse(self, f, t, dt, u_next):
        """The exact inverse of `step`: returns ``u_n`` from ``u_{n+1}``."""
        y, z, dim = self._split(u_next)
        F, G, damp = self._parts(f, dim)
        z = damp(t + dt, z, -dt / 2)
        z = z - (dt / 2) * G(t + dt, y, z)
        y = y - dt * F(t + dt / 2, z, y)
        z = z - (dt / 2) * G(t, y, z)
        return torch.cat((y, damp(t, z, -dt / 2)), dim)
