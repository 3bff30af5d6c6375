"""Reversible leapfrog on a state split in two halves: the scheme behind RevNet."""
from __future__ import annotations

import torch

from . import checks
from .base import Scheme
from .reversible import order_dependent, reversible_solve


class Leapfrog(Scheme):
    """Reversible leapfrog on ``u = (y, z)`` split in two halves along ``dim``; explicit.

    For the partitioned system ``y' = F(t, z)``, ``z' = G(t, y)``:

    * ``variant="verlet"`` (default; Stormer-Verlet, order 2, symmetric)::

          y* = y_n + dt/2 F(t_n, z_n);  z_{n+1} = z_n + dt G(t_n + dt/2, y*);
          y_{n+1} = y* + dt/2 F(t_{n+1}, z_{n+1})

    * ``variant="revnet"`` (RevNet's block, symplectic Euler, order 1)::

          y_{n+1} = y_n + dt F(t_n, z_n);  z_{n+1} = z_n + dt G(t_{n+1}, y_{n+1})

    Each update adds a function of the *other* half, so `inverse` undoes a step exactly (up to
    rounding). The field of one step is a pair ``(F, G)`` of callables on halves, or one callable
    ``f(t, u)`` on the whole state whose y-half must not depend on y and z-half not on z (a
    separable system); then F and G are read off its halves.

    ``memory_efficient=True`` makes `solve` (grad enabled) store no per-step activations:
    backward rebuilds each step's input from its output with `inverse` and recomputes the step
    (see `reversible_solve`). Fields that depend on their call order (`order_dependent`) keep the
    plain autograd graph, and so do fields whose parameters it cannot find (plain functions or
    lambdas, unless ``solve`` gets ``params=``), so gradients are never silently missing; a
    module that uses a tensor requiring grad without registering it (a Parameter in a plain
    list) makes that backward raise a ValueError instead of dropping the tensor's gradient.
    ``check_inverse`` compares the input rebuilt by the inverses with the saved input at the end
    of backward and raises `DivergenceError` on drift (steps too expansive to invert in floating
    point, whose recomputed gradients would be wrong); one host sync per solve, so the default
    ``None`` checks on CPU only.
    ``dim=None`` splits along dim 1 (channels) when ``u`` has 2+ dims, else dim 0.
    """

    name = "leapfrog"
    paired_field = True
    pair = "coupled"
    evals_per_step = 1

    def __init__(self, variant: str = "verlet", dim: int | None = None, memory_efficient: bool = True,
                 check_inverse: bool | None = None):
        if variant not in ("verlet", "revnet"):
            raise ValueError(f"leapfrog: variant must be one of ['revnet', 'verlet'], got {variant!r}")
        if dim is not None and not checks.is_int(dim):
            raise ValueError(f"leapfrog: dim must be None or an integer, got {dim!r}")
        self.variant, self.dim, self.memory_efficient = variant, dim, bool(memory_efficient)
        self.check_inverse = None if check_inverse is None else bool(check_inverse)
        self.order = 2 if variant == "verlet" else 1
        # F+G together cost one full-width field; Verlet evaluates F twice.
        self.evals_per_step = 1.5 if variant == "verlet" else 1

    @property
    def max_calls_per_field(self) -> int:
        return 2 if self.variant == "verlet" else 1  # Verlet calls F at z_n and z_{n+1}

    def options(self):
        return dict(variant=self.variant, dim=self.dim, memory_efficient=self.memory_efficient,
                    check_inverse=self.check_inverse)

    # -- halves ---------------------------------------------------------------------------------
    def _split(self, u):
        dim = self.dim if self.dim is not None else (1 if u.dim() > 1 else 0)
        if not -u.dim() <= dim < u.dim():
            raise ValueError(f"leapfrog: dim={dim} is out of range for a state of shape "
                             f"{tuple(u.shape)} (valid: {-u.dim()} .. {u.dim() - 1})")
        size = u.shape[dim]
        if size % 2:
            raise ValueError(f"leapfrog: the state must split into two equal halves along dim {dim}, "
                             f"but it has size {size} there (shape {tuple(u.shape)})")
        y, z = u.split(size // 2, dim)
        return y, z, dim

    @staticmethod
    def _fg(f, dim):
        """``F(t, z, y)`` and ``G(t, y, z)`` from a pair of half-fields or a whole-state field."""
        if isinstance(f, (tuple, list)):
            if len(f) != 2:
                raise ValueError(f"leapfrog: a step's field must be a pair (F, G), got {len(f)} callables")
            F, G = f
            return (lambda t, z, y: F(t, z)), (lambda t, y, z: G(t, y))
        return ((lambda t, z, y: f(t, torch.cat((y, z), dim)).chunk(2, dim)[0]),
                (lambda t, y, z: f(t, torch.cat((y, z), dim)).chunk(2, dim)[1]))

    # -- one step and its inverse --------------------------------------------------------------
    def step(self, f, t, dt, u, state):
        y, z, dim = self._split(u)
        F, G = self._fg(f, dim)
        if self.variant == "revnet":
            y = y + dt * F(t, z, y)
            z = z + dt * G(t + dt, y, z)
        else:
            y = y + (dt / 2) * F(t, z, y)
            z = z + dt * G(t + dt / 2, y, z)
            y = y + (dt / 2) * F(t + dt, z, y)
        return torch.cat((y, z), dim), state

    def inverse(self, f, t, dt, u_next):
        """The exact inverse of `step`: returns ``u_n`` from ``u_{n+1}``."""
        y, z, dim = self._split(u_next)
        F, G = self._fg(f, dim)
        if self.variant == "revnet":
            z = z - dt * G(t + dt, y, z)
            y = y - dt * F(t, z, y)
        else:
            y = y - (dt / 2) * F(t + dt, z, y)
            z = z - dt * G(t + dt / 2, y, z)
            y = y - (dt / 2) * F(t, z, y)
        return torch.cat((y, z), dim)

    def solve(self, fields, u0, t0=0.0, dt=1.0, coefficients=None, state=None, return_path=False,
              training=True, activation=None, params=None):
        """`Scheme.solve`, by `reversible_solve` (O(1) activation memory) when gradients are on;
        step by step when ``activation`` is given (sigma is not invertible), with
        ``return_path``, ``memory_efficient=False`` or an order-dependent field."""
        if (return_path or activation is not None or not self.memory_efficient
                or not torch.is_grad_enabled() or order_dependent(fields)):
            return super().solve(fields, u0, t0, dt, coefficients, state, return_path, training,
                                 activation)
        self.per_step_values(coefficients, len(fields))
        return reversible_solve(self, fields, u0, t0, dt, params, self.check_inverse), state

