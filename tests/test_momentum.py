"""Momentum flows (odenets.momentum, solvers.damped_leapfrog): u'' + gamma u' = f(u) as (u, v).

Reference problem: u'' + 0.5 u' + u = 0, u(0) = 1, u'(0) = 0 (f(u) = -u, gamma = 1/2), with
u(t) = e^{-t/4} (cos w t + sin(w t) / (4 w)), w = sqrt(15) / 4.
"""
import copy
import math

import numpy as np
import pytest
import torch

import odenets
import solvers
from odenets.momentum import MomentumFlow, lm_momentum

T, GAMMA = 2.0, 0.5
W = math.sqrt(15) / 4


def exact(t):
    return math.exp(-t / 4) * (math.cos(W * t) + math.sin(W * t) / (4 * W))


class Spring(torch.nn.Module):
    """f(u) = -u."""

    def forward(self, u):
        return -u


class MLP(torch.nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.Tanh())

    def forward(self, u):
        return self.net(u)


def _endpoint(solver, steps, **kw):
    flow = odenets.build(Spring(), solver, steps, tied=True, t_span=(0.0, T), momentum=True,
                         damping=GAMMA, **kw)
    with torch.no_grad():
        return float(flow(torch.ones(1, dtype=torch.float64)))


@pytest.mark.parametrize("solver,order", [("euler", 1), ("midpoint", 2), ("rk4", 4),
                                          ("leapfrog", 2), ("damped_leapfrog", 2)])
def test_fixed_grid_momentum_flows_converge_at_their_order(solver, order):
    steps = [16, 32, 64, 128]
    errors = [abs(_endpoint(solver, n) - exact(T)) for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.25, (solver, slope, errors)
    assert errors[-1] < 1e-2


@pytest.mark.parametrize("adjoint", [False, True])
def test_dopri5_momentum_flow_matches_the_exact_solution(adjoint):
    flow = odenets.build(Spring(), "dopri5", momentum=True, damping=None, t_span=(0.0, T),
                         rtol=1e-9, atol=1e-11, adjoint=adjoint)
    flow.flow.func.field.damping.raw.data.fill_(math.log(math.expm1(GAMMA)))  # gamma = 0.5
    u = flow(torch.ones(1, dtype=torch.float64))
    assert abs(u.item() - exact(T)) < 1e-7
    assert flow.nfe["forward"] > 10 and flow.nfe["backward"] == 0
    u.sum().backward()
    raw = flow.flow.func.field.damping.raw
    assert raw.grad is not None and float(raw.grad) != 0.0
    assert (flow.nfe["backward"] > 0) == adjoint  # the adjoint solve evaluates f again
    # d u(T) / d gamma by central differences of the exact solution of u'' + g u' + u = 0
    def u_T(g):
        w = math.sqrt(1 - g * g / 4)
        return math.exp(-g * T / 2) * (math.cos(w * T) + g / (2 * w) * math.sin(w * T))
    dgamma = (u_T(GAMMA + 1e-6) - u_T(GAMMA - 1e-6)) / 2e-6
    sigmoid = 1 / (1 + math.exp(-float(raw)))  # d softplus / d raw
    assert abs(float(raw.grad) - dgamma * sigmoid) < 1e-5


@pytest.mark.parametrize("name", solvers.available())
def test_momentum_runs_with_every_fixed_grid_scheme(name):
    torch.manual_seed(0)
    opts = {"backward_euler": dict(iterations=2)}.get(name, {})
    flow = odenets.build(MLP(), name, 3, momentum=True, damping=None, **opts)
    assert isinstance(flow, MomentumFlow)
    x = torch.randn(5, 3, requires_grad=True)
    out = flow(x)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad is not None
    gammas = [m.damping.raw for m in flow.flow.blocks]
    assert len(gammas) == 3 and all(g.grad is not None for g in gammas)  # one per step, untied
    assert flow.damping().shape == (3,)


def test_learnable_damping_stays_nonnegative_and_trains():
    torch.manual_seed(0)
    flow = odenets.build(MLP(), "rk4", 4, tied=True, momentum=True, damping=None)
    assert flow.damping().shape == (1,) and float(flow.damping()) == pytest.approx(0.5)
    raw = flow.flow.blocks[0].damping.raw
    opt = torch.optim.SGD([raw], lr=1e3)
    x = torch.randn(8, 3)
    for _ in range(3):  # a huge step pushes raw far negative: gamma stays >= 0
        opt.zero_grad()
        flow(x).sum().backward()
        raw.grad.fill_(1.0)
        opt.step()
    assert float(raw) < -1000 and float(flow.damping()) >= 0.0


def test_initial_velocity_times_and_return_velocity():
    """u'' = -u, u(0) = 1, u'(0) = 2: u = cos t + 2 sin t, v = -sin t + 2 cos t."""
    flow = odenets.build(Spring(), "rk4", 200, tied=True, t_span=(0.0, 1.0), momentum=True)
    u0, v0 = torch.ones(1, dtype=torch.float64), torch.full((1,), 2.0, dtype=torch.float64)
    u, v = flow(u0, v0=v0, return_velocity=True)
    assert abs(float(u) - (math.cos(1) + 2 * math.sin(1))) < 1e-9
    assert abs(float(v) - (-math.sin(1) + 2 * math.cos(1))) < 1e-9
    ode = odenets.build(Spring(), "dopri5", momentum=True, t_span=(0.0, 1.0), rtol=1e-9, atol=1e-11)
    path = ode(torch.ones(4, 2, dtype=torch.float64), torch.tensor([0.0, 0.5, 1.0]))
    assert path.shape == (3, 4, 2)
    torch.testing.assert_close(path[:, 0, 0], torch.cos(torch.tensor([0.0, 0.5, 1.0],
                                                                     dtype=torch.float64)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(damping=-1.0), "damping must be a float >= 0"),
    (dict(momentum=False, damping=0.3), "pass momentum=True"),
    (dict(activation="relu"), "activation"),
    (dict(solver="leapfrog", variant="revnet"), "variant='verlet'"),
])
def test_momentum_errors(kwargs, match):
    kwargs = {"momentum": True, "solver": "euler", **kwargs}
    with pytest.raises(ValueError, match=match):
        odenets.build(MLP(), steps=2, **kwargs)


