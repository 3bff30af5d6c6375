"""odenets.build: a field unrolled by a scheme equals the hand-written network."""
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import odenets
import solvers
from odenets import Flow, build
from odenets.fields import BasicField, Coupled, MLPField, TwoBranch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_euler_is_the_hand_written_residual_loop():
    flow = build(MLPField(4, 8), "euler", steps=5)
    x = torch.randn(3, 4)
    u = x
    for f in flow.fields:
        u = u + f(u)
    assert torch.equal(flow(x), u)
    assert len(flow.fields) == 5 and len({id(f) for f in flow.fields}) == 5


def test_post_activation_resnet_loop():
    flow = build(BasicField(4), "euler", steps=3, activation="relu")
    x = torch.randn(2, 4, 5, 5)
    u = x
    for f in flow.fields:
        u = torch.relu(u + f(u))
    assert torch.equal(flow(x), u)


def test_backward_euler_two_iterations_is_polynet():
    lin = nn.Linear(4, 4, bias=False)
    flow = build(lin, "backward_euler", steps=1, tied=True, t_span=(0.0, 1.0), iterations=2)
    x = torch.randn(3, 4)
    torch.testing.assert_close(flow(x), x + lin(x) + lin(lin(x)))


def test_untied_copies_are_fresh_and_tied_shares():
    template = nn.Linear(4, 4)
    untied = build(template, "euler", steps=3)
    weights = [f.weight for f in untied.fields]
    assert all(w is not template.weight for w in weights)
    assert not torch.equal(weights[0], weights[1])
    tied = build(template, "euler", steps=3, tied=True)
    assert all(f is template for f in tied.fields) and len(tied.fields) == 3
    assert sum(p.numel() for p in tied.parameters()) == 20
    assert tied.dt == pytest.approx(1 / 3) and untied.dt == 1.0


def test_factory_and_list_of_fields():
    made = []
    flow = build(lambda: made.append(nn.Linear(2, 2)) or made[-1], "euler", steps=4)
    assert flow.fields == made
    mods = [nn.Linear(2, 2) for _ in range(3)]
    assert build(mods, "rk4", steps=3).fields == mods
    with pytest.raises(ValueError, match="steps=4"):
        build(mods, "euler", steps=4)
    with pytest.raises(ValueError, match="must return an nn.Module"):
        build(lambda: 3, "euler", steps=2)


def test_time_aware_field_sees_the_grid():
    seen = []

    class Clock(nn.Module):
        time_aware = True

        def forward(self, t, u):
            seen.append(float(t))
            return torch.zeros_like(u)

    build(Clock(), "euler", steps=4, tied=True)(torch.zeros(1, 2))
    assert seen == pytest.approx([0.0, 0.25, 0.5, 0.75])
    seen.clear()
    build(Clock(), "midpoint", steps=2, tied=True, t_span=(1.0, 2.0))(torch.zeros(1, 2))
    assert seen == pytest.approx([1.0, 1.25, 1.5, 1.75])


def test_lm_flow_matches_the_recurrence_and_k_gets_gradients():
    flow = build(MLPField(4, 8), "lm", steps=5)
    k = flow.coefficients()["k"]
    assert k.shape == (5,) and ((-0.1 <= k) & (k <= 0.0)).all()   # the authors' init U[-0.1, 0]
    x = torch.randn(3, 4)
    u, prev = x, None
    for n, f in enumerate(flow.fields):
        nxt = u + f(u) if prev is None else (1 - k[n]) * u + k[n] * prev + f(u)
        u, prev = nxt, u
    torch.testing.assert_close(flow(x), u)
    flow(x).pow(2).sum().backward()
    grad = flow.raw["k"].grad
    assert grad is not None and torch.count_nonzero(grad[1:]) == 4   # step 0 is Euler: no k
    assert list(odenets.coefficients(flow)) == ["k"]
    assert odenets.coefficients(flow)["k"] == pytest.approx(k.tolist())


