"""The classical fourth-order Runge-Kutta scheme."""
from .explicit_rk import ExplicitRK


class RK4(ExplicitRK):
    """Classical RK4. Order 4, 4 stages, explicit.

        k1 = f(t, u), k2 = f(t + dt/2, u + dt k1/2), k3 = f(t + dt/2, u + dt k2/2),
        k4 = f(t + dt, u + dt k3),  u_{n+1} = u + dt (k1 + 2 k2 + 2 k3 + k4) / 6
    """

    name = "rk4"
    order = 4
    c = (0.0, 0.5, 0.5, 1.0)
    a = ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0))
    b = (1 / 6, 1 / 3, 1 / 3, 1 / 6)
