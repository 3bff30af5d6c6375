"""Backward Euler solved by fixed-point iteration: the scheme behind PolyNet."""
from __future__ import annotations

import torch

from . import checks
from .base import DivergenceError, Scheme


# Fixed-point iterations converge linearly (rate Lip(f) dt per iteration): more than this many
# per step buy nothing a smaller step would not, so larger counts are refused as typos.
MAX_ITERATIONS = 10**4


class BackwardEuler(Scheme):
    """Backward (implicit) Euler by fixed-point iteration. Order 1, implicit.

        u_{n+1} = u_n + dt f(t_{n+1}, u_{n+1}),  solved by
        v^(0) = u_n,  v^(j+1) = u_n + dt f(t_{n+1}, v^(j)),  u_{n+1} = v^(K)

    ``iterations=K`` fixed iterations (K = 1 is forward Euler; K = 2 gives PolyNet's
    ``u + F(u) + F(F(u))`` for linear F). The iteration converges when Lip(f) dt < 1.

    Fast path (``tol=None``, ``check=False``): exactly K iterations, no host syncs.
    Analysis path: ``tol`` iterates until ``max|v^(j+1) - v^(j)| <= tol`` (or below the
    rounding level ``4 eps(dtype) max|v|``, so a float32 state with a tiny tol still stops; at
    most ``max_iterations``) and ``check=True`` verifies finiteness; both raise `DivergenceError`
    when the iteration produces NaN/inf, grows, or does not converge.
    """

    name = "backward_euler"
    order = 1

    def __init__(self, iterations: int = 2, tol: float | None = None, max_iterations: int = 100,
                 check: bool = False):
        self.iterations = checks.integer(self.name, "iterations", iterations)
        self.tol = None if tol is None else checks.real(self.name, "tol", tol, 0.0, None, (False, True))
        self.max_iterations = checks.integer(self.name, "max_iterations", max_iterations)
        self.check = bool(check)
        for name in ("iterations", "max_iterations"):
            if getattr(self, name) > MAX_ITERATIONS:
                raise ValueError(f"{self.name}: {name}={getattr(self, name)} is more than "
                                 f"MAX_ITERATIONS = {MAX_ITERATIONS} fixed-point iterations per "
                                 f"step; take more steps (a smaller dt contracts faster)")
        self.evals_per_step = self.max_iterations if self.tol is not None else self.iterations

    @property
    def max_calls_per_field(self) -> int:
        """``iterations``, also with ``tol``: later iterates lie near the fixed point, where the
        field's input barely changes, so they share the last call's slot."""
        return self.iterations

    def options(self):
        return dict(iterations=self.iterations, tol=self.tol, max_iterations=self.max_iterations,
                    check=self.check)

    def step(self, f, t, dt, u, state):
        t1 = t + dt
        if self.tol is None:
            v = u
            for _ in range(self.iterations):
                v = torch.add(u, f(t1, v), alpha=dt)
            if self.check:
                self._check_finite(v, t, self.iterations)
            return v, state
        eps = 4 * torch.finfo(u.dtype).eps  # below eps * |v| the update is rounding noise
        v, first = u, None
        for j in range(1, self.max_iterations + 1):
            v_next = torch.add(u, f(t1, v), alpha=dt)
            delta, size = torch.stack(((v_next - v).abs().max(), v_next.abs().max())).tolist()
            v = v_next
            if delta != delta or delta == float("inf"):
                self._check_finite(v, t, j)
            first = delta if first is None else first
            if delta <= max(self.tol, eps * size):
                return v, state
            if j >= 3 and delta > 10 * first:
                raise DivergenceError(
                    f"backward_euler: fixed-point iteration diverges at t={t:.4g} (update grew from "
                    f"{first:.3g} to {delta:.3g} after {j} iterations); it needs Lip(f)*dt < 1: "
                    f"take more steps (smaller dt) or a smaller field")
        raise DivergenceError(
            f"backward_euler: fixed-point iteration did not reach tol={self.tol} in "
            f"max_iterations={self.max_iterations} at t={t:.4g} (last update {delta:.3g}); "
            f"raise max_iterations or take smaller steps")

    @staticmethod
    def _check_finite(v, t, j):
        if not bool(torch.isfinite(v).all()):
            raise DivergenceError(
                f"backward_euler: fixed-point iteration produced NaN/inf at t={t:.4g} after {j} "
                f"iterations; it needs Lip(f)*dt < 1: take more steps or a smaller field")
