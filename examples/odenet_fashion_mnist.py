"""ODE-Net on Fashion-MNIST, ported from torchdiffeq's examples/odenet_mnist.py.

torchdiffeq's ``ODEfunc.forward(self, t, x)`` (which concatenates t as a channel) is used
unchanged; its ``ODEBlock`` becomes ``odenets.build(ODEfunc(64), solver, tied=True)``: a fixed
grid (``rk4`` here, any scheme or ``dopri5``) without flags, since build reads the field's
signature. Data: the Fashion-MNIST files odenets finds (``--data-dir``), or, with ``--smoke``,
random images.

    python examples/odenet_fashion_mnist.py --subset 2000 --epochs 1   # a few CPU minutes
    python examples/odenet_fashion_mnist.py --smoke                    # seconds (the tests)
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

import odenets
import solvers


def norm(dim):
    return nn.GroupNorm(min(32, dim), dim)


class ConcatConv2d(nn.Module):
    def __init__(self, dim_in, dim_out, ksize=3, stride=1, padding=0):
        super().__init__()
        self._layer = nn.Conv2d(dim_in + 1, dim_out, kernel_size=ksize, stride=stride,
                                padding=padding)

    def forward(self, t, x):
        tt = torch.ones_like(x[:, :1, :, :]) * t
        return self._layer(torch.cat([tt, x], 1))


class ODEfunc(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1, self.relu = norm(dim), nn.ReLU(inplace=True)
        self.conv1 = ConcatConv2d(dim, dim, 3, 1, 1)
        self.norm2 = norm(dim)
        self.conv2 = ConcatConv2d(dim, dim, 3, 1, 1)
        self.norm3 = norm(dim)

    def forward(self, t, x):
        out = self.relu(self.norm1(x))
        out = self.conv1(t, out)
        out = self.relu(self.norm2(out))
        out = self.conv2(t, out)
        return self.norm3(out)


def make_model(width=64, solver="rk4", steps=4):
    downsampling = [nn.Conv2d(1, width, 3, 1), norm(width), nn.ReLU(inplace=True),
                    nn.Conv2d(width, width, 4, 2, 1), norm(width), nn.ReLU(inplace=True),
                    nn.Conv2d(width, width, 4, 2, 1)]
    opts = {"steps": steps} if solver in solvers.available() else {"rtol": 1e-3, "atol": 1e-3}
    feature = [odenets.build(ODEfunc(width), solver, tied=True, **opts)]
    fc = [norm(width), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
          nn.Linear(width, 10)]
    return nn.Sequential(*downsampling, *feature, *fc)


def load(args):
    if args.smoke:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(64, 1, 28, 28, generator=gen)
        return (x, torch.randint(0, 10, (64,), generator=gen)), (x[:32], torch.randint(0, 10, (32,)))
    from odenets.data import load_dataset
    out = []
    for split, n in (("train", args.subset), ("test", args.test_subset)):
        d = load_dataset("fashion-mnist", split, data_dir=args.data_dir, subset=n)
        out.append(((d.images.float() / 255 - d.mean[0]) / d.std[0], d.labels))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--solver", default="rk4")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--subset", type=int, default=2000)
    p.add_argument("--test-subset", type=int, default=1000)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--smoke", "--quick", action="store_true", help="random data, tiny model")
    args = p.parse_args(argv)
    if args.smoke:
        args.width, args.steps, args.batch_size = 8, 2, 32
    torch.manual_seed(0)
    (x, y), (xt, yt) = load(args)
    model = make_model(args.width, args.solver, args.steps)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), args.batch_size):
            idx = perm[i:i + args.batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = sum((model(xt[i:i + 256]).argmax(1) == yt[i:i + 256]).sum().item()
                      for i in range(0, len(xt), 256)) / len(xt)
        print(f"epoch {epoch + 1}: train loss {loss.item():.4f}, test accuracy {acc:.4f}")
    return {"loss": loss.item(), "accuracy": acc}


if __name__ == "__main__":
    main()