def test_k_range_policy():
    """Learnable k is kept in (-1, 1) by its sigmoid map; fixed k outside is rejected.
    (In float32 a raw value beyond about +-17 rounds k onto the bound itself.)"""
    flow = build(MLPField(2), "lm", steps=3)
    with torch.no_grad():
        flow.raw["k"].copy_(torch.tensor([-8.0, 0.0, 8.0]))
    k = flow.coefficient_values()["k"]
    assert (k.abs() < 1).all() and k[0] < -0.99 and k[2] > 0.99
    with pytest.raises(ValueError, match=r"outside the open interval \(-1.0, 1.0\)"):
        build(MLPField(2), "lm", steps=3, k=1.5)
    with pytest.raises(ValueError, match="outside the open interval"):
        build(MLPField(2), "lm", steps=3, coefficients={"k": [0.1, 1.0, 0.0]})
    with pytest.raises(ValueError, match="outside the open interval"):
        flow.set_coefficients(k=-1.0)
    flow.set_coefficients(k=[0.3, -0.2, 0.5])
    torch.testing.assert_close(flow.coefficients()["k"], torch.tensor([0.3, -0.2, 0.5]))


def test_fixed_k_flow_has_no_parameters_for_k():
    flow = build(MLPField(2), "lm", steps=3, coefficients={"k": 0.25})
    assert len(flow.raw) == 0 and odenets.coefficients(flow) == {}
    x = torch.randn(1, 2)
    ref = solvers.integrate([lambda t, u, f=f: f(u) for f in flow.fields], x, 3, "lm", t1=3.0,
                            k=0.25)
    torch.testing.assert_close(flow(x), ref)


def test_per_channel_k():
    flow = build(BasicField(6), "lm", steps=3, per_channel=True, channels=6)
    assert flow.raw["k"].shape == (3, 6)
    flow(torch.randn(2, 6, 4, 4)).sum().backward()
    assert flow.raw["k"].grad.shape == (3, 6)
    assert len(odenets.coefficients(flow)["k"]) == 3     # averaged over channels
    flow.set_coefficients(k=[0.1, 0.2, 0.3])
    expected = torch.tensor([0.1, 0.2, 0.3])[:, None].expand(3, 6)
    torch.testing.assert_close(flow.coefficients()["k"], expected)
    with pytest.raises(ValueError, match="channels="):
        build(BasicField(6), "lm", steps=3, per_channel=True)


def test_coefficients_are_generic_over_schemes():
    """Any learnable Coefficient a scheme declares becomes a (steps,) parameter (not only k)."""
    flow = build(MLPField(3), "lmm", steps=4, history=3)
    names = [c.name for c in flow.scheme.learnable_coefficients()]
    assert sorted(flow.raw) == sorted(names) and names
    assert all(p.shape == (4,) for p in flow.raw.values())
    flow(torch.randn(2, 3)).sum().backward()
    assert all(p.grad is not None for p in flow.raw.values())


def test_post_activation_with_a_scheme_that_runs_its_own_solve():
    """lmm has a vectorised `solve`; with activation it is driven step by step, same result."""
    flow = build(BasicField(4), "lmm", steps=4, history=3, activation="relu")
    x = torch.randn(2, 4, 3, 3)
    values = flow.coefficient_values()
    u, state = x, None
    for n, f in enumerate(flow.fields):
        u, state = flow.scheme.step(lambda t, v, f=f: f(v), float(n), 1.0, u, state,
                                    **{k: v[n] for k, v in values.items()})
        u = torch.relu(u)
    torch.testing.assert_close(flow(x), u)


def test_stochastic_flow_train_and_eval():
    flow = build(MLPField(4), "euler_maruyama", steps=6, noise="bernoulli",
                 coefficients={"p": torch.linspace(1.0, 0.5, 6)})
    assert flow.coef_p[-1].item() == pytest.approx(0.5)
    x = torch.randn(64, 4)
    with torch.no_grad():
        outs = {tuple(flow(x).flatten().tolist()) for _ in range(6)}
        flow.eval()
        a, b = flow(x), flow(x)
    assert len(outs) > 1 and torch.equal(a, b)


