"""``torchode:<method>`` flows (optional extra): names, lazy import, the install hint, and, where
torchode is installed, agreement with torchdiffeq's dopri5, NFE, per-sample step control."""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures.fields import Clock, mlp
from torch import nn

import odenets
from odenets.continuous import build_continuous, continuous_solvers, is_continuous

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("dopri5", "heun", "tsit5")


class Decay(nn.Module):
    """f(u) = -a u with a fixed rate per row ``a``: u(t) = u0 exp(-a t)."""

    def __init__(self, rates):
        super().__init__()
        self.register_buffer("rates", torch.as_tensor(rates, dtype=torch.float64))

    def forward(self, u):
        return -self.rates.reshape(-1, *[1] * (u.dim() - 1)) * u


# -- without torchode --------------------------------------------------------------------------------
def test_torchode_names_are_listed_and_resolved():
    names = continuous_solvers()
    assert [n for n in names if n.startswith("torchode:")] == [f"torchode:{m}" for m in METHODS]
    assert all(is_continuous(f"torchode:{m}") for m in METHODS)
    assert not is_continuous("torchode:euler") and not is_continuous("torchode:")
    assert set(names) <= set(odenets.available_solvers())
    with pytest.raises(ValueError, match="did you mean 'torchode:tsit5'"):
        build_continuous(nn.Tanh(), "torchode:tsit4")


def test_import_odenets_does_not_import_torchode():
    code = ("import sys, torch, odenets\n"
            "odenets.available_solvers()\n"
            "odenets.build(torch.nn.Tanh(), solver='rk4', steps=2)(torch.ones(2, 3))\n"
            "odenets.create('resnet20')\n"
            "assert odenets.__file__.startswith(sys.argv[1]), odenets.__file__\n"
            "print('torchode' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_missing_torchode_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchode", None)  # makes `import torchode` fail
    with pytest.raises(ImportError, match=r"pip install odenets\[torchode\]"):
        odenets.build(nn.Tanh(), solver="torchode:dopri5")


# -- with torchode -----------------------------------------------------------------------------------
@pytest.fixture
def torchode():
    return pytest.importorskip("torchode")


@pytest.mark.parametrize("method,rtol,agree", [("dopri5", 1e-9, 1e-7), ("tsit5", 1e-9, 1e-7),
                                               ("heun", 1e-6, 5e-6)])  # heun is 2nd order: ~1000 calls
def test_agrees_with_torchdiffeq_dopri5(torchode, method, rtol, agree):
    field = mlp()
    tol = dict(rtol=rtol, atol=rtol / 100)
    ours, ref = build_continuous(field, f"torchode:{method}", **tol), build_continuous(field, "dopri5", **tol)
    u0 = torch.randn(5, 3, dtype=torch.float64)
    a, b = ours(u0), ref(u0)
    assert a.shape == u0.shape and torch.allclose(a, b, atol=agree)   # measured: 1.8e-9, 1.8e-9, 3.9e-7
    (ga,) = torch.autograd.grad(a.square().sum(), field[0].weight)
    (gb,) = torch.autograd.grad(b.square().sum(), field[0].weight)
    assert torch.allclose(ga, gb, atol=10 * agree)
    times = torch.tensor([0.0, 0.3, 0.7, 1.0])
    path = ours(u0, times)
    assert path.shape == (4, 5, 3) and torch.allclose(path, ref(u0, times), atol=10 * agree)
    assert torch.equal(path[0], u0)


def test_exact_solution_backwards_in_time_and_image_states(torchode):
    flow = build_continuous(Decay([1.0, 2.0]), "torchode:dopri5", t_span=(1.0, 0.0), rtol=1e-9, atol=1e-11)
    u0 = torch.ones(2, 3, 4, 4, dtype=torch.float64)
    exact = u0 * torch.tensor([math.e, math.e ** 2], dtype=torch.float64).reshape(2, 1, 1, 1)
    assert torch.allclose(flow(u0), exact, rtol=1e-7)
    path = flow(u0, torch.tensor([1.0, 0.5, 0.0]))
    assert path.shape == (3, 2, 3, 4, 4) and torch.allclose(path[-1], exact, rtol=1e-7)


