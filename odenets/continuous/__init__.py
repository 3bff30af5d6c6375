"""Continuous depth: a tied field integrated by torchdiffeq (``"dopri5"``, ``"ode:rk4"``...) or,
with noise, by torchsde (``"sde:euler"``...). See `build_continuous`.

    flow = build_continuous(field, "dopri5", rtol=1e-4, atol=1e-5, adjoint=True)
    u1 = flow(u0); u1.sum().backward(); flow.nfe   # {"forward": .., "backward": .., "vjp": ..}
    total_nfe(model); reset_nfe(model)             # summed over every flow inside a network
"""
from .factory import build_continuous, continuous_solvers, is_continuous
from .nfe import CountedField, reset_nfe, total_nfe

__all__ = ["CountedField", "build_continuous", "continuous_solvers", "is_continuous", "reset_nfe",
           "total_nfe"]