def test_pair_fields_for_pair_schemes():
    shake = build(lambda: TwoBranch(nn.Linear(4, 4), nn.Linear(4, 4)), "euler_maruyama", steps=2,
                  noise="shake")
    x = torch.randn(8, 4)
    shake.eval()
    u = x
    for f in shake.fields:
        u = u + 0.5 * (f.branch1(u) + f.branch2(u))
    torch.testing.assert_close(shake(x), u)
    rev = build(lambda: Coupled(nn.Linear(2, 2), nn.Linear(2, 2)), "leapfrog", steps=3,
                variant="revnet")
    y = rev(x)
    y.sum().backward()          # memory-saving backward reaches the step parameters
    assert all(p.grad is not None for p in rev.parameters())
    with pytest.raises(ValueError, match="pair of fields"):
        build(nn.Linear(4, 4), "leapfrog", steps=2)


def test_errors_name_the_choices():
    with pytest.raises(ValueError, match="did you mean 'euler'"):
        build(nn.Linear(2, 2), "eulr", steps=2)
    with pytest.raises(ValueError, match="steps must be an integer"):
        build(nn.Linear(2, 2), "euler", steps=0)
    with pytest.raises(ValueError, match="field must be"):
        build(3, "euler", steps=2)
    with pytest.raises(ValueError, match="activation must be"):
        build(nn.Linear(2, 2), "euler", steps=2, activation="swish")
    with pytest.raises(ValueError, match="unknown coefficient"):
        build(nn.Linear(2, 2), "euler", steps=2, coefficients={"k": 0.1})
    assert set(solvers.available()) <= set(odenets.available_solvers())


def test_bad_t_span_and_coefficient_values_give_value_errors():
    with pytest.raises(ValueError, match=r"t_span must be a pair \(t0, t1\)"):
        build(nn.Linear(2, 2), "euler", steps=2, t_span=(0.0,))
    with pytest.raises(ValueError, match="t_span must be two distinct finite times"):
        build(nn.Linear(2, 2), "euler", steps=2, t_span=(1.0, 1.0))
    with pytest.raises(ValueError, match="coefficient k must be a number or steps=3 numbers"):
        build(MLPField(2), "lm", steps=3, coefficients={"k": "a"})
    flow = build(MLPField(2), "lm", steps=3)
    with pytest.raises(ValueError, match=r"k needs a scalar or values of shape \(3,\)"):
        flow.set_coefficients(k=[0.1, 0.2])
    with pytest.raises(ValueError, match="k must be a number"):
        flow.set_coefficients(k="a")
    flow.set_coefficients(k=[0.1, 0.2, -0.3])
    assert torch.allclose(flow.coefficients()["k"], torch.tensor([0.1, 0.2, -0.3]), atol=1e-6)


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("solver", ["euler", "lm"])
def test_no_overhead_growing_with_batch_or_steps(solver):
    """The forward is the field's ops plus the scheme's few elementwise ops per step, for any
    batch size; the coefficient map costs a constant number of ops per forward."""
    steps = 10
    flow = build(nn.Linear(4, 4), solver, steps=steps)
    counts = []
    for batch in (2, 256):
        x = torch.randn(batch, 4)
        with torch.no_grad():
            flow(x)  # the time grid is made on the first forward, then kept
            with _CountOps() as c:
                flow(x)
        counts.append(c.ops)
    assert counts[0] == counts[1]
    field_ops = counts[0].count("aten.addmm.default") + counts[0].count("aten.t.default")
    assert field_ops == 2 * steps
    scheme_ops = len(counts[0]) - field_ops
    # add (euler) or lerp + add (lm) per step, + the k map (the time grid is kept)
    assert scheme_ops <= 2 * steps + 4


def test_continuous_solvers_are_dispatched():
    from odenets import continuous as cont
    name = cont.continuous_solvers()[0]
    assert name in odenets.available_solvers() and cont.is_continuous(name)
    flow = build(MLPField(2, time_aware=True), "dopri5")
    assert not isinstance(flow, Flow) and flow(torch.randn(3, 2)).shape == (3, 2)
    with pytest.raises(ValueError, match="fixed-grid schemes only"):
        build(MLPField(2), "dopri5", activation="relu")
