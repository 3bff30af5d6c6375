"""A multilayer-perceptron field for vector data (and time-aware ODE fields)."""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus, "gelu": nn.GELU,
               "silu": nn.SiLU}


class MLPField(nn.Module):
    """f(u) = W_L sigma(... sigma(W_1 [u, t] + b_1) ...) + b_L,  u: (B, dim) -> (B, dim).

    ``depth`` linear layers (>= 1), ``hidden`` units, activation one of `ACTIVATIONS`.
    ``time_aware=True`` appends t as an input feature (then the flow calls ``f(t, u)``; the
    class attribute `time_aware` is what `odenets.build` looks at).
    """

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2, activation: str = "tanh",
                 time_aware: bool = False):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"MLPField: activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        for name, value in (("dim", dim), ("hidden", hidden), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MLPField: {name} must be an integer >= 1, got {value!r}")
        self.time_aware = bool(time_aware)
        sizes = [dim + self.time_aware] + [hidden] * (depth - 1) + [dim]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < depth - 1:
                layers.append(ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)

    def forward(self, *args):
        """``forward(u)``, or ``forward(t, u)`` when time-aware."""
        if not self.time_aware:
            (u,) = args
            return self.net(u)
        t, u = args
        t = torch.as_tensor(t, dtype=u.dtype, device=u.device).expand(*u.shape[:-1], 1)
        return self.net(torch.cat((u, t), dim=-1))