# -- damped leapfrog: exact inverse, memory-saving backward ---------------------------------------
def _leapfrog_flow(memory_efficient, steps=6):
    torch.manual_seed(0)
    return odenets.build(MLP().double(), "leapfrog", steps, momentum=True, damping=None,
                         memory_efficient=memory_efficient, t_span=(0.0, 3.0))


def test_damped_leapfrog_inverse_reconstructs_the_input():
    scheme = solvers.get("damped_leapfrog")
    fields = [(lambda t, y, G=m.field: G(y), lambda t, z, c=m.damping: c(z))  # f(t, .) adapters
              for m in _leapfrog_flow(True).flow.blocks]
    z0 = torch.randn(4, 6, dtype=torch.float64)
    z = z0
    with torch.no_grad():
        for n, f in enumerate(fields):
            z, _ = scheme.step(f, 0.5 * n, 0.5, z, None)
        assert (z - z0).abs().max() > 0.1
        for n in reversed(range(len(fields))):
            z = scheme.inverse(fields[n], 0.5 * n, 0.5, z)
    torch.testing.assert_close(z, z0, rtol=0, atol=1e-12)


def test_damped_leapfrog_memory_saving_backward_matches_autograd():
    efficient = _leapfrog_flow(True)
    plain = copy.deepcopy(efficient)
    plain.flow.scheme.memory_efficient = False
    x = torch.randn(5, 3, dtype=torch.float64)
    weight = torch.randn(5, 3, dtype=torch.float64)
    outs, grads = [], []
    for flow in (efficient, plain):
        xi = x.clone().requires_grad_()
        out = flow(xi)
        (out * weight).sum().backward()
        outs.append(out.detach())
        grads.append([xi.grad] + [p.grad for p in flow.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-12)
    assert all(g is not None for g in grads[0]) and len(grads[0]) == 1 + 6 * 3  # W, b, raw gamma
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def _count_saved(memory_efficient, steps):
    count = [0]

    def pack(t):
        count[0] += 1
        return t
    flow = _leapfrog_flow(memory_efficient, steps).float()
    x = torch.randn(8, 3, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = flow(x)
    out.sum().backward()
    return count[0]


def test_damped_leapfrog_stores_no_per_step_activations():
    efficient = [_count_saved(True, n) for n in (2, 8, 32)]
    plain = [_count_saved(False, n) for n in (2, 8, 32)]
    assert efficient[0] == efficient[1] == efficient[2], efficient
    assert plain[0] < plain[1] < plain[2], plain


# -- the link to LM: its modified equation, and the momentum flow it maps to ---------------------
LAMBDA = -1.0  # f(u) = LAMBDA u


def _slow_root(k, dt):
    """The slow root r of C2 dt r^2 + C1 r - LAMBDA = 0: the modified equation
    C1 u' + C2 dt u'' = LAMBDA u (C1 = 1 + k, C2 = (1 - k) / 2) has the slow solution e^{r t}."""
    from odenets.analysis.modified_equation import lm_modified_equation
    c = lm_modified_equation(k)
    c1, c2 = float(c["damping"]), float(c["momentum"])
    return 2 * LAMBDA / (c1 + math.sqrt(c1 * c1 + 4 * c2 * dt * LAMBDA))


def _lm_endpoint(k, steps, t1=1.0):
    """A fixed-k LM unroll u_{n+1} = (1 - k) u_n + k u_{n-1} + dt LAMBDA u_n, started on the
    modified equation's slow solution (u_{-1} = e^{-r dt}, u_0 = 1)."""
    dt = t1 / steps
    r = _slow_root(k, dt)
    u0 = torch.ones(1, dtype=torch.float64)
    scheme = solvers.get("lm", k=k)
    u, _ = scheme.solve([lambda t, u: LAMBDA * u] * steps, u0, 0.0, dt,
                        state=(u0 * math.exp(-r * dt),))
    return float(u), r


@pytest.mark.parametrize("k", [0.3, -0.3, 0.6])
def test_lm_tracks_its_modified_equation_to_second_order(k):
    """The modified equation is the O(dt^2)-accurate description (error slope 2), the plain
    ODE (1 + k) u' = f only O(dt) (slope 1)."""
    steps = [16, 32, 64, 128]
    modified, first_order = [], []
    for n in steps:
        u, r = _lm_endpoint(k, n)
        modified.append(abs(u - math.exp(r)))
        first_order.append(abs(u - math.exp(LAMBDA / (1 + k))))
    slope = lambda e: -np.polyfit(np.log(steps), np.log(e), 1)[0]  # noqa: E731
    assert abs(slope(modified) - 2) < 0.2, modified
    assert abs(slope(first_order) - 1) < 0.2, first_order
    assert all(m < f for m, f in zip(modified, first_order))


def test_lm_maps_to_a_momentum_flow():
    """gamma = 2 (1 + k) / ((1 - k) dt), force scale 2 / ((1 - k) dt): the momentum flow started
    on the slow solution (v0 = r u0) follows e^{r t}, and LM tracks it to O(dt^2)."""
    k, steps = 0.3, 32
    dt = 1.0 / steps
    m = lm_momentum(k, dt)
    from odenets.analysis.modified_equation import lm_modified_equation
    c = lm_modified_equation(k)
    assert float(m["gamma"]) == pytest.approx(float(c["damping"] / (c["momentum"] * dt)))
    scale = float(m["scale"])

    class Scaled(torch.nn.Module):
        def forward(self, u):
            return scale * LAMBDA * u
    flow = odenets.build(Scaled(), "dopri5", momentum=True, damping=float(m["gamma"]),
                         rtol=1e-10, atol=1e-12)
    lm_u, r = _lm_endpoint(k, steps)
    u0 = torch.ones(1, dtype=torch.float64)
    with torch.no_grad():
        u1 = float(flow(u0, v0=r * u0))
    assert abs(u1 - math.exp(r)) < 1e-8
    assert abs(lm_u - u1) < 0.05 * dt ** 2 * 100  # O(dt^2) with a modest constant
    with pytest.raises(ValueError, match=r"\(-1, 1\)"):
        lm_momentum(1.0)


@pytest.mark.parametrize("batch_split", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_field_without_graph_equals_the_graph_one(batch_split, channels_last):
    """(v, f(u) - gamma v) written into its halves under no_grad is the concatenation computed
    with a graph, bit for bit, in the same memory format."""
    from odenets.momentum import MomentumField
    torch.manual_seed(0)
    field = MomentumField(torch.nn.Conv2d(3, 3, 3, padding=1), damping=None)
    z = torch.randn(4, 3, 5, 5) if batch_split else torch.randn(2, 6, 5, 5)  # (u, v) halves
    if batch_split:
        field.batch_split = True
    if channels_last:
        field, z = field.to(memory_format=torch.channels_last), \
            z.contiguous(memory_format=torch.channels_last)
    with_graph = field(torch.tensor(0.0), z)
    with torch.no_grad():
        without = field(torch.tensor(0.0), z)
    assert with_graph.requires_grad and not without.requires_grad
    assert torch.equal(without, with_graph.detach()) and without.stride() == with_graph.stride()
