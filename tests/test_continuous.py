"""Continuous depth: torchdiffeq / torchsde flows built by `odenets.continuous`, and NFE counts."""
import math

import pytest
import torch
import torchsde
from fixtures.fields import Clock, mlp
from torch import nn

import solvers
from odenets.continuous import build_continuous, continuous_solvers, is_continuous, reset_nfe, total_nfe
from odenets.continuous.ode import TORCHDIFFEQ_SOLVERS, is_fixed_grid

ODE_NAMES = [n for n in continuous_solvers() if not n.startswith(("sde:", "torchode:"))]  # torchode:
# (optional) has its own tests, tests/test_continuous_torchode.py
SDE_NAMES = [n for n in continuous_solvers() if n.startswith("sde:")]


class Linear(nn.Module):
    """f(u) = a u with a learnable scalar a: u(t) = u0 exp(a t), du(1)/da = u0 exp(a)."""

    def __init__(self, a=-1.0):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a), dtype=torch.float64))

    def forward(self, u):
        return self.a * u


def method_of(name):
    return name[4:] if name.startswith("ode:") else name


# -- names -----------------------------------------------------------------------------------------
def test_names_are_continuous_and_do_not_shadow_schemes():
    names = continuous_solvers()
    assert "dopri5" in names and "ode:rk4" in names and "sde:euler" in names
    assert not set(names) & set(solvers.available())
    assert all(is_continuous(n) for n in names)
    assert not any(is_continuous(n) for n in solvers.available())  # euler, rk4... stay unrolled
    assert is_continuous("ode:dopri5") and not is_continuous("sde:nope") and not is_continuous(3)


# -- ODE flows ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ODE_NAMES)
def test_ode_flow_solves_linear_ode_and_its_gradient(name):
    field = Linear(-1.0)
    fixed = is_fixed_grid(method_of(name))
    opts = dict(steps=64) if fixed else dict(rtol=1e-8, atol=1e-10)
    if name == "scipy_solver":
        opts["adjoint"] = True  # scipy has no autograd graph; gradients come from the adjoint
    flow = build_continuous(field, name, **opts)
    u0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    u1 = flow(u0)
    exact = u0 * math.exp(-1.0)
    tol = 1e-2 if fixed else 1e-5  # forward Euler with 64 steps is the loosest
    assert torch.allclose(u1, exact, atol=tol)
    u1.sum().backward()
    assert field.a.grad.item() == pytest.approx(float(u0.sum()) * math.exp(-1.0), abs=2 * tol)
    assert flow.nfe["forward"] > 0


@pytest.mark.parametrize("name,stages", [("ode:euler", 1), ("ode:midpoint", 2), ("heun3", 3), ("ode:rk4", 4)])
@pytest.mark.parametrize("steps", [7, 61])
def test_fixed_grid_takes_exactly_steps(name, stages, steps):
    flow = build_continuous(nn.Tanh(), name, steps=steps)
    flow(torch.ones(3))
    assert flow.nfe == {"forward": steps * stages, "backward": 0}
    flow.reset_nfe()
    assert flow.nfe == {"forward": 0, "backward": 0}


def test_rk4_flow_is_fourth_order_accurate():
    flow = build_continuous(Linear(-1.0), "ode:rk4", steps=16)
    err = (flow(torch.ones(1, dtype=torch.float64)) - math.exp(-1)).abs().item()
    assert err < 1e-6


def test_time_aware_field_and_backward_time():
    u0 = torch.zeros(2, dtype=torch.float64)
    assert torch.allclose(build_continuous(Clock(), "dopri5")(u0), u0 + 0.5, atol=1e-6)
    # integrating from t=1 back to t=0 undoes the forward flow
    fwd = build_continuous(mlp(), "dopri5", rtol=1e-9, atol=1e-10)
    back = build_continuous(fwd.func.field, "dopri5", t_span=(1.0, 0.0), rtol=1e-9, atol=1e-10)
    x = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(back(fwd(x)), x, atol=1e-6)


