"""L-infinity adversarial attacks in pixel space: FGSM and PGD (torch only).

    model = Normalized(net, mean, std)                # net takes normalised images
    x_adv = pgd(model, x, y, eps=8 / 255, steps=10)   # x in [0, 1]
    accuracy = attack_accuracy(net, test_data, [0.01, 0.03], "pgd")

The threat model is the usual one in [0, 1] pixel units: ||x_adv - x||_inf <= eps and
x_adv in [0, 1]. Networks here take normalised inputs (x - mean) / std, so the attack runs on
`Normalized` (normalisation inside the differentiated function): an eps in pixels is
eps / std_c in channel c of the normalised input; attacking the normalised input with eps
itself would be a different (for Fashion-MNIST, std 0.35, about 3x larger) budget.

* FGSM (Goodfellow et al. 2015): x_adv = clip(x + eps sign(grad_x L(x, y)), 0, 1).
* PGD (Madry et al. 2018): from a uniform random start in the eps-ball, ``steps`` iterations
  x <- Proj(x + alpha sign(grad_x L)), Proj = clip to the eps-ball around x, then to [0, 1];
  alpha defaults to 2.5 eps / steps (Madry's choice). Returns the last iterate.

The loss is the cross-entropy of the model in eval mode (BatchNorm running statistics, no
noise: a stochastic network is attacked through its mean path). Gradients of the model's
parameters are neither kept nor changed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from solvers import checks

ATTACKS = ("fgsm", "pgd")


class Normalized(nn.Module):
    """x in [0, 1] pixels -> model((x - mean) / std), mean/std per channel."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.model((x - self.mean) / self.std)


def _check_eps(eps) -> float:
    eps = float(eps)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must lie in [0, 1] (pixel units), got {eps}")
    return eps


def _input_grad(model, x, y):
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """One signed-gradient step of size ``eps``, clipped to [0, 1]. ``model`` takes pixels."""
    eps = _check_eps(eps)
    if eps == 0:
        return x.detach().clone()
    return (x + eps * _input_grad(model, x, y).sign()).clamp(0, 1).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
        alpha: float | None = None, random_start: bool = True,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient ascent on the loss in the L-inf ball of radius ``eps`` around ``x``
    (module docstring). ``generator`` seeds the random start (reproducible attacks)."""
    eps = _check_eps(eps)
    if not checks.is_int(steps, 1):
        raise ValueError(f"pgd: steps must be an integer >= 1, got {steps!r}")
    if eps == 0:
        return x.detach().clone()
    alpha = 2.5 * eps / steps if alpha is None else float(alpha)
    x = x.detach()
    low, high = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        adv = torch.max(torch.min(x + eps * (2 * noise - 1), high), low)
    for _ in range(steps):
        adv = adv + alpha * _input_grad(model, adv, y).sign()
        adv = torch.max(torch.min(adv, high), low).detach()
    return adv


def attack_accuracy(model: nn.Module, data, eps_values, attack: str = "pgd", steps: int = 10,
                    batch: int = 500, seed: int = 0) -> dict[str, float]:
    """Accuracy of ``model`` (taking normalised inputs, as trained) on ``data`` (an
    `odenets.data.ImageData`) under ``attack`` at each eps: ``{"0.01": acc, ...}``. eps = 0 is
    the clean accuracy. The PGD starts are drawn from ``seed``."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; available: {', '.join(ATTACKS)}")
    eps_values = [_check_eps(e) for e in eps_values]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    pixels = Normalized(model, data.mean, data.std).to(device)
    out = {}
    try:
        for eps in eps_values:
            gen = torch.Generator().manual_seed(seed)
            correct = 0
            for start in range(0, len(data), batch):
                x = (data.images[start:start + batch].float() / 255).to(device)
                y = data.labels[start:start + batch].to(device)
                if attack == "fgsm":
                    x = fgsm(pixels, x, y, eps)
                else:
                    x = pgd(pixels, x, y, eps, steps, generator=gen)
                with torch.no_grad():
                    correct += (pixels(x).argmax(1) == y).sum().item()
            out[f"{eps:g}"] = correct / len(data)
    finally:
        model.train(was_training)
    return out
