"""Forward Euler: the scheme behind ResNet."""
import torch

from .base import Scheme


class Euler(Scheme):
    """Forward Euler. Order 1, 1 stage, explicit.

        u_{n+1} = u_n + dt f(t_n, u_n)

    With dt = 1 and an untied field per step this is exactly a residual network.
    Stable for |1 + dt λ| <= 1. One fused ``add(u, f, alpha=dt)`` kernel besides the field.
    """

    name = "euler"
    order = 1
    evals_per_step = 1

    def step(self, f, t, dt, u, state):
        return torch.add(u, f(t, u), alpha=dt), state
