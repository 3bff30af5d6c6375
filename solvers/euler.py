"""Forward Euler: the scheme behind ResNet."""
from .base import Scheme


class Euler(Scheme):
    """Forward Euler. Order 1, 1 stage, explicit.

        u_{n+1} = u_n + dt f(t_n, u_n)

    With dt = 1 and an untied field per step this is exactly a residual network.
    Stable for |1 + dt λ| <= 1.
    """

    name = "euler"
    order = 1
    evaluations = 1

    def step(self, f, t, dt, u, state):
        return u + dt * f(t, u), state