def test_nfe_forward_backward_direct_and_adjoint():
    x = torch.randn(4, 3, dtype=torch.float64)
    field = mlp()
    direct = build_continuous(field, "dopri5", rtol=1e-7, atol=1e-9, count_vjp=True)
    direct(x).square().sum().backward()
    grad_direct = [p.grad.clone() for p in field.parameters()]
    assert direct.nfe["backward"] == 0  # backprop reuses the stored forward evaluations
    # every stored evaluation on the path to u(t1) is backpropagated once (dopri5's step-size
    # probes are not on that path)
    assert 0 < direct.nfe["vjp"] <= direct.nfe["forward"]
    rk4 = build_continuous(field, "ode:rk4", steps=5, count_vjp=True)
    rk4(x).sum().backward()
    assert rk4.nfe == {"forward": 20, "backward": 0, "vjp": 20}

    field.zero_grad()
    adjoint = build_continuous(field, "dopri5", rtol=1e-7, atol=1e-9, adjoint=True, count_vjp=True)
    adjoint(x).square().sum().backward()
    assert adjoint.nfe["forward"] > 0 and adjoint.nfe["backward"] > 0  # the adjoint solve
    assert adjoint.nfe["vjp"] == adjoint.nfe["backward"]
    for g, p in zip(grad_direct, field.parameters()):
        assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-6)
    before = dict(adjoint.nfe)
    with torch.no_grad():
        adjoint(x)  # a later forward counts as forward again
    assert adjoint.nfe["forward"] > before["forward"] and adjoint.nfe["backward"] == before["backward"]


def test_trajectory_times_and_total_nfe_over_a_network():
    flow = build_continuous(Linear(-1.0), "dopri5", rtol=1e-9, atol=1e-10)
    times = [0.0, 0.25, 0.5, 1.0]
    path = flow(torch.ones(2, dtype=torch.float64), times=times)
    assert path.shape == (4, 2)
    assert torch.allclose(path[:, 0], torch.exp(-torch.tensor(times, dtype=torch.float64)), atol=1e-7)
    as_tensor = flow(torch.ones(2, dtype=torch.float64), times=torch.tensor(times))
    assert torch.equal(as_tensor, path)
    for bad in ([1.0, 0.5, 0.7], [0.0], "ab", [0.0, float("nan")]):
        with pytest.raises(ValueError, match="times must"):
            flow(torch.ones(2, dtype=torch.float64), times=bad)
    net = nn.Sequential(flow, build_continuous(nn.Tanh(), "ode:euler", steps=3))
    net(torch.ones(2, dtype=torch.float64))
    assert total_nfe(net)["forward"] == flow.nfe["forward"] + 3
    reset_nfe(net)
    assert total_nfe(net) == {"forward": 0, "backward": 0}


def test_adaptive_nfe_grows_with_tolerance():
    x = torch.randn(4, 3, dtype=torch.float64)
    counts = []
    for tol in (1e-3, 1e-9):
        flow = build_continuous(mlp(), "dopri5", rtol=tol, atol=tol)
        with torch.no_grad():
            flow(x)
        counts.append(flow.nfe["forward"])
    assert counts[1] > counts[0]


def test_image_state_keeps_shape_and_fixed_adjoint_method():
    field = nn.Conv2d(2, 2, 3, padding=1).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    flow = build_continuous(field, "bosh3", adjoint=True, adjoint_method="ode:rk4",
                            adjoint_options={"step_size": 0.1})
    out = flow(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert field.weight.grad is not None and flow.nfe["backward"] == 40  # 10 rk4 steps


def test_field_factory_is_called():
    flow = build_continuous(lambda: nn.Linear(3, 3), "dopri5")
    assert isinstance(flow.func.field, nn.Linear)


@pytest.mark.parametrize("kwargs,match", [
    (dict(solver="dopri5", tied=False), "tied must be True"),
    (dict(solver="dopri5", steps=4), "fixed-grid methods only"),
    (dict(solver="ode:rk4"), "needs steps"),
    (dict(solver="ode:rk4", steps=4, step_size=0.1), "not both"),
    (dict(solver="ode:rk4", steps=0), "steps must be an integer"),
    (dict(solver="dopri5", rtol=-1), "rtol"),
    (dict(solver="dopri5", safety=2.0), "safety"),
    (dict(solver="dopri5", max_num_steps=1.5), "max_num_steps"),
    (dict(solver="dopri5", grid_constructor=None), "grid_constructor"),
    (dict(solver="dopri5", bogus=1), r"unknown option.*allowed: t_span"),
    (dict(solver="scipy_solver", scipy_method="nope"), r"scipy_method must be one of \['BDF'"),
    (dict(solver="dopri5", adjoint_rtol=1e-3), "need adjoint=True"),
    (dict(solver="dopri5", adjoint=True, adjoint_method="nope"), "unknown adjoint_method"),
    (dict(solver="dopri5", adjoint="yes"), "adjoint must be True or False"),
    (dict(solver="dopri5", t_span=(1.0, 1.0)), "t_span"),
    (dict(solver="dopri6"), r"did you mean.*available"),
])
def test_bad_ode_options_raise_clear_errors(kwargs, match):
    solver = kwargs.pop("solver")
    with pytest.raises(ValueError, match=match):
        build_continuous(nn.Tanh(), solver, **kwargs)


@pytest.mark.filterwarnings("ignore:The following arguments have no effect")  # scipy's RK45
def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="floating-point"):
        build_continuous(nn.Tanh(), "dopri5")(torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="state's shape"):
        build_continuous(nn.Linear(3, 2), "ode:euler", steps=2)(torch.ones(3))
    with pytest.raises(ValueError, match="cannot backpropagate"):
        build_continuous(nn.Linear(3, 3), "scipy_solver")(torch.ones(3))
    with pytest.raises(ValueError, match="per-step fields"):
        build_continuous([nn.Tanh(), nn.Tanh()], "dopri5")
    with torch.no_grad():  # scipy without gradients is fine; its method is scipy_method
        out = build_continuous(Linear(-1.0), "scipy_solver", scipy_method="RK45", rtol=1e-8,
                               atol=1e-10)(torch.ones(3, dtype=torch.float64))
    assert torch.allclose(out, torch.full((3,), math.exp(-1.0), dtype=torch.float64), atol=1e-6)


