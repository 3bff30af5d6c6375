"""Seeded noise under ``torch.compile``: each draw is one opaque op (``solvers::draw``) that calls
the same generator, so the graph does not break at draws, the compiled solve draws exactly what
eager mode draws (same order, same stream, same state afterwards, checkpointable), and the
Euler-Maruyama increments stay N(0, sigma^2 dt), independent across elements and steps."""
import copy
import math

import pytest
import torch
from torch import nn

import odenets
import solvers

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not torch._dynamo.is_dynamo_supported(), reason="no torch.compile")]


def _flow(noise, **options):
    torch.manual_seed(0)
    field = (lambda: odenets.fields.TwoBranch(nn.Linear(6, 6), nn.Linear(6, 6))) if noise == "shake" \
        else (lambda: nn.Sequential(nn.Linear(6, 6), nn.Tanh()))
    return odenets.build(field, "euler_maruyama", steps=3, noise=noise, seed=5, **options)


@pytest.mark.parametrize("noise", ["gaussian", "bernoulli", "shake"])
def test_seeded_draws_do_not_break_the_graph(noise):
    torch._dynamo.reset()
    flow = _flow(noise, **({"sigma": 0.3} if noise == "gaussian" else {}))
    explained = torch._dynamo.explain(flow)(torch.randn(4, 6))
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]


@pytest.mark.parametrize("noise", ["gaussian", "bernoulli", "shake"])
def test_compiled_solve_draws_what_eager_draws(noise):
    """Two training steps (forward and backward) compiled (aot_eager: functionalisation and the
    joint graph, as inductor sees them) against eager, from the same seed: equal outputs and
    gradients, and the noise generators end in the same state."""
    torch._dynamo.reset()
    options = {"sigma": 0.3} if noise == "gaussian" else {}
    eager, compiled = _flow(noise, **options), _flow(noise, **options)
    run = torch.compile(compiled, backend="aot_eager", fullgraph=True)
    x = torch.randn(4, 6)
    for _ in range(2):
        a, b = eager(x), run(x)
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
        a.square().sum().backward(), b.square().sum().backward()
    for p, q in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6)
    assert torch.equal(eager.scheme.noise_source.state_dict()["cpu"],
                       compiled.scheme.noise_source.state_dict()["cpu"])


def test_compiled_gaussian_increments_are_independent_normal():
    """sigma dW_n drawn inside a compiled solve (drift 0): per step mean 0, variance
    sigma^2 dt, kurtosis 3; uncorrelated across steps and neighbouring elements; distinct
    draws in every step (the compiler neither merges nor reorders them)."""
    torch._dynamo.reset()
    sigma, dt, steps = 0.7, 0.125, 4
    scheme = solvers.get("euler_maruyama", sigma=sigma, seed=1)
    zero = [lambda t, u: torch.zeros_like(u)] * steps
    path = torch.compile(lambda u: scheme.solve(zero, u, dt=dt, return_path=True)[0],
                         backend="aot_eager", fullgraph=True)(torch.zeros(64, 8, 16, 16))
    dW = (path[1:] - path[:-1]).double().reshape(steps, -1)
    var, n = sigma ** 2 * dt, dW.shape[1]
    se = math.sqrt(2 * var ** 2 / n)  # standard error of the sample variance
    for x in dW:
        assert abs(float(x.mean())) < 6 * math.sqrt(var / n)
        assert abs(float(x.var()) - var) < 6 * se
        assert abs(float((x ** 4).mean()) / float(x.var()) ** 2 - 3) < 0.1
    z = (dW / math.sqrt(var)).float()
    bound = 6 / math.sqrt(n)
    assert (torch.corrcoef(z) - torch.eye(steps)).abs().max() < bound
    assert abs(float((z[:, 1:] * z[:, :-1]).mean())) < bound
    eager = solvers.get("euler_maruyama", sigma=sigma, seed=1).solve(
        zero, torch.zeros(64, 8, 16, 16), dt=dt, return_path=True)[0]
    torch.testing.assert_close(path, eager, rtol=0, atol=0)  # the same stream as eager


def test_copies_draw_from_their_own_generator():
    """A deep copy (e.g. an EMA model) continues its own copy of the stream when compiled."""
    torch._dynamo.reset()
    flow, x = _flow("gaussian", sigma=0.3), torch.randn(4, 6)
    flow(x)  # its generator exists (made at the first draw) and is copied with it
    twin = copy.deepcopy(flow)
    assert twin.scheme.noise_source._id != flow.scheme.noise_source._id
    before = flow.scheme.noise_source.state_dict()["cpu"].clone()
    torch.compile(twin, backend="aot_eager", fullgraph=True)(x)
    assert torch.equal(flow.scheme.noise_source.state_dict()["cpu"], before)
    assert not torch.equal(twin.scheme.noise_source.state_dict()["cpu"], before)
