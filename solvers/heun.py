"""Heun's method (explicit trapezoidal RK2)."""
from .explicit_rk import ExplicitRK


class Heun(ExplicitRK):
    """Heun / explicit trapezoid. Order 2, 2 stages, explicit.

        k1 = f(t_n, u_n),  k2 = f(t_n + dt, u_n + dt k1),  u_{n+1} = u_n + dt (k1 + k2) / 2
    """

    name = "heun"
    order = 2
    c = (0.0, 1.0)
    a = ((), (1.0,))
    b = (0.5, 0.5)
