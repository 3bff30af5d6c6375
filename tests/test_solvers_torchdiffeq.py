"""Agreement with torchdiffeq's fixed-grid ``odeint`` on the same grid (float64, to 1e-6).

torchdiffeq's "midpoint" is the explicit midpoint rule (our "midpoint"/"rk2"); its "rk4" is
Kutta's 3/8 rule (``rk4_alt_step_func``), our "rk4_38". Classical "rk4" equals it on linear
autonomous fields only, so it is compared on u' = A u.
"""
import math

import pytest
import torch

import solvers

torchdiffeq = pytest.importorskip("torchdiffeq")

PAIRS = [("euler", "euler"), ("midpoint", "midpoint"), ("rk2", "midpoint"), ("rk4_38", "rk4")]


def forced_pendulum(t, u):
    """Batched (B, 2); t may be a float (ours) or a 0-dim tensor (torchdiffeq)."""
    y, z = u.unbind(-1)
    return torch.stack((z, -torch.sin(y) + 0.5 * math.cos(float(t))), -1)


def _mlp_field():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    return lambda t, u: net(u)


def _odeint_path(f, u0, steps, method, t1=1.0):
    ts = torch.linspace(0.0, t1, steps + 1, dtype=torch.float64)
    return torchdiffeq.odeint(f, u0, ts, method=method, options=dict(step_size=t1 / steps))


@pytest.mark.parametrize("field", ["pendulum", "mlp"])
@pytest.mark.parametrize("steps", [4, 32])
@pytest.mark.parametrize("ours,theirs", PAIRS)
def test_matches_odeint(ours, theirs, steps, field):
    f = forced_pendulum if field == "pendulum" else _mlp_field()
    u0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0], [0.0, 0.0]], dtype=torch.float64)
    expected = _odeint_path(f, u0, steps, theirs)
    path = solvers.integrate(f, u0, steps, scheme=ours, return_path=True)
    assert path.shape == expected.shape == (steps + 1, 3, 2)
    torch.testing.assert_close(path, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(solvers.integrate(f, u0, steps, scheme=ours), expected[-1],
                               rtol=0, atol=1e-6)


def test_classical_rk4_matches_odeint_rk4_on_linear_field():
    A = torch.tensor([[-0.5, 2.0], [-1.0, -0.3]], dtype=torch.float64)
    f = lambda t, u: u @ A.T  # noqa: E731
    u0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    expected = _odeint_path(f, u0, 16, "rk4")
    torch.testing.assert_close(solvers.integrate(f, u0, 16, scheme="rk4", return_path=True),
                               expected, rtol=0, atol=1e-6)


def test_odeint_rk4_is_not_classical_rk4_on_nonlinear_field():
    """Guards the mapping above: if torchdiffeq's rk4 changes, this test says so."""
    u0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    expected = _odeint_path(forced_pendulum, u0, 2, "rk4", t1=2.0)
    ours = solvers.integrate(forced_pendulum, u0, 2, scheme="rk4", t1=2.0, return_path=True)
    assert (ours - expected).abs().max() > 1e-6


def test_gradients_match_odeint():
    f = _mlp_field()
    u0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64, requires_grad=True)
    (g_ours,) = torch.autograd.grad(solvers.integrate(f, u0, 8, scheme="midpoint").pow(2).sum(), u0)
    (g_ref,) = torch.autograd.grad(_odeint_path(f, u0, 8, "midpoint")[-1].pow(2).sum(), u0)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-6)