def test_all_torchdiffeq_methods_are_reachable():
    reachable = {method_of(n) for n in ODE_NAMES} | {"fixed_adams"}
    assert reachable == set(TORCHDIFFEQ_SOLVERS)


# -- SDE flows ---------------------------------------------------------------------------------------
def brownian(shape, seed=3, levy="none"):
    return torchsde.BrownianInterval(0.0, 1.0, size=shape, dtype=torch.float64, entropy=seed,
                                     levy_area_approximation=levy)


@pytest.mark.parametrize("name", SDE_NAMES)
def test_sde_flow_on_image_states_train_and_eval(name):
    field = nn.Conv2d(2, 2, 3, padding=1).double()
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    flow = build_continuous(field, name, steps=3, sigma=0.2, diffusion="field", seed=0)
    out = flow(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    assert torch.isfinite(field.weight.grad).all() and flow.nfe["forward"] >= 3
    assert not torch.allclose(flow(x), out)  # a fresh Brownian path per call in train mode
    flow.eval()
    with torch.no_grad():
        a, b = flow(x), flow(x)
    assert torch.equal(a, b)  # eval: the noise is replaced by its mean (g = 0)


def test_sde_seed_makes_runs_reproducible():
    x = torch.randn(2, 3, dtype=torch.float64)
    runs = [build_continuous(mlp(), "sde:euler", steps=8, sigma=0.5, seed=11) for _ in range(2)]
    assert torch.equal(runs[0](x), runs[1](x))
    other = build_continuous(mlp(), "sde:euler", steps=8, sigma=0.5, seed=12)
    assert not torch.allclose(runs[0](x), other(x))
    for flow in (runs[0], other):  # the stream is a solvers.Noise, as for Euler-Maruyama
        flow.noise_source.manual_seed(11)
    assert torch.equal(runs[0](x), other(x))
    with pytest.raises(ValueError, match="seed"):
        build_continuous(mlp(), "sde:euler", steps=8, seed=-1)


@pytest.mark.parametrize("diffusion", ["additive", "field"])
def test_sde_euler_matches_the_solver_layers_euler_maruyama(diffusion):
    """torchsde's Euler and solvers' euler_maruyama agree when fed the same Brownian path."""
    field, x, steps, sigma = mlp(), torch.randn(4, 3, dtype=torch.float64), 10, 0.4
    bm = brownian((4, 3))
    flow = build_continuous(field, "sde:euler", steps=steps, sigma=sigma, diffusion=diffusion, bm=bm)
    with torch.no_grad():
        ours = flow(x)
        em = solvers.integrate(lambda t, u: field(u), x, steps, scheme="euler_maruyama",
                               sigma=sigma, diffusion=diffusion, bm=lambda a, b: bm(a, b))
    assert torch.allclose(ours, em, atol=1e-4)  # (torchsde's grid sits ~1e-9 off ours)
    assert not torch.allclose(ours, flow.eval()(x), atol=1e-2)  # and the noise mattered


@pytest.mark.parametrize("name", SDE_NAMES)
def test_sde_eval_is_the_same_method_without_noise(name):
    field, x = mlp(), torch.randn(4, 3, dtype=torch.float64)
    noisy = build_continuous(field, name, steps=6, sigma=0.5, diffusion="field", seed=0).eval()
    silent = build_continuous(field, name, steps=6, sigma=0.0, diffusion="field", seed=0)
    with torch.no_grad():
        assert torch.allclose(noisy(x), silent(x), atol=1e-10)
    assert noisy.nfe["forward"] >= 6


def test_sde_eval_is_the_drift_ode_on_the_same_grid():
    field, x = mlp(), torch.randn(4, 3, dtype=torch.float64)
    sde = build_continuous(field, "sde:euler", steps=6, sigma=1.0).eval()
    ode = build_continuous(field, "ode:euler", steps=6)
    with torch.no_grad():
        assert torch.allclose(sde(x), ode(x), atol=1e-12)


def test_sde_adaptive_steps():
    flow = build_continuous(mlp(), "sde:milstein", dt=0.1, adaptive=True, rtol=1e-2, atol=1e-2,
                            sigma=0.2, diffusion="field", seed=1)
    out = flow(torch.randn(3, 3, dtype=torch.float64))
    assert torch.isfinite(out).all() and flow.nfe["forward"] > 0


def test_sde_nfe_counts_steps():
    flow = build_continuous(nn.Tanh(), "sde:euler", steps=7, sigma=0.1, count_vjp=True)
    flow(torch.ones(2, 3, requires_grad=True)).sum().backward()
    assert flow.nfe == {"forward": 7, "backward": 0, "vjp": 7}
    plain = build_continuous(nn.Tanh(), "sde:euler", steps=7, sigma=0.1)
    plain(torch.ones(2, 3, requires_grad=True)).sum().backward()
    assert plain.nfe == {"forward": 7, "backward": 0}


def test_sde_reversible_heun_adjoint_matches_backprop():
    field, x = mlp(), torch.randn(5, 3, dtype=torch.float64)
    bm = brownian((5, 3))
    grads = []
    for adjoint in (False, True):
        flow = build_continuous(field, "sde:reversible_heun", steps=20, sigma=0.3, diffusion="field",
                                bm=bm, adjoint=adjoint)
        field.zero_grad()
        flow(x).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in field.parameters()]))
    assert flow.nfe["backward"] > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-4)


