"""Fit a spiral ODE, ported from torchdiffeq's examples/ode_demo.py.

The field and the training loop are torchdiffeq's, unchanged but for the import: an
``ODEFunc.forward(self, t, y)`` module and ``odeint(func, y0, t, method="rk4")``
(torchdiffeq's "rk4" is Kutta's 3/8 rule, our ``rk4_38``; the fixed grid puts a step on every
requested time). The true dynamics dy/dt = (y^3) A are integrated with ``steps`` per interval.

    python examples/spiral_fit.py            # ~1 CPU minute: 400 iterations
    python examples/spiral_fit.py --quick    # a few seconds (used by the test suite)
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from solvers import odeint  # was: from torchdiffeq import odeint


class Lambda(nn.Module):
    """The true dynamics of ode_demo (t unused, as there)."""

    def forward(self, t, y):
        true_A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]])
        return torch.mm(y ** 3, true_A)


class ODEFunc(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 50), nn.Tanh(), nn.Linear(50, 2))
        for m in self.net.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0, std=0.1)
                nn.init.constant_(m.bias, val=0)

    def forward(self, t, y):
        return self.net(y ** 3)


def get_batch(true_y, t, data_size, batch_time, batch_size, gen):
    s = torch.randperm(data_size - batch_time, generator=gen)[:batch_size]
    batch_y0 = true_y[s]  # (M, D)
    batch_t = t[:batch_time]  # (T)
    batch_y = torch.stack([true_y[s + i] for i in range(batch_time)], dim=0)  # (T, M, D)
    return batch_y0, batch_t, batch_y


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-size", type=int, default=1000)
    p.add_argument("--batch-time", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--niters", type=int, default=400)
    p.add_argument("--test-freq", type=int, default=50)
    p.add_argument("--quick", "--smoke", action="store_true", help="tiny run for tests")
    args = p.parse_args(argv)
    if args.quick:
        args.data_size, args.niters, args.test_freq = 200, 20, 10
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    true_y0 = torch.tensor([[2.0, 0.0]])
    t = torch.linspace(0.0, 25.0, args.data_size)
    with torch.no_grad():
        true_y = odeint(Lambda(), true_y0, t, method="rk4", options={"steps": 4})
    func = ODEFunc()
    optimizer = torch.optim.RMSprop(func.parameters(), lr=1e-3)
    losses = []
    for itr in range(1, args.niters + 1):
        optimizer.zero_grad()
        batch_y0, batch_t, batch_y = get_batch(true_y, t, args.data_size, args.batch_time,
                                               args.batch_size, gen)
        pred_y = odeint(func, batch_y0, batch_t, method="rk4")
        loss = torch.mean(torch.abs(pred_y - batch_y))
        loss.backward()
        optimizer.step()
        if itr % args.test_freq == 0:
            with torch.no_grad():
                pred_y = odeint(func, true_y0, t, method="rk4")
                total = torch.mean(torch.abs(pred_y - true_y)).item()
            losses.append(total)
            print(f"Iter {itr:04d} | Total Loss {total:.6f}")
    return {"losses": losses}


if __name__ == "__main__":
    main()
