"""torchdiffeq/torchsde habits: ``t`` reaches every field as a 0-dim tensor on u's device and
dtype, and fields written ``forward(self, t, y)`` or as plain functions f(t, u) build unflagged."""
import pytest
import torch
from torch import nn

import odenets
import solvers
from odenets.fields import Coupled, TwoBranch


def tensor_time_field(seen):
    """An ode_demo-style field: fails unless t is a 0-dim tensor like u."""
    def f(t, u):
        assert torch.is_tensor(t) and t.dim() == 0, f"t is {type(t).__name__}"
        assert t.dtype == u.dtype and t.device == u.device
        seen.append(float(t))
        return -u + 0.1 * torch.sin(t)
    return f


SCHEMES = [("euler", {}), ("backward_euler", {}), ("midpoint", {}), ("heun", {}), ("rk4", {}),
           ("rk4_38", {}), ("ab2", {}), ("lm", {}), ("lmm", {"history": 3}),
           ("euler_maruyama", {"seed": 0}), ("leapfrog", {}),
           ("leapfrog", {"variant": "revnet", "memory_efficient": False})]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,opts", SCHEMES)
def test_integrate_passes_tensor_time(name, opts, dtype):
    seen = []
    u0 = torch.ones(3, 4, dtype=dtype)
    out = solvers.integrate(tensor_time_field(seen), u0, 4, scheme=name, t0=0.5, t1=1.5, **opts)
    assert out.shape == u0.shape and seen
    assert min(seen) >= 0.5 - 1e-6 and max(seen) <= 1.5 + 1e-6
    assert (0.75 if name == "backward_euler" else 0.5) in seen  # a grid time, exactly


def test_solve_and_reversible_backward_pass_tensor_time():
    seen = []

    def f(t, u):  # separable, as leapfrog needs: the y-half depends on z only, the z-half on y
        assert torch.is_tensor(t) and t.dim() == 0, f"t is {type(t).__name__}"
        seen.append(float(t))
        y, z = u.chunk(2, 1)
        return torch.cat((z, -y), 1) + 0.1 * torch.sin(t)
    u0 = torch.ones(2, 4, requires_grad=True)
    out, _ = solvers.get("leapfrog").solve([f] * 3, u0, 0.0, 0.25, params=[])
    out.sum().backward()  # the memory-saving backward recomputes steps with tensor times
    assert u0.grad is not None and len(seen) > 9


def test_grid_times_are_exact_grid_points():
    seen = []
    solvers.integrate(tensor_time_field(seen), torch.ones(2, dtype=torch.float64), 8,
                      t0=-1.0, t1=1.0)
    assert seen == [-1.0 + 0.25 * n for n in range(8)]


class ODEFunc(nn.Module):
    """torchdiffeq's ode_demo field, unchanged: forward(self, t, y) and t.dim() / torch.sin(t)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))

    def forward(self, t, y):
        assert t.dim() == 0
        return self.net(y ** 3) + torch.sin(t)


BUILD = [("euler", {"steps": 4}), ("rk4", {"steps": 4, "tied": True}),
         ("backward_euler", {"steps": 2}), ("lm", {"steps": 4}), ("lmm", {"steps": 4, "history": 3}),
         ("ab2", {"steps": 3}), ("euler_maruyama", {"steps": 3, "seed": 1}),
         ("dopri5", {"rtol": 1e-3, "atol": 1e-4}), ("ode:rk4", {"steps": 4}),
         ("sde:euler", {"steps": 4, "seed": 0}), ("sde:milstein", {"steps": 4, "seed": 0})]


@pytest.mark.parametrize("solver,opts", BUILD)
def test_build_torchdiffeq_module_and_function(solver, opts):
    u0 = torch.randn(5, 2)
    for field in (ODEFunc(), lambda t, y: -y * torch.cos(t)):
        flow = odenets.build(field, solver, **opts)
        out = flow(u0)
        assert out.shape == u0.shape and torch.isfinite(out).all()
        if isinstance(field, nn.Module):
            out.sum().backward()


@pytest.mark.parametrize("solver", ["leapfrog", "euler_maruyama"])
def test_build_paired_time_aware_branches(solver):
    class Half(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, t, z):
            return torch.tanh(self.lin(z)) * torch.cos(t)

    pair = Coupled(Half(), Half()) if solver == "leapfrog" else TwoBranch(Half(), Half())
    opts = {} if solver == "leapfrog" else {"noise": "shake"}
    u0 = torch.randn(3, 4 if solver == "leapfrog" else 2)
    assert odenets.build(pair, solver, steps=2, tied=True, **opts)(u0).shape == u0.shape


def test_time_aware_attribute_overrides_the_signature():
    class Star(nn.Module):  # no readable signature: the attribute says f(t, u)
        time_aware = True

        def forward(self, *args):
            assert len(args) == 2 and torch.is_tensor(args[0])
            return -args[1]

    class TwoArgsNoTime(nn.Module):  # two required arguments, declared autonomous
        time_aware = False

        def forward(self, u, scale=None):
            return -u

    for field in (Star(), TwoArgsNoTime()):
        assert odenets.build(field, "rk4", steps=2, tied=True)(torch.ones(2, 3)).shape == (2, 3)
        assert odenets.build(field, "dopri5")(torch.ones(2, 3)).shape == (2, 3)
    f_u = odenets.build(lambda u: -u, "euler", steps=2, tied=True)  # autonomous f(u): (1 - 1/2)^2
    torch.testing.assert_close(f_u(torch.ones(3)), torch.full((3,), 0.25 * 1.0))


def test_build_rejects_functions_of_three_arguments():
    with pytest.raises(ValueError, match=r"f\(t, u\)"):
        odenets.build(lambda t, u, extra: u, "euler", steps=2)