def test_sde_learned_diffusion_module_is_trained():
    g = nn.Linear(3, 3).double()
    flow = build_continuous(mlp(), "sde:milstein", steps=4, sigma=1.0, diffusion=g, seed=0)
    assert any(p is g.weight for p in flow.parameters())
    flow(torch.randn(2, 3, dtype=torch.float64)).sum().backward()
    assert g.weight.grad is not None and g.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(solver="sde:euler"), "needs steps"),
    (dict(solver="sde:euler", steps=4, sigma=-1), "sigma"),
    (dict(solver="sde:euler", steps=4, diffusion="x"), r"diffusion must be one of \['additive'"),
    (dict(solver="sde:euler", steps=4, t_span=(1.0, 0.0)), "t0 < t1"),
    (dict(solver="sde:srk", steps=4, adjoint=True), "adjoint works with"),
    (dict(solver="sde:euler", steps=4, sde_type="stratonovich"), r"sde_type must be one of \['ito'\]"),
    (dict(solver="sde:euler", steps=4, seed=1, bm=brownian((1, 2))), "not both"),
    (dict(solver="sde:euler", steps=4, bm=lambda a, b: 0), "Brownian motion"),
    (dict(solver="sde:euler", steps=4, noise="gaussian"), r"invalid option.*allowed"),
    (dict(solver="sde:nope", steps=4), "unknown continuous solver"),
])
def test_bad_sde_options_raise_clear_errors(kwargs, match):
    solver = kwargs.pop("solver")
    with pytest.raises(ValueError, match=match):
        build_continuous(nn.Tanh(), solver, **kwargs)


def test_sde_bm_of_wrong_shape_raises():
    flow = build_continuous(nn.Tanh(), "sde:euler", steps=2, bm=brownian((2, 5)))
    with pytest.raises(ValueError, match="bm has shape"):
        flow(torch.ones(2, 3, dtype=torch.float64))


# -- through odenets.build ---------------------------------------------------------------------------
def test_odenets_build_dispatches_continuous_solvers():
    odenets = pytest.importorskip("odenets")
    if not hasattr(odenets, "build"):
        pytest.skip("odenets.build is not there yet")
    assert set(continuous_solvers()) <= set(odenets.available_solvers())
    field = mlp()
    flow = odenets.build(field, solver="dopri5", t_span=(0.0, 1.0), adjoint=True, rtol=1e-6, atol=1e-8)
    out = flow(torch.randn(2, 3, dtype=torch.float64))
    out.sum().backward()
    assert flow.nfe["forward"] > 0 and flow.nfe["backward"] > 0
    sde = odenets.build(mlp(), solver="sde:heun", steps=3, sigma=0.1)
    assert sde(torch.randn(2, 3, dtype=torch.float64)).shape == (2, 3)
    with pytest.raises(ValueError, match="tied must be True"):
        odenets.build(mlp(), solver="dopri5", tied=False)
