"""Euler-Maruyama for du = f dt + g dW: stochastic depth, shake-shake, Gaussian noise injection."""
from __future__ import annotations

import math

import torch

from . import checks
from .base import Coefficient, Scheme
from .noise import Noise
from .shake import shake_mix

NOISES = ("bernoulli", "gaussian", "shake")
P = Coefficient(name="p", default=0.5, init=(0.5, 0.5), bounds=(0.0, 1.0), learnable=False,
                doc="survival probability of stochastic depth, in (0, 1]", closed=(False, True))


class EulerMaruyama(Scheme):
    """Euler-Maruyama. Strong order 1/2 (1 for additive noise), weak order 1; explicit.

    ``noise="gaussian"`` (noise injection)::  u_{n+1} = u_n + dt f + sigma g(t, u) dW_n
        (computed as ``add(u, f, alpha=dt)``, then in place ``add_(sigma dW)`` or
        ``addcmul_(g, sigma dW)``, with sigma dW drawn as N(0, sigma^2 dt) in one pass),
        dW_n ~ N(0, dt I), or ``bm(t_n, t_{n+1})`` (e.g. a ``torchsde.BrownianInterval``, whose
        call returns the increment; the times are 0-dim tensors, as torchsde passes them); ``diffusion`` g is ``"additive"`` (g = 1, default),
        ``"field"`` (g = f(t, u)) or a callable ``g(t, u)`` (diagonal noise: g * dW elementwise).
    ``noise="bernoulli"`` (stochastic depth)::  u_{n+1} = u_n + eta dt f,  eta ~ Bernoulli(p_n):
        drift p f, diffusion sqrt(p (1 - p)) f. ``p`` is a per-step coefficient (survival).
    ``noise="shake"`` (shake-shake; the field is a pair (f1, f2) of callables, or one callable
    returning the pair (f1(t, u), f2(t, u)), both parts in one pass)::
        u_{n+1} = u_n + dt (eta f1 + (1 - eta) f2),  eta ~ U(0, 1): drift (f1 + f2)/2, noise
        (eta - 1/2)(f1 - f2), variance (f1 - f2)^2 / 12. ``shake_backward=True`` backpropagates
        with an independent eta' ~ U(0, 1) (Gastaldi's Shake-Shake-Image, see `shake_mix`).

    In eval mode (``training=False``) the noise is replaced by its mean, like dropout.
    ``per_sample=True`` draws one eta per example (dim 0), else one per batch. The draws come
    from ``noise_source``, a `solvers.Noise` (passed in like ``bm``; nothing on ``self`` changes
    during a solve): ``seed=s`` makes ``Noise(seed=s)``, ``generator=g`` makes
    ``Noise(generator=g)``, neither draws from torch's global RNG. One scheme object continues
    its stream; a new ``solvers.get(..., seed=s)`` restarts it.
    """

    name = "euler_maruyama"
    order = 0.5
    weak_order = 1
    evals_per_step = 1
    stochastic = True
    coefficients = (P,)

    def __init__(self, noise: str = "gaussian", sigma: float = 1.0, p: float | None = None,
                 diffusion="additive", bm=None, generator: torch.Generator | None = None,
                 seed: int | None = None, noise_source: Noise | None = None,
                 per_sample: bool = True, shake_backward: bool = True):
        if noise not in NOISES:
            raise ValueError(f"euler_maruyama: noise must be one of {list(NOISES)}, got {noise!r}")
        if not (callable(diffusion) or diffusion in ("additive", "field")):
            raise ValueError("euler_maruyama: diffusion must be 'additive', 'field' or a callable "
                             f"g(t, u), got {diffusion!r}")
        if bm is not None and not callable(bm):
            raise ValueError(f"euler_maruyama: bm must be a callable bm(t0, t1) -> dW, got {bm!r}")
        if noise != "gaussian" and (bm is not None or diffusion != "additive"):
            raise ValueError(f"euler_maruyama: bm= and diffusion= apply to noise='gaussian' only, "
                             f"not noise={noise!r}")
        if seed is not None and not checks.is_int(seed):
            raise ValueError(f"euler_maruyama: seed must be None or an integer, got {seed!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"euler_maruyama: generator must be a torch.Generator, got {generator!r}")
        if noise_source is not None and not isinstance(noise_source, Noise):
            raise ValueError(f"euler_maruyama: noise_source must be a solvers.Noise, got "
                             f"{type(noise_source).__name__}")
        given = [name for name, v in (("seed", seed), ("generator", generator),
                                      ("noise_source", noise_source)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"euler_maruyama: give one of seed, generator and noise_source, "
                             f"got {' and '.join(given)}")
        self.noise, self.diffusion, self.bm = noise, diffusion, bm
        self.sigma = checks.real(self.name, "sigma", sigma, 0.0, None)
        self.p = None if p is None else checks.real(self.name, "p", p, 0.0, 1.0, (False, True))
        self.noise_source = noise_source if noise_source is not None else Noise(seed, generator)
        self.per_sample, self.shake_backward = bool(per_sample), bool(shake_backward)
        self.evals_per_step = 2 if noise == "shake" else 1
        self.paired_field = noise == "shake"
        self.pair = "branches" if noise == "shake" else None  # see `Scheme.pair`
        self.order = 1 if noise == "gaussian" and diffusion == "additive" else 0.5

    def options(self):
        return dict(noise=self.noise, sigma=self.sigma, p=self.p, per_sample=self.per_sample)

    def _eta_shape(self, u):
        return (u.shape[0],) + (1,) * (u.dim() - 1) if self.per_sample and u.dim() > 1 else ()

    def step(self, f, t, dt, u, state, p=None, training=True):
        if self.noise == "shake":
            return self._shake(f, t, dt, u, training), state
        drift = f(t, u)
        if self.noise == "bernoulli":
            return self._bernoulli(drift, dt, u, p, training), state
        out = torch.add(u, drift, alpha=dt)
        if not training or self.sigma == 0:
            return out, state
        if self.bm is not None:
            dW = self.bm(t, t + dt)
            _check_noise_shape("bm(t0, t1)", dW, u)
            scale = self.sigma
        else:  # sigma dW ~ N(0, sigma^2 dt) drawn in one pass, in the state's dtype
            dW = self.noise_source.normal(u.shape, self.sigma * math.sqrt(abs(dt)), u.device, u.dtype)
            scale = 1.0
        if self.diffusion == "additive":  # in place: add's backward does not need ``out``
            return out.add_(dW, alpha=scale), state
        g = drift if self.diffusion == "field" else self.diffusion(t, u)
        _check_noise_shape("diffusion g(t, u)", g, u)
        return out.addcmul_(g, dW, value=scale), state

    def _bernoulli(self, drift, dt, u, p, training):
        p = (self.p if self.p is not None else P.default) if p is None else p
        if not torch.is_tensor(p) and not 0.0 < p <= 1.0:
            raise ValueError(f"euler_maruyama: survival probability p must lie in (0, 1], got {p!r}")
        if not training:
            return torch.add(u, drift, alpha=dt * p) if not torch.is_tensor(p) else u + (dt * p) * drift
        eta = self.noise_source.bernoulli(self._eta_shape(u), p, u.device, drift.dtype)  # p: float or 0-dim
        return torch.addcmul(u, eta, drift, value=dt)

    def _shake(self, f, t, dt, u, training):
        if isinstance(f, (tuple, list)) and len(f) == 2:
            f1, f2 = f[0](t, u), f[1](t, u)
        else:  # one callable computing both parts, f(t, u) -> (f1, f2)
            out = f(t, u) if callable(f) else None
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise ValueError("euler_maruyama: noise='shake' needs the field of a step to be a "
                                 "pair (f1, f2) of callables, or one callable returning the pair "
                                 "(f1(t, u), f2(t, u))")
            f1, f2 = out
        if not training:
            return torch.add(u, f1 + f2, alpha=dt / 2)
        shape, dtype = self._eta_shape(u), torch.promote_types(f1.dtype, f2.dtype)
        f1, f2 = f1.to(dtype), f2.to(dtype)
        eta = self.noise_source.rand(shape, u.device, dtype)
        # eta' is drawn whenever training, so the forward stream does not depend on grad mode
        eta_b = self.noise_source.rand(shape, u.device, dtype) if self.shake_backward else None
        return torch.add(u, shake_mix(f1, f2, eta, eta_b), alpha=dt)


def _check_noise_shape(what: str, value, u) -> None:
    """ValueError naming both shapes unless ``value`` is a tensor that broadcasts to ``u``'s
    shape without changing it (shapes only: no device sync)."""
    shape = tuple(value.shape) if torch.is_tensor(value) else None
    ok = shape is not None
    if ok:
        try:
            ok = torch.broadcast_shapes(value.shape, u.shape) == u.shape
        except RuntimeError:
            ok = False
    if not ok:
        got = shape if shape is not None else type(value).__name__
        raise ValueError(f"euler_maruyama: {what} returned {got}, which does not fit the state's "
                         f"shape {tuple(u.shape)} (it must be u's shape, or broadcast to it)")
