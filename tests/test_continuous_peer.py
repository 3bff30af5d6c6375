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
