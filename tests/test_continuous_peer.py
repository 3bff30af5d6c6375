"""Continuous flows as torchdiffeq users drive them: seminorm adjoints, compiled flows."""
import pytest
import torch

import odenets


def test_adjoint_seminorm_is_accepted_like_torchdiffeq():
    flow = odenets.build(torch.nn.Linear(3, 3), "dopri5", adjoint=True, rtol=1e-4, atol=1e-5,
                         adjoint_options={"norm": "seminorm"})
    x = torch.randn(2, 3, requires_grad=True)
    flow(x).sum().backward()
    assert x.grad is not None and flow.nfe["backward"] > 0


def test_compiled_flow_does_not_recompile_as_nfe_grows():
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    flow = odenets.build(torch.nn.Linear(2, 2), "dopri5", rtol=1e-3, atol=1e-3)
    compiled = torch.compile(flow, backend="eager")
    x = torch.randn(4, 2)
    compiled(x), compiled(x)
    graphs = counters["stats"]["unique_graphs"]
    for _ in range(3):
        compiled(x)
    assert counters["stats"]["unique_graphs"] == graphs
    assert flow.nfe["forward"] > 0 and isinstance(flow.nfe["forward"], int)
    flow.reset_nfe()
    assert flow.nfe == {"forward": 0, "backward": 0}


def test_tied_flow_at_times_matches_its_grid():
    torch.manual_seed(0)
    field = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    flow = odenets.build(field, "rk4", steps=8, tied=True)          # dt = 1/8 on [0, 1]
    u0 = torch.randn(3, 2)
    times = torch.tensor([0.0, 0.25, 0.5, 1.0])
    path = flow(u0, times)
    assert path.shape == (4, 3, 2)
    torch.testing.assert_close(path[0], u0)
    torch.testing.assert_close(path[-1], flow(u0), rtol=1e-6, atol=1e-6)
    back = flow(path[-1], times.flip(0))                             # backwards in time
    torch.testing.assert_close(back[-1], u0, rtol=1e-3, atol=1e-4)
    import pytest
    with pytest.raises(ValueError, match="tied"):
        odenets.build(field, "rk4", steps=2)(u0, times)
    with pytest.raises(ValueError, match="coefficients"):
        odenets.build(field, "lm", steps=2, tied=True)(u0, times)


def test_sde_flow_at_times():
    u0 = torch.randn(4, 3)
    make = lambda: odenets.build(torch.nn.Linear(3, 3), "sde:euler", steps=8, seed=5,  # noqa: E731
                                 sigma=0.3)
    torch.manual_seed(0)
    a = make()
    torch.manual_seed(0)
    b = make()
    path = b(u0, torch.tensor([0.0, 0.5, 1.0]))
    assert path.shape == (3, 4, 3)
    torch.testing.assert_close(path[-1], a(u0))
    torch.testing.assert_close(path[0], u0)
    b.eval()
    assert b(u0, [0.0, 0.25, 1.0]).shape == (3, 4, 3)


class _TimeConcat(torch.nn.Module):
    """A time-aware field as torchdiffeq/torchsde users write it: t joins the features."""

    def __init__(self, d=3):
        super().__init__()
        self.lin = torch.nn.Linear(d + 1, d)
        self.seen = []

    def forward(self, t, y):
        self.seen.append((t.dtype, tuple(t.shape)))
        return self.lin(torch.cat([y, t.expand(y.shape[0], 1)], -1))


def test_sde_flow_passes_t_in_the_states_dtype_in_training_and_eval():
    """Issue 25, defect 2: in training mode the sde: flow passed float64 t (the solve's clock),
    so torch.cat([y, t]) inside the field failed with a dtype mismatch."""
    field = _TimeConcat()
    flow = odenets.build(field, "sde:euler", steps=4, seed=0, tied=True)
    x = torch.randn(2, 3)
    for mode in (flow.train, flow.eval):
        mode()
        assert flow(x).dtype == torch.float32
    assert {dtype for dtype, _ in field.seen} == {torch.float32}


