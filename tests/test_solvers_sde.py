"""Euler-Maruyama: agreement with torchsde, noise statistics (docs/schemes.md §3), eval-mode
means, reproducibility, shake-shake's backward weight, and weak/strong convergence orders.

All random tests are seeded; statistical tolerances are 5-6 standard errors.
"""
import math

import numpy as np
import pytest
import torch

import solvers

torchsde = pytest.importorskip("torchsde")

D64 = torch.float64


def const(c):
    return lambda t, u: torch.full_like(u, c)


def one_step(noise, u0, field, **options):
    return solvers.integrate(field, u0, 1, scheme="euler_maruyama", noise=noise, **options)


# -- torchsde -------------------------------------------------------------------------------------
class _DiagonalSDE(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return -y + torch.sin(y) * math.cos(float(t))

    def g(self, t, y):
        return 0.5 * torch.cos(y) + 0.1


class _AdditiveSDE(_DiagonalSDE):
    noise_type = "additive"
    sigma = 0.7

    def g(self, t, y):  # (batch, d, m) with m = d: sigma * I
        return self.sigma * torch.eye(y.shape[-1], dtype=y.dtype).expand(y.shape[0], -1, -1)


@pytest.mark.parametrize("steps", [4, 32])
@pytest.mark.parametrize("kind", ["diagonal", "additive"])
def test_matches_torchsde_euler_with_same_brownian_motion(kind, steps):
    sde = _DiagonalSDE() if kind == "diagonal" else _AdditiveSDE()
    y0 = torch.randn(3, 2, dtype=D64, generator=torch.Generator().manual_seed(0))
    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(3, 2), dtype=D64, entropy=7)
    ts = torch.linspace(0.0, 1.0, steps + 1, dtype=D64)
    expected = torchsde.sdeint(sde, y0, ts, bm=bm, method="euler", dt=1.0 / steps)
    options = dict(diffusion=sde.g, sigma=1.0) if kind == "diagonal" else dict(sigma=sde.sigma)
    path = solvers.integrate(sde.f, y0, steps, scheme="euler_maruyama", bm=bm, return_path=True,
                             **options)
    torch.testing.assert_close(path, expected, rtol=0, atol=1e-6)
    assert (path[-1] - solvers.integrate(sde.f, y0, steps, scheme="euler")).abs().max() > 1e-3
    again = solvers.integrate(sde.f, y0, steps, scheme="euler_maruyama", bm=bm, **options)
    torch.testing.assert_close(again, path[-1], rtol=0, atol=0)  # bm= reproduces


# -- one-step statistics ---------------------------------------------------------------------------
def _check_moments(x, mean, var, mu4):
    """Sample mean and variance within 6 standard errors (fourth central moment mu4)."""
    n = x.numel()
    assert abs(float(x.mean()) - mean) < 6 * math.sqrt(var / n), (float(x.mean()), mean)
    assert abs(float(x.var()) - var) < 6 * math.sqrt((mu4 - var ** 2) / n), (float(x.var()), var)


@pytest.mark.parametrize("p", [0.3, 0.8])
def test_bernoulli_mean_and_variance(p):
    c, n = 2.0, 200_000
    u0 = torch.zeros(n, 1, dtype=D64)
    x = one_step("bernoulli", u0, const(c), p=p, seed=0) - u0
    q = p * (1 - p)
    _check_moments(x, p * c, q * c ** 2, c ** 4 * q * (1 - 3 * q))
    assert set(x.unique().tolist()) == {0.0, c}


def test_shake_mean_and_variance():
    f1, f2, n = 3.0, -1.0, 200_000
    u0 = torch.zeros(n, 1, dtype=D64)
    x = one_step("shake", u0, (const(f1), const(f2)), seed=0) - u0
    _check_moments(x, (f1 + f2) / 2, (f1 - f2) ** 2 / 12, (f1 - f2) ** 4 / 80)
    assert float(x.min()) >= min(f1, f2) and float(x.max()) <= max(f1, f2)


