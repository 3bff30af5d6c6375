"""Two-step Adams-Bashforth."""
import torch

from .base import Scheme


class AB2(Scheme):
    """Adams-Bashforth 2. Order 2, 1 evaluation per step, explicit two-step.

        u_{n+1} = u_n + dt (3/2 f(t_n, u_n) - 1/2 f(t_{n-1}, u_{n-1}))

    The first step is forward Euler. State: ``(f_{n-1},)``.
    """

    name = "ab2"
    order = 2
    evals_per_step = 1
    past_states = 1  # f(t_{n-1}, u_{n-1})

    def step(self, f, t, dt, u, state):
        f_n = f(t, u)
        if state is None:
            return torch.add(u, f_n, alpha=dt), (f_n,)
        (f_prev,) = state
        return torch.add(torch.add(u, f_n, alpha=1.5 * dt), f_prev, alpha=-0.5 * dt), (f_n,)
