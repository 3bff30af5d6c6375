"""A latent SDE on noisy sine curves, after torchsde's examples/latent_sde.py (Li et al. 2020).

The SDE class is written for torchsde (``f``, ``h``, ``g``, ``noise_type``, ``sde_type``) and
solved by ``solvers.sdeint`` (Euler-Maruyama, torchsde's signature). torchsde's ``logqp=True``
is torchsde's own; here the KL term rides along as one extra state coordinate with zero
diffusion, d(logqp) = 0.5 |(f - h) / g|^2 dt, which is what ``logqp`` computes.

    python examples/latent_sde_sines.py            # ~2 CPU minutes
    python examples/latent_sde_sines.py --smoke    # seconds (the tests)
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from torch import nn

from solvers import sdeint  # was: torchsde.sdeint(..., method="euler")


class LatentSDE(nn.Module):
    sde_type, noise_type = "ito", "diagonal"

    def __init__(self, latent=4, hidden=32, data_dim=1):
        super().__init__()
        self.encoder = nn.GRU(data_dim, hidden, batch_first=True)
        self.qz0 = nn.Linear(hidden, 2 * latent)
        self.f_net = nn.Sequential(nn.Linear(latent + 1, hidden), nn.Softplus(),
                                   nn.Linear(hidden, latent))  # posterior drift (sees t)
        self.h_net = nn.Sequential(nn.Linear(latent, hidden), nn.Softplus(),
                                   nn.Linear(hidden, latent))  # prior drift
        self.g_net = nn.Sequential(nn.Linear(latent, hidden), nn.Softplus(),
                                   nn.Linear(hidden, latent), nn.Sigmoid())
        self.decoder = nn.Linear(latent, data_dim)
        self.pz0_mean = nn.Parameter(torch.zeros(1, latent))
        self.pz0_logstd = nn.Parameter(torch.zeros(1, latent))
        self.latent = latent

    # torchsde's interface on the augmented state (z, logqp)
    def f(self, t, y):
        z = y[:, :self.latent]
        tt = torch.ones_like(z[:, :1]) * t
        f = self.f_net(torch.cat([z, tt], 1))
        u = (f - self.h_net(z)) / (self.g_net(z) + 1e-3)
        return torch.cat([f, 0.5 * (u ** 2).sum(1, keepdim=True)], 1)

    def g(self, t, y):
        z = y[:, :self.latent]
        return torch.cat([self.g_net(z) + 1e-3, torch.zeros_like(y[:, -1:])], 1)

    def forward(self, xs, ts, dt):
        """ELBO terms for data xs (batch, T, 1) observed at ts (T,)."""
        _, hT = self.encoder(xs.flip(1))
        mean, logstd = self.qz0(hT[0]).chunk(2, 1)
        z0 = mean + logstd.exp() * torch.randn_like(mean)
        y0 = torch.cat([z0, torch.zeros_like(z0[:, :1])], 1)
        ys = sdeint(self, y0, ts, dt=dt, method="euler")      # (T, batch, latent + 1)
        zs, logqp_path = ys[..., :self.latent], ys[-1, :, -1]
        xs_hat = self.decoder(zs).transpose(0, 1)             # (batch, T, 1)
        log_lik = -0.5 * ((xs_hat - xs) / 0.05) ** 2 - math.log(0.05 * math.sqrt(2 * math.pi))
        qz0 = torch.distributions.Normal(mean, logstd.exp())
        pz0 = torch.distributions.Normal(self.pz0_mean, self.pz0_logstd.exp())
        kl0 = torch.distributions.kl_divergence(qz0, pz0).sum(1)
        return log_lik.sum((1, 2)).mean(), (kl0 + logqp_path).mean()


def make_data(n, T, gen):
    ts = torch.linspace(0, 1, T)
    phase = torch.rand(n, 1, generator=gen) * 2 * math.pi
    xs = torch.sin(2 * math.pi * ts + phase) * 0.8 + 0.05 * torch.randn(n, T, generator=gen)
    return ts, xs.unsqueeze(-1)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--T", type=int, default=21)
    p.add_argument("--dt", type=float, default=0.025)
    p.add_argument("--smoke", "--quick", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.iters, args.batch, args.T, args.dt = 5, 8, 6, 0.1
    torch.manual_seed(0)
    np.random.seed(0)  # sdeint without bm= uses torchsde's BrownianInterval, seeded from numpy
    gen = torch.Generator().manual_seed(0)
    ts, xs = make_data(args.batch * 4, args.T, gen)
    model = LatentSDE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = []
    for it in range(1, args.iters + 1):
        batch = xs[torch.randint(0, len(xs), (args.batch,), generator=gen)]
        kl_weight = min(1.0, it / max(1, args.iters // 2))  # KL annealing, as torchsde's example
        log_lik, kl = model(batch, ts, args.dt)
        loss = -log_lik + kl_weight * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
        if it % max(1, args.iters // 10) == 0:
            print(f"iter {it:4d}: -log p {-log_lik.item():10.2f}  KL {kl.item():8.3f}")
    return {"losses": history}


if __name__ == "__main__":
    main()