@pytest.mark.parametrize("method,evals_per_step", [("dopri5", 6), ("tsit5", 6), ("heun", 2)])
def test_nfe_counts_batched_calls_as_torchode_does(torchode, method, evals_per_step):
    flow = build_continuous(mlp(), f"torchode:{method}", rtol=1e-4, atol=1e-5)
    out = flow(torch.randn(4, 3, dtype=torch.float64))
    out.sum().backward()
    stats = flow.stats
    assert stats["n_f_evals"].tolist() == [flow.nfe["forward"]] * 4  # every call counts for every row
    # 2 evaluations choose the first step; then the method's cost per step, until the slowest row ends
    assert flow.nfe == {"forward": 2 + evals_per_step * int(stats["n_steps"].max()), "backward": 0}
    flow.reset_nfe()
    assert flow.nfe == {"forward": 0, "backward": 0}


def test_each_sample_gets_its_own_steps(torchode):
    u0 = torch.ones(2, 3, dtype=torch.float64)
    flow = build_continuous(Decay([0.1, 30.0]), "torchode:dopri5", rtol=1e-6, atol=1e-8)
    flow(u0)
    slow, fast = flow.stats["n_steps"].tolist()
    assert slow < fast                                     # the stiff row alone takes small steps
    joint = build_continuous(Decay([0.1, 30.0]), "torchode:dopri5", rtol=1e-6, atol=1e-8,
                             per_sample=False)
    assert torch.allclose(joint(u0), flow(u0), atol=1e-6)
    (steps,) = joint.stats["n_steps"].tolist()               # one row, one clock for the batch
    assert steps > slow


@pytest.mark.parametrize("per_sample", [True, False])
def test_time_aware_field(torchode, per_sample):
    flow = build_continuous(Clock(), "torchode:tsit5", per_sample=per_sample)
    assert torch.allclose(flow(torch.zeros(3, 2, 5)), torch.full((3, 2, 5), 0.5), atol=1e-5)
    assert torch.allclose(flow(torch.zeros(2)), torch.full((2,), 0.5), atol=1e-5)


def test_bad_options_raise(torchode):
    with pytest.raises(ValueError, match="steps=4 applies to fixed-grid"):
        build_continuous(nn.Tanh(), "torchode:dopri5", steps=4)
    with pytest.raises(ValueError, match="adjoint=True is not supported"):
        build_continuous(nn.Tanh(), "torchode:dopri5", adjoint=True)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['step_t'\]"):
        build_continuous(nn.Tanh(), "torchode:dopri5", step_t=[0.5])
    with pytest.raises(ValueError, match="rtol must be"):
        build_continuous(nn.Tanh(), "torchode:dopri5", rtol=-1)
    with pytest.raises(ValueError, match="safety must lie"):
        build_continuous(nn.Tanh(), "torchode:dopri5", safety=2.0)
    with pytest.raises(ValueError, match="times must hold"):
        build_continuous(nn.Tanh(), "torchode:dopri5")(torch.ones(2, 3), times=[0.0, 1.0, 0.5])


def test_options_reach_the_solver(torchode):
    flow = build_continuous(mlp(), "torchode:dopri5", rtol=1e-9, atol=1e-10, max_num_steps=3)
    with pytest.raises(RuntimeError, match="REACHED_MAX_STEPS"):
        flow(torch.randn(2, 3, dtype=torch.float64))
    capped = build_continuous(mlp(), "torchode:dopri5", max_step=0.05, first_step=0.01)
    capped(torch.randn(2, 3, dtype=torch.float64))
    assert int(capped.stats["n_steps"].min()) >= 20         # at most 0.05 per step on [0, 1]


def test_in_a_network(torchode):
    torch.manual_seed(0)
    model = odenets.create("preact_resnet20", solver="torchode:tsit5",
                           solver_options=dict(rtol=1e-3, atol=1e-4))
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    assert odenets.continuous.total_nfe(model)["forward"] > 0
