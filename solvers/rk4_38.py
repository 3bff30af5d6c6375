"""Kutta's 3/8 rule: the fourth-order scheme torchdiffeq calls ``method="rk4"``."""
from .explicit_rk import ExplicitRK


class RK4ThreeEighths(ExplicitRK):
    """Kutta's 3/8 rule. Order 4, 4 stages, explicit.

        k1 = f(t, u),  k2 = f(t + dt/3, u + dt k1/3),  k3 = f(t + 2dt/3, u + dt (k2 - k1/3)),
        k4 = f(t + dt, u + dt (k1 - k2 + k3)),  u_{n+1} = u + dt (k1 + 3 k2 + 3 k3 + k4) / 8

    On linear autonomous fields it equals classical RK4 (both apply the degree-4 Taylor
    polynomial of dt A); on nonlinear fields the two differ at O(dt^5) per step.
    torchdiffeq's fixed-grid ``odeint(method="rk4")`` is this scheme, not classical RK4.
    """

    name = "rk4_38"
    order = 4
    c = (0.0, 1 / 3, 2 / 3, 1.0)
    a = ((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0))
    b = (1 / 8, 3 / 8, 3 / 8, 1 / 8)
