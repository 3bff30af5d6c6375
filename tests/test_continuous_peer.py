"""Continuous flows as torchdiffeq users drive them: seminorm adjoints, compiled flows."""
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