def test_gaussian_increment_variance():
    sigma, dt, n = 0.5, 0.25, 200_000
    u0 = torch.zeros(n, dtype=D64)
    x = solvers.integrate(const(1.0), u0, 1, scheme="euler_maruyama", sigma=sigma, t1=dt, seed=0)
    var = sigma ** 2 * dt
    _check_moments(x, dt, var, 3 * var ** 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gaussian_increments_are_independent_normal_across_steps_and_elements(dtype):
    """sigma dW_n of a multi-step solve (drift 0, channels_last states, drawn in the state's
    dtype): each step's increments have mean 0 and variance sigma^2 dt, kurtosis 3 (normal),
    and increments of different steps (and of neighbouring elements) are uncorrelated."""
    sigma, dt, steps = 0.7, 0.125, 4
    u0 = torch.zeros(64, 8, 16, 16, dtype=dtype).to(memory_format=torch.channels_last)
    path = solvers.get("euler_maruyama", sigma=sigma, seed=1).solve(
        [lambda t, u: torch.zeros_like(u)] * steps, u0, dt=dt, return_path=True)[0]
    dW = (path[1:] - path[:-1]).double().reshape(steps, -1)  # exact: the drift adds zeros
    var, n = sigma ** 2 * dt, dW.shape[1]
    for x in dW:
        _check_moments(x, 0.0, var, 3 * var ** 2)
        assert abs(float((x ** 4).mean()) / float(x.var()) ** 2 - 3) < 0.1  # normal, not uniform
    z = (dW / math.sqrt(var)).float()
    bound = 6 / math.sqrt(n)  # correlation of independent draws: ~N(0, 1/n)
    corr = torch.corrcoef(z)
    assert (corr - torch.eye(steps)).abs().max() < bound, corr  # across steps
    assert abs(float((z[:, 1:] * z[:, :-1]).mean())) < bound  # neighbouring elements


def test_eval_mode_gives_the_mean_exactly():
    u0 = torch.randn(5, 3, dtype=D64, generator=torch.Generator().manual_seed(0))
    step = dict(t1=0.5, training=False)
    em = dict(scheme="euler_maruyama")
    torch.testing.assert_close(solvers.integrate(const(2.0), u0, 1, noise="bernoulli", p=0.3, **em, **step),
                               u0 + 0.5 * 0.3 * 2.0, rtol=0, atol=1e-15)
    torch.testing.assert_close(solvers.integrate((const(3.0), const(-1.0)), u0, 1, noise="shake", **em, **step),
                               u0 + 0.5 * 1.0, rtol=0, atol=1e-15)
    f = lambda t, u: torch.sin(u)  # noqa: E731
    torch.testing.assert_close(solvers.integrate(f, u0, 4, sigma=3.0, **em, training=False),
                               solvers.integrate(f, u0, 4, scheme="euler"), rtol=0, atol=0)


def test_survival_one_is_euler_and_per_step_p():
    u0 = torch.randn(8, 3, dtype=D64)
    f = lambda t, u: torch.tanh(u)  # noqa: E731
    euler = solvers.integrate(f, u0, 3, scheme="euler")
    torch.testing.assert_close(solvers.integrate(f, u0, 3, scheme="euler_maruyama", noise="bernoulli",
                                                 p=1.0, seed=0), euler, rtol=0, atol=0)
    p = torch.tensor([1.0, 0.5, 0.25], dtype=D64)  # per-step survival, eval mode = mean
    expected = u0
    for n in range(3):
        expected = expected + (1 / 3) * p[n] * f(0, expected)
    got = solvers.integrate(f, u0, 3, scheme="euler_maruyama", noise="bernoulli",
                            coefficients={"p": p}, training=False)
    torch.testing.assert_close(got, expected)
    got = solvers.integrate(f, u0, 3, scheme="euler_maruyama", noise="bernoulli",
                            coefficients={"p": p}, seed=0)  # tensor p in training mode runs
    assert got.shape == u0.shape


# -- reproducibility ------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", ["gaussian", "bernoulli", "shake"])
def test_seed_and_generator_reproduce(noise):
    u0 = torch.randn(16, 4)
    f = (const(1.0), const(-2.0)) if noise == "shake" else (lambda t, u: torch.tanh(u))
    run = lambda **o: solvers.integrate(f, u0, 5, scheme="euler_maruyama", noise=noise, **o)  # noqa: E731
    torch.testing.assert_close(run(seed=3), run(seed=3), rtol=0, atol=0)
    assert not torch.equal(run(seed=3), run(seed=4))
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    torch.testing.assert_close(run(generator=gen()), run(generator=gen()), rtol=0, atol=0)
    scheme = solvers.get("euler_maruyama", noise=noise, seed=3)  # one object continues its stream
    first = solvers.integrate(f, u0, 5, scheme=scheme)
    torch.testing.assert_close(first, run(seed=3), rtol=0, atol=0)
    assert not torch.equal(first, solvers.integrate(f, u0, 5, scheme=scheme))


@pytest.mark.parametrize("per_sample", [True, False])
def test_per_sample_draws(per_sample):
    u0 = torch.zeros(64, 3)
    x = one_step("bernoulli", u0, const(1.0), p=0.5, seed=0, per_sample=per_sample)
    assert torch.equal(x, x[:, :1].expand_as(x))  # one eta per example at most
    assert (x.unique().numel() == 2) == per_sample


# -- shake-shake backward ------------------------------------------------------------------------
@pytest.mark.parametrize("shake_backward", [True, False])
def test_shake_backward_weight(shake_backward):
    n = 256
    a = torch.full((n, 1), 2.0, requires_grad=True)
    b = torch.full((n, 1), -1.0, requires_grad=True)
    out = one_step("shake", torch.zeros(n, 1), (lambda t, u: a, lambda t, u: b), seed=0,
                   shake_backward=shake_backward)
    out.sum().backward()
    eta = (out.detach() - b.detach()) / (a.detach() - b.detach())  # the forward weight
    torch.testing.assert_close(a.grad + b.grad, torch.ones_like(a))
    assert bool(((a.grad >= 0) & (a.grad <= 1)).all())
    if shake_backward:
        assert (a.grad - eta).abs().mean() > 0.1  # an independent backward weight
    else:
        torch.testing.assert_close(a.grad, eta)


def test_stochastic_gradcheck_with_fixed_seed():
    w = torch.tensor([0.7, -0.4], dtype=D64, requires_grad=True)
    u0 = torch.randn(3, 2, dtype=D64, requires_grad=True)

    def run(u0, w):
        g = lambda t, u: torch.tanh(u * w)  # noqa: E731
        return solvers.integrate(g, u0, 3, scheme="euler_maruyama", diffusion="field", seed=1)
    assert torch.autograd.gradcheck(run, (u0, w))


# -- convergence ------------------------------------------------------------------------------------
def _brownian_paths(paths, fine, seed):
    """W on a uniform grid of ``fine`` steps on [0, 1] and a bm(ta, tb) -> W(tb) - W(ta)."""
    gen = torch.Generator().manual_seed(seed)
    dW = torch.randn(fine, paths, generator=gen, dtype=D64) / math.sqrt(fine)
    W = torch.cat((torch.zeros(1, paths, dtype=D64), dW.cumsum(0)))
    return W, (lambda ta, tb: W[round(float(tb) * fine)] - W[round(float(ta) * fine)])


def _slope(steps, errors):
    return -np.polyfit(np.log(steps), np.log(errors), 1)[0]


def test_gbm_weak_order_one():
    """du = mu u dt + s u dW: E[u_N] = (1 + mu dt)^N exactly, so the weak error is
    e^mu - (1 + mu/N)^N. The mean of u_N - u(1) on the same path has a small variance."""
    mu, s, paths, steps = 1.0, 0.5, 50_000, [8, 16, 32, 64]
    W, bm = _brownian_paths(paths, 64, seed=0)
    exact = torch.exp((mu - s * s / 2) + s * W[-1])
    errors = []
    for n in steps:
        u = solvers.integrate(lambda t, u: mu * u, torch.ones(paths, dtype=D64), n,
                              scheme="euler_maruyama", sigma=s, diffusion=lambda t, u: u, bm=bm)
        d = u - exact
        bias = (1 + mu / n) ** n - math.exp(mu)
        assert abs(float(d.mean()) - bias) < 6 * float(d.std()) / math.sqrt(paths)
        errors.append(abs(float(d.mean())))
    assert abs(_slope(steps, errors) - 1.0) < 0.15, errors


def test_gbm_strong_order_half():
    mu, s, paths, steps = 0.1, 1.0, 20_000, [8, 16, 32, 64, 128]
    W, bm = _brownian_paths(paths, 512, seed=1)
    exact = torch.exp((mu - s * s / 2) + s * W[-1])
    errors = [float((solvers.integrate(lambda t, u: mu * u, torch.ones(paths, dtype=D64), n,
                                       scheme="euler_maruyama", sigma=s, diffusion=lambda t, u: u,
                                       bm=bm) - exact).abs().mean()) for n in steps]
    assert abs(_slope(steps, errors) - 0.5) < 0.15, errors


def test_ornstein_uhlenbeck_additive_strong_order_one():
    """du = -u dt + s dW (additive): EM is strong order 1; reference EM on a 1024-step grid."""
    s, paths, steps = 0.8, 2_000, [8, 16, 32, 64]
    W, bm = _brownian_paths(paths, 1024, seed=2)
    run = lambda n: solvers.integrate(lambda t, u: -u, torch.ones(paths, dtype=D64), n,  # noqa: E731
                                      scheme="euler_maruyama", sigma=s, bm=bm)
    reference = run(1024)
    errors = [float((run(n) - reference).abs().mean()) for n in steps]
    assert abs(_slope(steps, errors) - 1.0) < 0.15, errors