def test_torchode_flow_passes_t_as_torchode_does_and_takes_its_option_names():
    """Issue 25, defect 6: t reached a (batch, d) field as (batch, 1) where torchode passes
    (batch,), and torchode's own option names (dt0=, max_steps=) were refused."""
    import pytest
    pytest.importorskip("torchode")

    class TorchodeField(torch.nn.Module):  # torchode's convention: t (batch,), y (batch, d)
        def forward(self, t, y):
            return -y * t[:, None]

    flow = odenets.build(TorchodeField(), "torchode:dopri5", dt0=0.05, max_steps=500)
    x = torch.ones(3, 2)
    torch.testing.assert_close(flow(x), x * torch.exp(torch.tensor(-0.5)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="max_steps or max_num_steps"):
        odenets.build(TorchodeField(), "torchode:dopri5", max_steps=5, max_num_steps=5)


class _TorchsdeSDE(torch.nn.Module):
    sde_type = "ito"

    def __init__(self, noise_type, d=3, m=2):
        super().__init__()
        self.noise_type, self.m = noise_type, m
        self.drift = torch.nn.Linear(d, d)
        self.mix = torch.nn.Parameter(0.1 * torch.randn(d, m))

    def f(self, t, y):
        return torch.tanh(self.drift(y)) * torch.cos(t)

    def g(self, t, y):
        if self.noise_type == "diagonal":
            return 0.2 * torch.sigmoid(y)
        if self.noise_type == "scalar":
            return (0.2 * torch.cos(y)).unsqueeze(-1)
        if self.noise_type == "additive":
            return self.mix.expand(y.shape[0], -1, -1)
        return torch.tanh(y).unsqueeze(-1) * self.mix


@pytest.mark.parametrize("noise", ["diagonal", "scalar", "additive", "general"])
def test_sde_flow_takes_a_torchsde_sde_object(noise):
    """sde: flows solve a torchsde SDE object (f, g, noise_type, sde_type) as torchsde does:
    same numbers on the same Brownian motion, every noise type."""
    import torchsde
    torch.manual_seed(0)
    sde = _TorchsdeSDE(noise)
    m = {"diagonal": 3, "scalar": 1}.get(noise, 2)
    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(4, m), dtype=torch.float64, entropy=1)
    flow = odenets.build(sde, "sde:euler", steps=8, bm=bm).double()
    y0 = torch.randn(4, 3, dtype=torch.float64)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    theirs = torchsde.sdeint(sde, y0, ts, bm=bm, method="euler", dt=1 / 8)[-1]
    torch.testing.assert_close(flow(y0), theirs, rtol=0, atol=1e-10)
    assert flow.nfe["forward"] >= 8
    flow(y0).sum().backward()
    assert sde.drift.weight.grad is not None
    flow.eval()
    assert flow(y0).shape == (4, 3)
    with pytest.raises(ValueError, match="brings its own diffusion"):
        odenets.build(sde, "sde:euler", steps=8, sigma=0.5)


def test_a_learned_diffusion_is_not_scaled_by_the_default_sigma():
    class G(torch.nn.Module):
        def forward(self, u):
            return torch.ones_like(u)

    flow = odenets.build(torch.nn.Linear(3, 3), "sde:euler", steps=4, diffusion=G(), seed=0)
    assert flow.sigma == 1.0
    assert odenets.build(torch.nn.Linear(3, 3), "sde:euler", steps=4).sigma == 0.1


def test_nfe_is_settable_as_torchdiffeq_users_reset_it():
    """odenet_mnist's `block.nfe = 0` raised (property without setter)."""
    flow = odenets.build(torch.nn.Linear(2, 2), "dopri5", rtol=1e-3, atol=1e-3)
    flow(torch.randn(3, 2))
    assert flow.nfe["forward"] > 0
    flow.nfe = 0
    assert flow.nfe == {"forward": 0, "backward": 0}
    with pytest.raises(ValueError, match="nfe"):
        flow.nfe = 5
    fixed = odenets.build(torch.nn.Linear(2, 2), "rk4", steps=3, tied=True)
    fixed(torch.randn(3, 2)), fixed(torch.randn(3, 2))
    assert fixed.nfe == {"forward": 24, "backward": 0}
    fixed.nfe = 0
    assert fixed.nfe["forward"] == 0
