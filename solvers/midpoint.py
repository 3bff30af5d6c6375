"""Explicit midpoint rule (RK2): the two-branch structure of FractalNet."""
from .explicit_rk import ExplicitRK


class Midpoint(ExplicitRK):
    """Explicit midpoint (RK2). Order 2, 2 stages, explicit.

        u_{n+1} = u_n + dt f(t_n + dt/2, u_n + dt/2 f(t_n, u_n))
    """

    name = "midpoint"
    order = 2
    c = (0.0, 0.5)
    a = ((), (0.5,))
    b = (0.0, 1.0)
